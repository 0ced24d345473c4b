//! One task per connection: accept the control stream, check the hello, then read requests
//! one at a time and answer each; pushes from other tasks arrive through the outbox.
//!
//! Anything that is not the protocol (a garbage frame, an oversized length, a second hello)
//! gets a clear error on the control stream and ends this connection only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sosq::codec::{self, FrameError};
use sosq::protocol::{
    close_code, ClientMessage, ErrorKind, ErrorReply, Reply, Role, ServerMessage, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::admission::AdmissionGuard;
use super::dispatch::{self, Caller, Channel};
use super::{PartyHandle, Shared, OUTBOX_CAPACITY};
use crate::broker::Departure;
use crate::relay;

/// What a staff member whose account was revoked is told.
pub const REVOKED: &str = "your access token was revoked";

/// How long a refused client gets to read the refusal before the connection is closed.
const FAREWELL_GRACE: Duration = Duration::from_secs(2);

/// Serves one incoming connection to its end; `_place` holds its admission slot.
pub async fn serve(shared: Arc<Shared>, incoming: quinn::Incoming, _place: AdmissionGuard) {
    let remote = incoming.remote_address();
    let handshake = tokio::time::timeout(shared.config().handshake_timeout, incoming).await;
    let connection = match handshake {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "abandoned a handshake that timed out");
            return;
        }
    };
    let party = shared.next_party_id();
    let span = tracing::info_span!("connection", party = party.0, %remote);
    run(shared, party, remote, connection)
        .instrument(span)
        .await;
}

async fn run(
    shared: Arc<Shared>,
    party: crate::broker::PartyId,
    remote: SocketAddr,
    connection: quinn::Connection,
) {
    let hello_timeout = shared.config().hello_timeout;
    let (send, mut recv) = match tokio::time::timeout(hello_timeout, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection ended before its control stream");
            return;
        }
        Err(_) => {
            connection.close(
                close_code::PROTOCOL_ERROR.into(),
                b"no control stream in time",
            );
            return;
        }
    };
    let (outbox, pending) = mpsc::channel(OUTBOX_CAPACITY);
    let writer = tokio::spawn(write_outbox(send, pending));

    let caller = match tokio::time::timeout(
        hello_timeout,
        codec::read_frame_within(&mut recv, codec::FRAME_DEADLINE),
    )
    .await
    {
        Ok(Ok(Some(ClientMessage::Hello { version, token }))) => {
            match greet(&shared, party, remote, version, token) {
                Ok(caller) => caller,
                Err((kind, message, code)) => {
                    return Box::pin(farewell(&connection, outbox, writer, kind, message, code))
                        .await;
                }
            }
        }
        Ok(Ok(Some(ClientMessage::Request(_)))) => {
            let message = "the first message must be Hello".to_string();
            let code = close_code::PROTOCOL_ERROR;
            return Box::pin(farewell(
                &connection,
                outbox,
                writer,
                ErrorKind::BadFrame,
                message,
                code,
            ))
            .await;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            let (kind, message) = frame_refusal(&e);
            let code = close_code::PROTOCOL_ERROR;
            return Box::pin(farewell(&connection, outbox, writer, kind, message, code)).await;
        }
        Err(_) => {
            connection.close(close_code::PROTOCOL_ERROR.into(), b"no hello in time");
            return;
        }
    };
    tracing::info!(role = %caller.role, name = %caller.name, "connected");
    let welcome = Reply::Welcome {
        role: caller.role,
        name: caller.name.clone(),
        server: format!("sosqd {}", env!("CARGO_PKG_VERSION")),
        keep_alive_ms: millis(shared.config().keep_alive),
        idle_timeout_ms: millis(shared.config().idle_timeout),
        protocol: PROTOCOL_VERSION,
    };
    if outbox
        .send(Box::new(ServerMessage::Reply(welcome)))
        .await
        .is_err()
    {
        return;
    }
    shared.parties.insert(
        party,
        PartyHandle {
            connection: connection.clone(),
            outbox: outbox.clone(),
            user: caller.user.clone(),
        },
    );
    let streams = tokio::spawn(relay::accept_streams(
        shared.relays.clone(),
        party,
        connection.clone(),
    ));

    let refusal = loop {
        match codec::read_frame_within::<ClientMessage, _>(&mut recv, codec::FRAME_DEADLINE).await {
            Ok(Some(ClientMessage::Request(request))) => {
                if !shared.still_authorized(caller.user.as_ref()) {
                    break Some((ErrorKind::Unauthenticated, REVOKED.to_string()));
                }
                // Boxed: an idle connection's task then does not carry room for the
                // largest request's state (about 1 KiB) while it waits (README "Scale").
                let reply = Box::pin(dispatch::handle(&shared, &caller, request)).await;
                if outbox
                    .send(Box::new(ServerMessage::Reply(reply)))
                    .await
                    .is_err()
                {
                    break None;
                }
            }
            Ok(Some(ClientMessage::Hello { .. })) => {
                break Some((ErrorKind::BadFrame, "hello sent twice".to_string()));
            }
            Ok(None) => break None,
            Err(FrameError::Io(_)) => break None,
            Err(e) => break Some(frame_refusal(&e)),
        }
    };
    let departure = departure_of(&connection, refusal.is_some());
    Box::pin(shared.party_left(party, &caller.actor(), departure)).await;
    streams.abort();
    match refusal {
        Some((kind, message)) => {
            tracing::info!(%message, "refused a malformed message; closing the connection");
            Box::pin(farewell(
                &connection,
                outbox,
                writer,
                kind,
                message,
                close_code::PROTOCOL_ERROR,
            ))
            .await;
        }
        None => {
            drop(outbox);
            let _ = tokio::time::timeout(FAREWELL_GRACE, writer).await;
            connection.close(close_code::DONE.into(), b"bye");
            tracing::info!("disconnected");
        }
    }
}

