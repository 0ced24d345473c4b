//! TCP forwarding through the broker, so existing tools (VNC, SSH, ...) run over a session.
//!
//! The expert listens on a local port (`--forward`); every TCP connection it accepts becomes
//! one relayed [`StreamKind::Forward`] stream. The customer accepts such a stream and
//! connects it to the one address it shares (`--share`), and to nothing else; without a
//! share it refuses the stream with [`close_code::NOTHING_SHARED`]. Bytes are copied both
//! ways with half-close (TCP shutdown ↔ QUIC finish); a reset on either side resets the
//! other (a TCP RST ↔ a QUIC stream reset).
//!
//! How a session ends decides how its connections end ([`Leave`]): cut short (the case
//! closed, the connection lost), every one is reset at once, the TCP side with an RST, so
//! no reader takes what it got for complete; left on purpose (Ctrl-C), what each has
//! already taken in still reaches the other side first.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::client::open_relayed;
use crate::protocol::{close_code, StreamKind};

/// Bytes of the buffer each direction of a forwarded connection copies through.
const COPY_BUFFER: usize = 64 * 1024;

/// How long the customer waits for its shared service to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a forwarded connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The expert's local port could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The customer's shared service did not accept the connection.
    #[error("cannot reach the shared service {addr}: {reason}")]
    Connect {
        /// The shared address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The relayed stream could not be opened.
    #[error("cannot open a relayed stream: {0}")]
    Open(String),
    /// The other side (or the broker) reset the relayed stream.
    #[error("{}", describe_reset(*.0))]
    Reset(u64),
    /// The relayed stream failed otherwise (the connection was lost).
    #[error("the relayed stream failed: {0}")]
    Stream(String),
    /// The local TCP connection failed.
    #[error("the local TCP connection failed: {0}")]
    Tcp(std::io::Error),
    /// The session ended before this connection did: it was reset on both sides.
    #[error("cut: the session ended before this connection did (reset on both sides)")]
    Cut,
}

/// How a session wants its forwarded connections to behave as it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Keep copying.
    Stay,
    /// The party leaves on purpose: a connection whose local side has finished sending,
    /// and whose every byte the broker has acknowledged, is done (it will all arrive); the
    /// others keep copying until they are, or until the session cuts them (one that has
    /// gone quiet is cut at once).
    Drain,
    /// Reset the relayed stream and the TCP connection (RST) at once.
    Cut,
}

/// A sentence for a stream reset code.
pub fn describe_reset(code: u64) -> String {
    let reason = match u32::try_from(code) {
        Ok(close_code::NOT_PAIRED) => "not connected to a partner (not paired)",
        Ok(close_code::SESSION_ENDED) => "the session ended",
        Ok(close_code::TOO_MANY_STREAMS) => {
            "refused by sosqd: the session already has the most forwarded connections open that it allows (max_streams_per_session)"
        }
        Ok(close_code::PROTOCOL_ERROR) => "refused: not a stream of the sosq protocol",
        Ok(close_code::STREAM_IDLE) => "idle for too long",
        Ok(close_code::NOTHING_SHARED) => "the customer shares no service (no --share)",
        Ok(close_code::FORWARD_FAILED) => "the other side's TCP connection failed",
        _ => "reset by the other side",
    };
    format!("{reason} (code {code})")
}

/// What one forwarded connection carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Bytes read from the local TCP connection and sent through the broker.
    pub sent: u64,
    /// Bytes received through the broker and written to the local TCP connection.
    pub received: u64,
}

/// The expert's local port: binds `addr` (before the session starts, so a busy port is
/// reported at once).
pub async fn listen(addr: SocketAddr) -> Result<TcpListener, ForwardError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ForwardError::Listen { addr, source })
}

