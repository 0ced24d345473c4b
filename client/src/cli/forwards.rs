//! The forwarded TCP connections of a session (`--share` on the customer, `--forward` on
//! the expert): accepting them, reporting each opening and closing on stderr, and ending
//! them the way the session ends (see [`sosq::forward::Leave`]).
//!
//! The expert's local port outlives any one QUIC connection: while the session reconnects,
//! a new TCP connection is refused with a reason, and once paired again new connections
//! work. Each QUIC connection gets its own [`Forwards`], so cutting the old one's streams
//! never touches the next's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sosq::client::accept_relayed;
use sosq::forward::{self, ForwardError, ForwardStats, Leave};
use sosq::protocol::{close_code, StreamKind};
use sosq::{ClientError, SessionCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use super::output::Output;

/// Counts forwarded connections, for the lines that report them and for draining.
#[derive(Default)]
pub struct Tally {
    opened: AtomicU64,
    open: AtomicUsize,
    /// Signalled whenever one closes.
    closed: Notify,
}

impl Tally {
    /// Counts one more open connection; returns its number.
    fn open(&self) -> u64 {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one connection closed; returns how many stay open.
    fn close(&self) -> usize {
        let left = self.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.closed.notify_waiters();
        left
    }

    /// Connections open now.
    pub fn open_now(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Completes once no connection is open (at once if none is).
    async fn all_closed(&self) {
        loop {
            // Registered before the check, so a close between the two is not missed.
            let closed = self.closed.notified();
            if self.open_now() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// The forwarded connections over one QUIC connection, and how they are to end.
pub struct Forwards {
    /// What the connections do as the session ends.
    pub leave: watch::Sender<Leave>,
    /// Shared by every connection of the session (the numbering goes on across reconnects).
    pub tally: Arc<Tally>,
}

impl Forwards {
    /// Forwards that keep copying until told otherwise.
    pub fn new(tally: Arc<Tally>) -> Forwards {
        let (leave, _) = watch::channel(Leave::Stay);
        Forwards { leave, tally }
    }

    /// Resets every forwarded connection at once (RST on TCP): the session was cut short.
    /// Waits (a second at most) for them to have done so, so that a command ending right
    /// after cannot let the system close them with a clean FIN instead.
    pub async fn cut(&self) {
        self.leave.send_replace(Leave::Cut);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tally.all_closed()).await;
    }

    /// Lets every forwarded connection run to its natural end (what a departed peer sent
    /// still arrives here), for at most `within`, then cuts what is left.
    pub async fn finish(&self, within: Duration) {
        if tokio::time::timeout(within, self.tally.all_closed())
            .await
            .is_err()
        {
            self.cut().await;
        }
    }

    /// Lets every forwarded connection finish delivering what it took in, for at most
    /// `within` or until `hurry` completes (a second Ctrl-C), then cuts what is left;
    /// returns how many had to be cut.
    pub async fn drain(
        &self,
        within: Duration,
        hurry: impl std::future::Future<Output = ()>,
    ) -> usize {
        self.leave.send_replace(Leave::Drain);
        let all_closed = tokio::select! {
            closed = tokio::time::timeout(within, self.tally.all_closed()) => closed.is_ok(),
            _ = hurry => false,
        };
        if all_closed {
            return 0;
        }
        let cut = self.tally.open_now();
        self.cut().await;
        cut
    }
}

/// Customer: accepts the expert's streams until the connection ends; chats go to `chats`,
/// forwarded connections to the shared service (or are refused without one).
pub async fn accept_streams(
    code: SessionCode,
    connection: quinn::Connection,
    share: Option<SocketAddr>,
    chats: mpsc::Sender<(quinn::SendStream, quinn::RecvStream)>,
    tally: Arc<Tally>,
    leave: watch::Receiver<Leave>,
    out: Output,
) {
    loop {
        match accept_relayed(&connection).await {
            Ok((StreamKind::Chat, send, recv)) => {
                if chats.send((send, recv)).await.is_err() {
                    return;
                }
            }
            Ok((StreamKind::Forward, send, recv)) => {
                if share.is_none() {
                    out.status(
                        "forward_refused",
                        "the expert tried to open a connection, but you share nothing (no --share); refused",
                        json!({"code": code}),
                    );
                    let _ = forward::serve_shared(None, send, recv, leave.clone()).await;
                    continue;
                }
                let tally = tally.clone();
                let leave = leave.clone();
                tokio::spawn(async move {
                    let id = tally.open();
                    report_opened(&out, Some(code), id, &tally, "the expert");
                    let result = forward::serve_shared(share, send, recv, leave).await;
                    report_closed(&out, Some(code), id, &tally, result);
                });
            }
            Err(ClientError::Disconnected(_)) => return,
            Err(e) => out.status(
                "stream_refused",
                format!("refused a stream: {e}"),
                json!({"code": code, "reason": e.to_string()}),
            ),
        }
    }
}

/// Where the expert's local connections go right now: the case, its paired QUIC connection
/// and how its forwards are to end; none while not paired (waiting, or reconnecting).
pub type Route = Option<(SessionCode, quinn::Connection, watch::Receiver<Leave>)>;

/// Expert: forwards every connection to the local port, over whatever connection `route`
/// names at the time, for as long as the command runs.
pub async fn forward_connections(
    listener: TcpListener,
    route: watch::Receiver<Route>,
    tally: Arc<Tally>,
    out: Output,
) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                out.status(
                    "forward_failed",
                    format!("cannot accept a local connection: {e}"),
                    json!({"code": null, "reason": e.to_string()}),
                );
                // Out of file descriptors and such: do not spin.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some((code, connection, leave)) = route.borrow().clone() else {
            out.status(
                "forward_refused",
                format!("refused a local connection from {from}: not connected to the customer right now (waiting or reconnecting); try again once paired"),
                json!({"code": null, "from": from}),
            );
            let _ = tcp.set_zero_linger();
            continue;
        };
        let tally = tally.clone();
        tokio::spawn(async move {
            let id = tally.open();
            report_opened(&out, Some(code), id, &tally, &from.to_string());
            let result = forward::forward_connection(&connection, tcp, leave).await;
            report_closed(&out, Some(code), id, &tally, result);
        });
    }
}

/// `code`: the case the connection goes through.
fn report_opened(out: &Output, code: Option<SessionCode>, id: u64, tally: &Tally, from: &str) {
    let open = tally.open_now();
    out.status(
        "forward_opened",
        format!("forwarded connection {id} opened by {from} ({open} open)"),
        json!({"code": code, "id": id, "from": from, "open": open}),
    );
}

fn report_closed(
    out: &Output,
    code: Option<SessionCode>,
    id: u64,
    tally: &Tally,
    result: Result<ForwardStats, ForwardError>,
) {
    let open = tally.close();
    match result {
        // The broker's limit: say which limit, and how many connections it is counting
        // (the ones this side has open are the session's: only the expert forwards).
        Err(ForwardError::Reset(reset)) if reset == u64::from(close_code::TOO_MANY_STREAMS) => {
            let reason = format!(
                "the session already has {open} forwarded connections open (max_streams_per_session)"
            );
            out.status(
                "forward_failed",
                format!("forwarded connection {id} refused by sosqd: {reason}"),
                json!({"code": code, "id": id, "refused_by": "sosqd", "reason": reason, "reset_code": reset, "open": open}),
            );
        }
        Ok(stats) => out.status(
            "forward_closed",
            format!(
                "forwarded connection {id} closed: {} bytes sent, {} received ({open} open)",
                stats.sent, stats.received
            ),
            json!({"code": code, "id": id, "sent": stats.sent, "received": stats.received, "open": open}),
        ),
        Err(e) => out.status(
            "forward_failed",
            format!("forwarded connection {id} failed: {e} ({open} open)"),
            json!({"code": code, "id": id, "reason": e.to_string(), "open": open}),
        ),
    }
}
