//! Reaching the daemon over QUIC: every address its name resolves to, tried a quarter
//! second apart with a [`CONNECT_TIMEOUT`] for an answer; the certificate pinned (or checked
//! against an operator's CA); the client's transport settings (no keep-alive and no idle
//! timeout of its own, so the daemon's apply); and [`SharedEndpoint`] for load tools that
//! hold thousands of parties on a few sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::ServerCertVerifier;

use crate::client::{ClientError, ConnectOptions, CONNECT_TIMEOUT};
use crate::protocol::ALPN;
use crate::tls::{parse_fingerprint, PinnedServerCert};

/// Makes the QUIC connection (certificate pinned, ALPN set) without saying hello; for
/// tools and tests that speak the protocol themselves.
///
/// Every address the server's name resolves to is tried (IPv6 and IPv4, a quarter second
/// apart, the first to answer wins); if none answers within [`CONNECT_TIMEOUT`], the error
/// says so ([`ClientError::NoAnswer`]) instead of waiting for ever on a silent port.
pub async fn connect_quic(
    options: &ConnectOptions,
) -> Result<(quinn::Endpoint, quinn::Connection), ClientError> {
    let addrs = resolve_all(&options.server).await?;
    let (verifier, pinned): (Arc<dyn ServerCertVerifier>, Option<Arc<PinnedServerCert>>) =
        match &options.ca {
            Some(ca) => (
                crate::tls::ca_verifier(ca).map_err(ClientError::Options)?,
                None,
            ),
            None => {
                let fingerprint =
                    parse_fingerprint(&options.fingerprint).map_err(ClientError::Options)?;
                let pinned = PinnedServerCert::new(fingerprint);
                (pinned.clone(), Some(pinned))
            }
        };
    let mut attempts = tokio::task::JoinSet::new();
    for (i, (addr, host)) in addrs.iter().enumerate() {
        let addr = *addr;
        // A pinned certificate is trusted whatever its names; a CA-issued one must name
        // the host this address came from.
        let server_name = match &options.ca {
            Some(_) => host.as_str(),
            None => "sosqd",
        };
        let endpoint = client_endpoint(addr, verifier.clone())?;
        let connecting = endpoint
            .connect(addr, server_name)
            .map_err(|e| ClientError::Connect {
                server: options.server.clone(),
                reason: e.to_string(),
            })?;
        attempts.spawn(async move {
            // Happy eyeballs, simply: later addresses start a little later.
            tokio::time::sleep(Duration::from_millis(250) * i as u32).await;
            (endpoint, connecting.await)
        });
    }
    let mut last_failure = None;
    let answered = tokio::time::timeout(CONNECT_TIMEOUT, async {
        while let Some(attempt) = attempts.join_next().await {
            match attempt {
                Ok((endpoint, Ok(connection))) => return Some((endpoint, connection)),
                Ok((_, Err(e))) => last_failure = Some(e),
                Err(_) => {}
            }
        }
        None
    })
    .await;
    if let Ok(Some(connected)) = answered {
        return Ok(connected);
    }
    let mismatch = pinned.as_ref().and_then(|pinned| {
        let seen = pinned.seen()?;
        (seen != pinned.expected()).then(|| (seen, pinned.expected().to_string()))
    });
    if let Some((actual, expected)) = mismatch {
        return Err(ClientError::FingerprintMismatch { actual, expected });
    }
    match last_failure {
        // Something answered and refused (a closed endpoint, a version mismatch).
        Some(e) if !matches!(e, quinn::ConnectionError::TimedOut) => Err(ClientError::Connect {
            server: options.server.clone(),
            reason: e.to_string(),
        }),
        _ => Err(ClientError::NoAnswer {
            server: options.server.clone(),
            tried: addrs
                .iter()
                .map(|(addr, _)| addr.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// One client QUIC endpoint (one UDP socket) that many connections to the same daemon
/// share, with the same TLS and transport settings as [`connect_quic`]: quinn multiplexes
/// any number of connections over one endpoint. Load tools use a few of these to hold
/// thousands of parties in one process.
#[derive(Clone)]
pub struct SharedEndpoint {
    pub(crate) endpoint: quinn::Endpoint,
    addr: SocketAddr,
    pub(crate) server: String,
    server_name: String,
    /// Whether the certificate is checked against a CA (so by host name) or pinned.
    ca: bool,
}

impl SharedEndpoint {
    /// Binds a client endpoint on `bind` (port 0 for any) for the daemon in `options`.
    pub async fn open(
        options: &ConnectOptions,
        bind: SocketAddr,
    ) -> Result<SharedEndpoint, ClientError> {
        let addr = resolve(&options.server).await?;
        let verifier: Arc<dyn ServerCertVerifier> = match &options.ca {
            Some(ca) => crate::tls::ca_verifier(ca).map_err(ClientError::Options)?,
            None => {
                let fingerprint =
                    parse_fingerprint(&options.fingerprint).map_err(ClientError::Options)?;
                PinnedServerCert::new(fingerprint)
            }
        };
        let server_name = match &options.ca {
            Some(_) => host_of(&options.server).to_string(),
            None => "sosqd".to_string(),
        };
        let endpoint = client_endpoint_on(bind, verifier)?;
        Ok(SharedEndpoint {
            endpoint,
            addr,
            server: options.server.clone(),
            server_name,
            ca: options.ca.is_some(),
        })
    }

    /// Makes one more QUIC connection to the daemon (no hello).
    pub async fn connect(&self) -> Result<quinn::Connection, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            server: self.server.clone(),
            reason,
        };
        self.endpoint
            .connect(self.addr, &self.server_name)
            .map_err(|e| connect_error(e.to_string()))?
            .await
            .map_err(|e| connect_error(e.to_string()))
    }

    /// The underlying endpoint.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The TLS server name to check for `server`: its own host under a CA, the pinned
    /// certificate's fixed name otherwise.
    pub(crate) fn server_name_for(&self, server: &str) -> String {
        match self.ca {
            true => host_of(server).to_string(),
            false => self.server_name.clone(),
        }
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed); of the first node
/// when several are named.
fn host_of(server: &str) -> &str {
    let server = server.split(',').next().unwrap_or(server).trim();
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The first address of the first node `server` names.
pub(crate) async fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let addrs = resolve_all(server).await?;
    Ok(addrs[0].0)
}

/// Every address `server` resolves to, never empty: `server` may name several nodes
/// separated by commas (`a:4433,b:4433`), tried in the order given; each name's
/// addresses IPv6 and IPv4 alternating (as the resolver ranks them within each family).
/// A name that does not resolve is skipped while another does.
async fn resolve_all(server: &str) -> Result<Vec<(SocketAddr, String)>, ClientError> {
    let resolve_error = |reason: String| ClientError::Resolve {
        server: server.to_string(),
        reason,
    };
    let mut addrs: Vec<(SocketAddr, String)> = Vec::new();
    let mut failures = Vec::new();
    for name in server.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match tokio::net::lookup_host(name).await {
            Ok(found) => {
                for addr in interleave(found.collect()) {
                    if !addrs.iter().any(|(known, _)| *known == addr) {
                        addrs.push((addr, host_of(name).to_string()));
                    }
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if addrs.is_empty() {
        return Err(resolve_error(if failures.is_empty() {
            "no addresses found".into()
        } else {
            failures.join("; ")
        }));
    }
    Ok(addrs)
}

/// The addresses in the order to try them: IPv6 and IPv4 alternating, each family in the
/// resolver's order, duplicates dropped.
fn interleave(found: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.into_iter().partition(SocketAddr::is_ipv6);
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(v6.len() + v4.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => break,
            (a, b) => {
                for addr in a.into_iter().chain(b) {
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
            }
        }
    }
    addrs
}

fn client_endpoint(
    server: SocketAddr,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<quinn::Endpoint, ClientError> {
    let options_error = |e: &dyn std::fmt::Display| ClientError::Options(e.to_string());
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().map_err(|e| options_error(&e))?
    } else {
        "0.0.0.0:0".parse().map_err(|e| options_error(&e))?
    };
    client_endpoint_on(bind, verifier)
}

fn client_endpoint_on(
    bind: SocketAddr,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<quinn::Endpoint, ClientError> {
    let options_error = |e: &dyn std::fmt::Display| ClientError::Options(e.to_string());
    let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| options_error(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic_tls = QuicClientConfig::try_from(tls).map_err(|e| options_error(&e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic_tls));
    let mut transport = quinn::TransportConfig::default();
    // Liveness follows the daemon's settings alone: it pings a quiet connection every
    // keep_alive and our acknowledgements answer, so a connection costs one exchange per
    // keep_alive whatever the client; with no idle timeout of our own the connection uses
    // the daemon's (QUIC takes the smaller of the two), so both sides notice a silent peer
    // after the same time, the one the daemon announces at hello. Connecting is bounded by
    // CONNECT_TIMEOUT instead.
    transport.keep_alive_interval(None);
    transport.max_idle_timeout(None);
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| options_error(&e))?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_tried_both_families_taking_turns() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let found = vec![
            addr("192.0.2.1:4433"),
            addr("192.0.2.2:4433"),
            addr("[2001:db8::1]:4433"),
            addr("192.0.2.1:4433"),
            addr("192.0.2.3:4433"),
        ];
        assert_eq!(
            interleave(found),
            vec![
                addr("[2001:db8::1]:4433"),
                addr("192.0.2.1:4433"),
                addr("192.0.2.2:4433"),
                addr("192.0.2.3:4433"),
            ]
        );
    }
}