/// What to send instead of a message that cannot be framed (a reply past the frame limit
/// would close the connection, and the client would never know why): it is logged, a reply
/// becomes a clear error, an event is dropped. Pages are filled to fit a frame, so this is a
/// bug caught, not a path taken.
fn fits_instead(message: &ServerMessage, error: &FrameError) -> Option<Vec<u8>> {
    let kind = match message {
        ServerMessage::Reply(reply) => reply_kind(reply),
        ServerMessage::Event(_) => "event",
    };
    tracing::error!(%error, kind, "a message did not fit one frame and was not sent");
    match message {
        ServerMessage::Reply(_) => {
            let refusal = ServerMessage::Reply(Reply::Error(ErrorReply {
                kind: ErrorKind::Internal,
                message: format!(
                    "the answer ({kind}) was too large to send ({error}); the daemon logged it"
                ),
            }));
            codec::encode(&refusal).ok()
        }
        ServerMessage::Event(_) => None,
    }
}

/// The name of a reply, for logs.
fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Welcome { .. } => "welcome",
        Reply::Attached { .. } => "attached",
        Reply::Waiting => "waiting",
        Reply::Created(_) => "created",
        Reply::Queue(_) => "queue",
        Reply::Case(_) => "case",
        Reply::Cases(_) => "cases",
        Reply::History(_) => "history",
        Reply::Deleted { .. } => "deleted",
        Reply::UploadStarted { .. } => "upload started",
        Reply::UploadReceived { .. } => "upload received",
        Reply::AttachmentAdded(_) => "attachment added",
        Reply::Attachments(_) => "attachments",
        Reply::AttachmentPart(_) => "attachment part",
        Reply::Redirect(_) => "redirect",
        Reply::Error(_) => "error",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a party's connection ended, once its control stream is done: a client that