/// Expert side: relays one accepted TCP connection as a new `Forward` stream, until it ends
/// or `leave` says otherwise (see [`splice_tcp`]).
pub async fn forward_connection(
    connection: &quinn::Connection,
    tcp: TcpStream,
    leave: watch::Receiver<Leave>,
) -> Result<ForwardStats, ForwardError> {
    let (send, recv) = match open_relayed(connection, StreamKind::Forward).await {
        Ok(stream) => stream,
        Err(e) => {
            let _ = tcp.set_zero_linger();
            return Err(ForwardError::Open(e.to_string()));
        }
    };
    splice_tcp(tcp, send, recv, leave).await
}

/// Customer side: serves one `Forward` stream by connecting it to `share`; without a share
/// the stream is refused with `NOTHING_SHARED`, and a service that cannot be reached with
/// `FORWARD_FAILED`. It then runs until it ends or `leave` says otherwise.
pub async fn serve_shared(
    share: Option<SocketAddr>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    leave: watch::Receiver<Leave>,
) -> Result<ForwardStats, ForwardError> {
    let refuse = |send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: u32| {
        let _ = send.reset(code.into());
        let _ = recv.stop(code.into());
    };
    let Some(addr) = share else {
        refuse(&mut send, &mut recv, close_code::NOTHING_SHARED);
        return Err(ForwardError::Reset(close_code::NOTHING_SHARED.into()));
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            refuse(&mut send, &mut recv, close_code::FORWARD_FAILED);
            return Err(ForwardError::Connect {
                addr,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            refuse(&mut send, &mut recv, close_code::FORWARD_FAILED);
            return Err(ForwardError::Connect {
                addr,
                reason: "timed out".into(),
            });
        }
    };
    splice_tcp(tcp, send, recv, leave).await
}

/// How long a connection's local side must have sent nothing, while we waited for it,
/// before draining gives up on it: an open but idle connection (an SSH prompt) has nothing
/// left to deliver, and leaving should not wait for it.
pub const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// Since when a copy has been waiting for its local side to send; shared between the copy
/// and the loop that watches it (so, atomically: the future moves between threads).
struct Waiting {
    base: tokio::time::Instant,
    /// Milliseconds after `base` plus one; 0 while not waiting.
    since: std::sync::atomic::AtomicU64,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting {
            base: tokio::time::Instant::now(),
            since: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Waiting {
    fn start(&self) {
        let ms = self.base.elapsed().as_millis() as u64 + 1;
        self.since.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn stop(&self) {
        self.since.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether it has been waiting for at least `quiet`.
    fn longer_than(&self, quiet: Duration) -> bool {
        match self.since.load(std::sync::atomic::Ordering::Relaxed) {
            0 => false,
            since => {
                let now = self.base.elapsed().as_millis() as u64 + 1;
                Duration::from_millis(now.saturating_sub(since)) >= quiet
            }
        }
    }
}

/// Copies a TCP connection and a relayed stream both ways until both directions have ended.
/// TCP EOF finishes the stream (and the direction is done once the broker acknowledged every
/// byte), stream EOF shuts down the TCP write half; a failure on either side resets the
/// other (RST on TCP, a reset and a stop on the stream).
///
/// `leave` ends it early: [`Leave::Cut`] resets both sides at once. Under [`Leave::Drain`]
/// the copy goes on until the local side has finished sending and all of it has reached
/// the broker (the reader far away gets every byte and then the end), and is done then; an
/// inbound direction still open is reset, since its reader would otherwise take a cut
/// stream for a complete one. A connection whose local side has sent nothing for
/// [`DRAIN_QUIET`] (an open SSH prompt) has nothing left to deliver and is cut; the
/// session bounds the rest (a stream that never ends) with its own deadline.
pub async fn splice_tcp(
    mut tcp: TcpStream,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut leave: watch::Receiver<Leave>,
) -> Result<ForwardStats, ForwardError> {
    let _ = tcp.set_nodelay(true);
    // Since when the outbound copy has been waiting for the local side to send (none
    // while it has bytes in hand, or is waiting for the broker to take them).
    let waiting_since = Waiting::default();
    // The copies borrow both sides; they end with this block, before the resets.
    let (ended, stats) = {
        let (mut tcp_read, mut tcp_write) = tcp.split();
        let send = &mut send;
        let outbound = async {
            let mut buf = vec![0u8; COPY_BUFFER];
            let mut sent = 0u64;
            loop {
                waiting_since.start();
                let n = tcp_read.read(&mut buf).await.map_err(ForwardError::Tcp)?;
                waiting_since.stop();
                if n == 0 {
                    let _ = send.finish();
                    // Done once the broker has it all: leaving then loses nothing. A stop
                    // now means the reader took what it wanted.
                    return match send.stopped().await {
                        Ok(_) => Ok(sent),
                        Err(e) => Err(ForwardError::Stream(e.to_string())),
                    };
                }
                match send.write_all(&buf[..n]).await {
                    Ok(()) => sent += n as u64,
                    // The far reader wants no more (it left): this direction ends, like a
                    // TCP half-close; the other may still be delivering to us.
                    Err(quinn::WriteError::Stopped(_)) => return Ok(sent),
                    Err(other) => return Err(ForwardError::Stream(other.to_string())),
                }
            }
        };
        let inbound = async {
            let mut buf = vec![0u8; COPY_BUFFER];
            let mut received = 0u64;
            loop {
                match recv.read(&mut buf).await {
                    Ok(Some(n)) => {
                        tcp_write
                            .write_all(&buf[..n])
                            .await
                            .map_err(ForwardError::Tcp)?;
                        received += n as u64;
                    }
                    Ok(None) => {
                        let _ = tcp_write.shutdown().await;
                        return Ok(received);
                    }
                    Err(quinn::ReadError::Reset(code)) => {
                        return Err(ForwardError::Reset(code.into_inner()))
                    }
                    Err(e) => return Err(ForwardError::Stream(e.to_string())),
                }
            }
        };
        tokio::pin!(outbound, inbound);
        let (mut sent, mut received) = (None, None);
        let ended = loop {
            let mode = *leave.borrow_and_update();
            let quiet = waiting_since.longer_than(DRAIN_QUIET);
            match (mode, sent, received) {
                (Leave::Cut, _, _) => break Err(ForwardError::Cut),
                (_, Some(_), Some(_)) => break Ok(true),
                (Leave::Drain, Some(_), None) => break Ok(false),
                // Open, but its local side has gone quiet: nothing more is on the way.
                (Leave::Drain, None, _) if quiet => break Err(ForwardError::Cut),
                _ => {}
            }
            let draining = mode == Leave::Drain;
            tokio::select! {
                done = &mut outbound, if sent.is_none() => match done {
                    Ok(n) => sent = Some(n),
                    Err(e) => break Err(e),
                },
                done = &mut inbound, if received.is_none() => match done {
                    Ok(n) => received = Some(n),
                    Err(e) => break Err(e),
                },
                // The session is gone: nobody is left to say otherwise.
                changed = leave.changed() => if changed.is_err() {
                    break Err(ForwardError::Cut);
                },
                // While draining, look again at whether the local side went quiet.
                _ = tokio::time::sleep(DRAIN_QUIET / 4), if draining => {}
            }
        };
        let stats = ForwardStats {
            sent: sent.unwrap_or(0),
            received: received.unwrap_or(0),
        };
        (ended, stats)
    };
    match ended {
        Ok(true) => Ok(stats),
        Ok(false) => {
            // Drained: what we sent is delivered; what we were still receiving is cut.
            let code = close_code::SESSION_ENDED.into();
            let _ = recv.stop(code);
            let _ = tcp.set_zero_linger();
            Ok(stats)
        }
        Err(e) => {
            // Pass a reset on with its code, so the far end learns why.
            let code = match e {
                ForwardError::Reset(code) => {
                    quinn::VarInt::from_u64(code).unwrap_or(close_code::FORWARD_FAILED.into())
                }
                ForwardError::Cut => close_code::SESSION_ENDED.into(),
                _ => close_code::FORWARD_FAILED.into(),
            };
            let _ = send.reset(code);
            let _ = recv.stop(code);
            // Dropping with a zero linger sends RST: the TCP side sees the failure too.
            let _ = tcp.set_zero_linger();
            Err(e)
        }
    }
}
