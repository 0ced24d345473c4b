//! "Runs the session": once paired, stdin goes to the other party and what it sends comes
//! out on stdout, byte for byte, like `nc`. EOF on stdin half-closes our side; once the
//! peer has finished its side too, the command ends (a half-close never cuts off what the
//! other side still has to say). If the peer's connection drops, we wait for it to
//! come back (the case is pending again) instead of giving up on a customer with a bad
//! network.
//!
//! With forwarding (`--share` on the customer, `--forward` on the expert) the session also
//! carries TCP connections (see [`sosq::forward`]); each one opening and closing is reported
//! on stderr, and the session then lasts until Ctrl-C or the case ends, whatever the chat
//! does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use sosq::client::accept_relayed;
use sosq::forward::{self, ForwardError, ForwardStats};
use sosq::protocol::{close_code, Event, StreamKind};
use sosq::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::output::Output;

/// Which side opens the chat stream once paired: the expert does, the customer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opens the stream.
    Expert,
    /// Accepts the stream.
    Customer,
}

/// What a session forwards besides the chat.
#[derive(Default)]
pub struct Forwarding {
    /// Customer: the one local TCP service the expert may reach.
    pub share: Option<SocketAddr>,
    /// Expert: the bound local port whose connections are forwarded.
    pub listener: Option<TcpListener>,
}

impl Forwarding {
    fn is_active(&self) -> bool {
        self.share.is_some() || self.listener.is_some()
    }
}

/// How a session ended well.
pub enum Ended {
    /// The peer finished its side of the conversation.
    PeerFinished,
    /// The server ended the session (case closed).
    ByServer,
    /// The user pressed Ctrl-C.
    Interrupted,
}

/// Runs sessions on `client` until one ends; errors carry the one-line reason.
pub async fn run(
    client: &mut Client,
    side: Side,
    out: Output,
    forwarding: Forwarding,
) -> Result<Ended, ClientError> {
    let mut events = client
        .take_events()
        .ok_or_else(|| ClientError::Unexpected("events already taken".into()))?;
    let keep_open = forwarding.is_active();
    let tally = Arc::new(Tally::default());
    let share = forwarding.share;
    // The customer accepts every stream the expert opens: chats go to this loop, forwarded
    // connections to the shared service (or are refused).
    let (chats, mut chat_streams) = mpsc::channel(4);
    let _acceptor = (side == Side::Customer).then(|| {
        AbortOnDrop(tokio::spawn(accept_streams(
            client.connection().clone(),
            share,
            chats,
            tally.clone(),
            out,
        )))
    });
    let _forwarder = forwarding.listener.map(|listener| {
        AbortOnDrop(tokio::spawn(forward_connections(
            listener,
            client.connection().clone(),
            tally.clone(),
            out,
        )))
    });
    let mut stdin = spawn_stdin_reader();
    let mut stdin_done = false;
    // Ctrl-C, SIGTERM and a closed terminal leave politely, so the broker knows at once
    // instead of after a timeout.
    let interrupted = super::signals::interrupted();
    tokio::pin!(interrupted);
    loop {
        // Wait to be paired.
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = &mut interrupted => return Ok(Ended::Interrupted),
            };
            match event {
                Some(Event::Paired {
                    code,
                    peer_role,
                    peer_name,
                }) => {
                    let mut human = format!("connected to {peer_role} {peer_name} (case {code})");
                    if let Some(share) = share {
                        human.push_str(&format!(
                            "; they can reach {share}, the one service you share; press Ctrl-C to end the session"
                        ));
                    }
                    out.status(
                        "paired",
                        human,
                        json!({"code": code, "peer_role": peer_role.to_string(), "peer_name": peer_name, "share": share}),
                    );
                    break;
                }
                Some(other) => {
                    if let Some(ended) = report(&out, other) {
                        return Ok(ended);
                    }
                }
                None => return Err(lost(client)),
            }
        }
        // Get the chat stream.
        let stream = match side {
            Side::Expert => client.open_stream(StreamKind::Chat).await.map(Some),
            Side::Customer => tokio::select! {
                accepted = chat_streams.recv() => match accepted {
                    Some(stream) => Ok(Some(stream)),
                    None => return Err(lost(client)),
                },
                event = events.recv() => match event {
                    Some(event) => match report(&out, event) {
                        Some(ended) => return Ok(ended),
                        None => Ok(None),
                    },
                    None => return Err(lost(client)),
                },
                _ = &mut interrupted => return Ok(Ended::Interrupted),
            },
        };
        let Some((mut send, mut recv)) = stream? else {
            continue;
        };
        if stdin_done {
            let _ = send.finish();
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdout = tokio::io::stdout();
        let mut peer_done = false;
        // The peer left, but what it sent before leaving (its end-of-stream included) may
        // still be on the way; the broker ends the stream either way, so read on until then.
        let mut peer_left = false;
        // Copy until both sides have finished (done) or the peer leaves (wait for it again).
        loop {
            tokio::select! {
                chunk = stdin.recv(), if !stdin_done => match chunk {
                    Some(bytes) => {
                        if send.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        stdin_done = true;
                        let _ = send.finish();
                        if peer_done && !keep_open {
                            delivered(&mut send).await;
                            return Ok(Ended::PeerFinished);
                        }
                    }
                },
                read = recv.read(&mut buf), if !peer_done => match read {
                    Ok(Some(n)) => {
                        stdout.write_all(&buf[..n]).await.map_err(|e| ClientError::Unexpected(format!("cannot write to stdout: {e}")))?;
                        stdout.flush().await.map_err(|e| ClientError::Unexpected(format!("cannot write to stdout: {e}")))?;
                    }
                    Ok(None) => {
                        peer_done = true;
                        out.status("peer_finished", "the other side has finished sending", json!({}));
                        if stdin_done && !keep_open {
                            delivered(&mut send).await;
                            return Ok(Ended::PeerFinished);
                        }
                        if peer_left {
                            break;
                        }
                    }
                    // Reset or connection trouble: the control stream says what happened.
                    Err(_) => break,
                },
                event = events.recv() => match event {
                    Some(event) => {
                        let left = matches!(event, Event::PeerLeft { .. });
                        if let Some(ended) = report(&out, event) {
                            return Ok(ended);
                        }
                        if left && peer_done {
                            break;
                        }
                        peer_left |= left;
                    }
                    None => return Err(lost(client)),
                },
                _ = &mut interrupted => return Ok(Ended::Interrupted),
            }
        }
    }
}