/// finished its control stream or closed with `DONE` left on purpose (it lets its streams
/// drain first); a timeout, a reset, any other close, or a protocol error means it was lost.
fn departure_of(connection: &quinn::Connection, refused: bool) -> Departure {
    if refused {
        return Departure::Lost;
    }
    match connection.close_reason() {
        None => Departure::Left,
        Some(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == close_code::DONE.into() =>
        {
            Departure::Left
        }
        Some(_) => Departure::Lost,
    }
}

/// A hello with another node's console delegation token (`delegation.rs`): the staff
/// member it names, if the token is this cluster's, unexpired, and the user still exists.
fn delegated(
    shared: &Shared,
    party: crate::broker::PartyId,
    address: SocketAddr,
    token: &str,
) -> Result<Caller, (ErrorKind, String, u32)> {
    let user = shared
        .delegation
        .get()
        .and_then(|delegation| delegation.verify(token, shared.now()))
        .and_then(|name| {
            let users = shared.users.list().ok()?;
            users.into_iter().find(|user| user.name == name)
        });
    match user {
        Some(user) => Ok(Caller {
            party,
            role: user.role.role(),
            name: user.name.clone(),
            user: Some(user),
            address,
            channel: Channel::Console,
        }),
        None => {
            tracing::warn!(%address, "refused a console delegation token");
            Err((
                ErrorKind::Unauthenticated,
                "this console delegation token is not valid here (another cluster, expired, or its user is gone)".to_string(),
                close_code::UNAUTHENTICATED,
            ))
        }
    }
}

/// A hello with a web pass (`web_pass.rs`): the web front's in-process party for a
/// browser, which stands for the browser's address and, for staff, the signed-in user
/// (revoked since: refused).
fn web_party(
    shared: &Shared,
    party: crate::broker::PartyId,
    token: &str,
) -> Result<Caller, (ErrorKind, String, u32)> {
    let refused = || {
        tracing::warn!("refused a web pass");
        Err((
            ErrorKind::Unauthenticated,
            "this web pass is not valid here (another daemon's, expired, or its user is gone)"
                .to_string(),
            close_code::UNAUTHENTICATED,
        ))
    };
    let Some(pass) = shared
        .web_pass
        .get()
        .and_then(|key| key.verify(token, shared.now()))
    else {
        return refused();
    };
    let Some(name) = pass.user else {
        return Ok(Caller {
            party,
            role: Role::Customer,
            name: String::new(),
            user: None,
            address: pass.address,
            channel: Channel::Browser,
        });
    };
    let found = shared
        .users
        .list()
        .ok()
        .and_then(|users| users.into_iter().find(|user| user.name == name));
    match found {
        Some(user) => Ok(Caller {
            party,
            role: user.role.role(),
            name: user.name.clone(),
            user: Some(user),
            address: pass.address,
            channel: Channel::Console,
        }),
        None => refused(),
    }
}

/// Checks the hello: protocol version, then the token if any.
fn greet(
    shared: &Shared,
    party: crate::broker::PartyId,
    address: SocketAddr,
    version: u16,
    token: Option<String>,
) -> Result<Caller, (ErrorKind, String, u32)> {
    if version != PROTOCOL_VERSION {
        return Err((
            ErrorKind::UnsupportedVersion,
            sosq::protocol::upgrade_advice(PROTOCOL_VERSION, version),
            close_code::PROTOCOL_ERROR,
        ));
    }
    let Some(token) = token else {
        return Ok(Caller {
            party,
            role: Role::Customer,
            name: String::new(),
            user: None,
            address,
            channel: Channel::Quic,
        });
    };
    if super::delegation::Delegation::is_delegation(&token) {
        return delegated(shared, party, address, &token);
    }
    if super::web_pass::WebPassKey::is_web_pass(&token) {
        return web_party(shared, party, &token);
    }
    match shared.users.authenticate(&token) {
        Ok(Some(user)) => Ok(Caller {
            party,
            role: user.role.role(),
            name: user.name.clone(),
            user: Some(user),
            address,
            channel: Channel::Quic,
        }),
        Ok(None) => {
            shared
                .counters
                .failed_authentications
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("refused an unknown or revoked token");
            Err((
                ErrorKind::Unauthenticated,
                "unknown or revoked access token".to_string(),
                close_code::UNAUTHENTICATED,
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the users file");
            Err((
                ErrorKind::Internal,
                "the server cannot check tokens right now".to_string(),
                close_code::UNAUTHENTICATED,
            ))
        }
    }
}

fn frame_refusal(error: &FrameError) -> (ErrorKind, String) {
    (ErrorKind::BadFrame, format!("bad frame: {error}"))
}

/// Sends one refusal, gives the client a moment to read it, then closes with `code`.
async fn farewell(
    connection: &quinn::Connection,
    outbox: mpsc::Sender<Box<ServerMessage>>,
    writer: tokio::task::JoinHandle<()>,
    kind: ErrorKind,
    message: String,
    code: u32,
) {
    let refusal = ServerMessage::Reply(Reply::Error(ErrorReply {
        kind,
        message: message.clone(),
    }));
    let _ = outbox.send(Box::new(refusal)).await;
    drop(outbox);
    let _ = tokio::time::timeout(FAREWELL_GRACE, writer).await;
    connection.close(code.into(), message.as_bytes());
}

/// Writes queued messages to the control stream; when every sender is gone, finishes the
/// stream and waits (bounded) for the peer to have it all.
async fn write_outbox(
    mut send: quinn::SendStream,
    mut pending: mpsc::Receiver<Box<ServerMessage>>,
) {
    while let Some(message) = pending.recv().await {
        let frame = match codec::encode(&message) {
            Ok(frame) => frame,
            Err(e) => match fits_instead(&message, &e) {
                Some(frame) => frame,
                None => continue,
            },
        };
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(FAREWELL_GRACE, send.stopped()).await;
    }
}

#[cfg(test)]
mod tests {
    use sosq::protocol::Event;
    use sosq::SessionCode;

    use super::*;

    #[test]
    fn an_oversized_reply_becomes_an_internal_error_and_an_oversized_event_is_dropped() {
        let past_the_limit = "x".repeat(codec::MAX_FRAME_LEN);
        let reply = ServerMessage::Reply(Reply::Welcome {
            role: Role::Admin,
            name: past_the_limit.clone(),
            server: "sosqd".into(),
            keep_alive_ms: 2_000,
            idle_timeout_ms: 6_000,
            protocol: PROTOCOL_VERSION,
        });
        let error = codec::encode(&reply).expect_err("past the frame limit");
        let frame = fits_instead(&reply, &error).expect("a reply is always answered");
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        match codec::decode::<ServerMessage>(&frame[4..]).expect("a valid frame") {
            ServerMessage::Reply(Reply::Error(refusal)) => {
                assert_eq!(refusal.kind, ErrorKind::Internal);
                assert!(refusal.message.contains("welcome"), "{}", refusal.message);
            }
            other => panic!("expected an error reply, got {other:?}"),
        }

        let event = ServerMessage::Event(Event::PeerLeft {
            code: SessionCode::from_number(1).expect("a code"),
            reason: past_the_limit,
        });
        let error = codec::encode(&event).expect_err("past the frame limit");
        assert_eq!(fits_instead(&event, &error), None, "an event is dropped");
    }
}
