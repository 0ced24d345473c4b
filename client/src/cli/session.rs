//! "Runs the session": once paired, stdin goes to the other party and what it sends comes
//! out on stdout, byte for byte, like `nc`. EOF on stdin half-closes our side; once the
//! peer has finished its side too, the command ends (a half-close never cuts off what the
//! other side still has to say). If the peer's connection drops, we wait for it to
//! come back (the case is pending again) instead of giving up on a customer with a bad
//! network.

use serde_json::json;
use sosq::protocol::{Event, StreamKind};
use sosq::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::output::Output;

/// Which side opens the chat stream once paired: the expert does, the customer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opens the stream.
    Expert,
    /// Accepts the stream.
    Customer,
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
pub async fn run(client: &mut Client, side: Side, out: Output) -> Result<Ended, ClientError> {
    let mut events = client
        .take_events()
        .ok_or_else(|| ClientError::Unexpected("events already taken".into()))?;
    let mut stdin = spawn_stdin_reader();
    let mut stdin_done = false;
    // Ctrl-C leaves politely, so the broker knows at once instead of after a timeout.
    let interrupted = tokio::signal::ctrl_c();
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
                    out.status(
                        "paired",
                        format!("connected to {peer_role} {peer_name} (case {code})"),
                        json!({"code": code, "peer_role": peer_role.to_string(), "peer_name": peer_name}),
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
                accepted = client.accept_stream() => accepted.map(|(_, send, recv)| Some((send, recv))),
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
                        if peer_done {
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
                        if stdin_done {
                            delivered(&mut send).await;
                            return Ok(Ended::PeerFinished);
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
                        if left {
                            break;
                        }
                    }
                    None => return Err(lost(client)),
                },
                _ = &mut interrupted => return Ok(Ended::Interrupted),
            }
        }
    }
}

/// Waits (briefly) until the broker has everything we sent, so closing the connection
/// right after cannot cut off the end of the conversation.
async fn delivered(send: &mut quinn::SendStream) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), send.stopped()).await;
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
