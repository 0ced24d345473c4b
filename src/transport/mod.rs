//! QUIC plumbing: the server endpoint with its TLS and transport settings.

pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use sosq::protocol::ALPN;

use crate::config::Config;
pub use tls::{Identity, TlsError};

/// Builds the QUIC server configuration: TLS 1.3 only, 0-RTT off (replayable requests
/// would be a gift to attackers), and the stream and idle limits from the config.
pub fn server_config(
    config: &Config,
    identity: &Identity,
) -> Result<quinn::ServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(sosq::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let quic_tls = QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Generate(format!("QUIC cannot use this TLS setup: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
    let transport = transport_config(config)?;
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// The QUIC transport settings of every broker connection: stream count and idle limits,
/// and the flow-control windows that bound what the broker buffers per connection.
pub fn transport_config(config: &Config) -> Result<quinn::TransportConfig, TlsError> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(config.max_streams_per_connection.into());
    transport.max_concurrent_uni_streams(0u32.into());
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|e| TlsError::Generate(format!("idle_timeout out of range: {e}")))?;
    transport.max_idle_timeout(Some(idle));
    // The daemon keeps every connection alive itself (a ping when quiet for keep_alive):
    // liveness follows its settings even for clients that set none, and a party that
    // stops answering is dropped after idle_timeout.
    transport.keep_alive_interval(Some(config.keep_alive));
    let window = |value: u64, name: &str| {
        quinn::VarInt::from_u64(value)
            .map_err(|e| TlsError::Generate(format!("{name} out of range: {e}")))
    };
    transport.stream_receive_window(window(
        config.stream_receive_window,
        "stream_receive_window",
    )?);
    transport.receive_window(window(config.receive_window, "receive_window")?);
    transport.send_window(config.send_window);
    // Ask peers to acknowledge every tenth packet rather than every second: the broker
    // relays bulk data, and every ACK it receives is a datagram to decrypt and process.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(9u32.into());
    transport.ack_frequency_config(Some(acks));
    Ok(transport)
}

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket (or the metrics listener) could not be bound. The cause is in the
    /// message and not an error `source`, so a report of the whole chain says it once.
    #[error("cannot listen on {addr}: {cause}{}", in_use_hint(cause))]
    Socket {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
}

/// The usual reason an address is taken, and what to do about it.
fn in_use_hint(cause: &std::io::Error) -> &'static str {
    if cause.kind() == std::io::ErrorKind::AddrInUse {
        "; is another sosqd running? Stop it, or give this one another --listen address"
    } else {
        ""
    }
}

/// Binds the endpoint on `config.listen`, with the receive buffer `config.udp_receive_buffer`
/// asked of the kernel.
pub fn bind(config: &Config, identity: &Identity) -> Result<quinn::Endpoint, TransportError> {
    let server = server_config(config, identity)?;
    let addr = config.listen;
    let socket_error = |cause| TransportError::Socket { addr, cause };
    let socket = udp_socket(addr, config.udp_receive_buffer).map_err(socket_error)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| socket_error(std::io::Error::other("no async runtime is running")))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(socket_error)
}

/// A UDP socket bound to `addr` whose receive buffer is as near `receive_buffer` as the
/// kernel allows; says in the log what it got.
/// Checks that `addr` can be bound now, by binding it and letting it go: the daemon does
/// this before it makes its data dir, store and certificate, so a taken port leaves no new
/// files behind. (Another process may still take the port before the real bind; that bind
/// reports the same error.)
///
/// Errors: [`TransportError::Socket`], with the "is another sosqd running?" hint when the
/// address is in use.
pub fn check_listen(addr: SocketAddr) -> Result<(), TransportError> {
    let socket = new_udp_socket(addr).map_err(|cause| TransportError::Socket { addr, cause })?;
    socket
        .bind(&addr.into())
        .map_err(|cause| TransportError::Socket { addr, cause })
}

/// An unbound UDP socket for `addr`; `[::]` takes IPv4 as well, whatever the system's
/// default.
fn new_udp_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    Ok(socket)
}

fn udp_socket(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    let socket = new_udp_socket(addr)?;
    if let Err(e) = socket.set_recv_buffer_size(receive_buffer) {
        tracing::warn!(error = %e, "could not size the UDP receive buffer");
    }
    // Linux reports twice what it grants (the other half is its bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0);
    let granted = if cfg!(target_os = "linux") {
        granted / 2
    } else {
        granted
    };
    if granted < receive_buffer {
        tracing::info!(
            granted,
            asked = receive_buffer,
            "the kernel granted a smaller UDP receive buffer than udp_receive_buffer \
             (Linux: raise net.core.rmem_max)"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