/// Waits (briefly) until the broker has our finished chat stream, so closing the
/// connection right after cannot discard the end-of-stream the peer waits for.
async fn delivered(send: &mut quinn::SendStream) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
}

/// Counts forwarded connections, for the lines that report them.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    open: AtomicUsize,
}

impl Tally {
    /// Counts one more open connection; returns its number.
    fn open(&self) -> u64 {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one connection closed; returns how many stay open.
    fn close(&self) -> usize {
        self.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1)
    }
}

/// Aborts a background task when the session that started it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Customer: accepts the expert's streams until the connection ends.
async fn accept_streams(
    connection: quinn::Connection,
    share: Option<SocketAddr>,
    chats: mpsc::Sender<(quinn::SendStream, quinn::RecvStream)>,
    tally: Arc<Tally>,
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
                        json!({}),
                    );
                    let _ = forward::serve_shared(None, send, recv).await;
                    continue;
                }
                let tally = tally.clone();
                tokio::spawn(async move {
                    let id = tally.open();
                    report_opened(&out, id, &tally, "the expert");
                    let result = forward::serve_shared(share, send, recv).await;
                    report_closed(&out, id, &tally, result);
                });
            }
            Err(ClientError::Disconnected(_)) => return,
            Err(e) => out.status(
                "stream_refused",
                format!("refused a stream: {e}"),
                json!({"reason": e.to_string()}),
            ),
        }
    }
}

/// Expert: forwards every connection to the local port until the session ends.
async fn forward_connections(
    listener: TcpListener,
    connection: quinn::Connection,
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
                    json!({"reason": e.to_string()}),
                );
                // Out of file descriptors and such: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let connection = connection.clone();
        let tally = tally.clone();
        tokio::spawn(async move {
            let id = tally.open();
            report_opened(&out, id, &tally, &from.to_string());
            let result = forward::forward_connection(&connection, tcp).await;
            report_closed(&out, id, &tally, result);
        });
    }
}

fn report_opened(out: &Output, id: u64, tally: &Tally, from: &str) {
    let open = tally.open.load(Ordering::Relaxed);
    out.status(
        "forward_opened",
        format!("forwarded connection {id} opened by {from} ({open} open)"),
        json!({"id": id, "from": from, "open": open}),
    );
}

fn report_closed(out: &Output, id: u64, tally: &Tally, result: Result<ForwardStats, ForwardError>) {
    let open = tally.close();
    match result {
        // The broker's limit: say which limit, and how many connections it is counting
        // (the ones this side has open are the session's: only the expert forwards).
        Err(ForwardError::Reset(code)) if code == u64::from(close_code::TOO_MANY_STREAMS) => {
            let reason = format!(
                "the session already has {open} forwarded connections open (max_streams_per_session)"
            );
            out.status(
                "forward_failed",
                format!("forwarded connection {id} refused by sosqd: {reason}"),
                json!({"id": id, "refused_by": "sosqd", "reason": reason, "code": code, "open": open}),
            );
        }
        Ok(stats) => out.status(
            "forward_closed",
            format!(
                "forwarded connection {id} closed: {} bytes sent, {} received ({open} open)",
                stats.sent, stats.received
            ),
            json!({"id": id, "sent": stats.sent, "received": stats.received, "open": open}),
        ),
        Err(e) => out.status(
            "forward_failed",
            format!("forwarded connection {id} failed: {e} ({open} open)"),
            json!({"id": id, "reason": e.to_string(), "open": open}),
        ),
    }
}

/// Reports an event; `Some` if it ends the session.
fn report(out: &Output, event: Event) -> Option<Ended> {
    match event {
        Event::PeerLeft { code, reason } => {
            out.status(
                "peer_left",
                reason.clone(),
                json!({"code": code, "reason": reason}),
            );
            None
        }
        Event::SessionEnded { code, reason } => {
            out.status(
                "session_ended",
                reason.clone(),
                json!({"code": code, "reason": reason}),
            );
            Some(Ended::ByServer)
        }
        Event::QueuePosition { code, position } => {
            out.status(
                "queue_position",
                format!("you are number {position} in the queue"),
                json!({"code": code, "position": position}),
            );
            None
        }
        Event::Paired { .. } | Event::QueueChanged { .. } => None,
    }
}

fn lost(client: &Client) -> ClientError {
    match client.connection().close_reason() {
        Some(reason) => ClientError::Disconnected(sosq::client::describe_connection_error(&reason)),
        None => ClientError::Disconnected("the server closed the control stream".into()),
    }
}

/// Reads stdin on its own task so a session can wait on it alongside the network;
/// the channel closes at EOF.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}
