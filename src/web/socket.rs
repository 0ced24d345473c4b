//! The chat's WebSocket: JSON messages between a page and its in-process party
//! (`bridge.rs`), the Origin check every chat socket passes, and the page's liveness.
//!
//! A browser answers WebSocket pings by itself, so a page that stops answering (its
//! network dropped, the laptop slept) is noticed after the daemon's idle timeout, as a
//! native party's silent connection is; the party then waits for it ([`super::chat::linger`]).

use std::time::Duration;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::bridge::{page_link, PageEnd, Start};
use super::chat::{FromBrowser, ToBrowser};
use super::layout::PageError;
use super::WebState;

/// Largest message a page may send, in bytes: a part of an attachment (its base64 and JSON
/// around it, `bridge/upload.rs`) fits, and so does a chat line of the longest allowed
/// length in 4-byte characters.
pub const MAX_MESSAGE_BYTES: usize = 40 * 1024;

/// How long a page has to say what it wants after the socket opens.
pub const FIRST_MESSAGE_WITHIN: Duration = Duration::from_secs(10);

/// Whether a WebSocket handshake comes from a page of this server: its `Origin` (which a
/// browser always sends on a WebSocket) must be `https://` and the `Host` it asked for.
/// A WebSocket is not bound by the same-origin policy, so without this any site could
/// open a chat in its visitor's name.
pub fn from_this_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin == format!("https://{host}"),
        _ => false,
    }
}

/// Accepts a chat socket's handshake: refused (403) unless it comes from a page of this
/// server ([`from_this_origin`]); else upgraded with the chat's message limits, and
/// `serve` runs the socket.
pub fn accept<F, Fut>(headers: &HeaderMap, upgrade: WebSocketUpgrade, serve: F) -> Response
where
    F: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if !from_this_origin(headers) {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "a chat from another site was refused (it did not come from this server)",
        )
        .into_response();
    }
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(serve)
}

/// Gives the page on `socket` to the party `start` names (`bridge.rs`) and carries their
/// messages until either is done.
pub async fn join_party(
    state: Arc<WebState>,
    socket: WebSocket,
    start: Start,
    address: SocketAddr,
) {
    let (link, end) = page_link();
    state
        .bridges
        .attach(&state.shared, start, address, link)
        .await;
    pump(socket, end, state.shared.config().idle_timeout).await;
}

/// Reads the page's first message as a `T`, within [`FIRST_MESSAGE_WITHIN`]. Errors: the
/// words to tell the page.
pub async fn first_message<T: DeserializeOwned>(socket: &mut WebSocket) -> Result<T, String> {
    let message = tokio::time::timeout(FIRST_MESSAGE_WITHIN, socket.recv())
        .await
        .map_err(|_| "nothing was asked in time".to_string())?;
    match message {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str())
            .map_err(|e| format!("the page's request was not understood: {e}")),
        _ => Err("the page's first message was not a request".into()),
    }
}

/// Sends one message to the page; false if the socket is gone.
pub async fn send(socket: &mut WebSocket, message: &ToBrowser) -> bool {
    let Ok(text) = serde_json::to_string(message) else {
        return false;
    };
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// Moves messages between the page and its party until either is done. A page silent
/// (not even a pong) for `idle` is let go. Dropping `end` tells the party the page left.
pub async fn pump(mut socket: WebSocket, mut end: PageEnd, idle: Duration) {
    let mut ping = tokio::time::interval((idle / 3).max(Duration::from_millis(100)));
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            told = end.to_page.recv() => match told {
                Some(message) => {
                    if !send(&mut socket, &message).await { return; }
                    if message.is_final() {
                        return close(socket, "the session is over").await;
                    }
                }
                // Another page of the same case took the party over.
                None => return close(socket, "this chat continues in another page").await,
            },
            received = socket.recv() => {
                heard = tokio::time::Instant::now();
                match received {
                    Some(Ok(Message::Text(text))) => {
                        match serde_json::from_str::<FromBrowser>(text.as_str()) {
                            Ok(asked) => {
                                if end.from_page.send(asked).await.is_err() { return; }
                            }
                            Err(_) => {
                                let refused = ToBrowser::Refused { text: "that message was not understood".into() };
                                if !send(&mut socket, &refused).await { return; }
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let refused = ToBrowser::Refused { text: "binary messages are not taken here".into() };
                        if !send(&mut socket, &refused).await { return; }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > idle {
                    tracing::debug!("a chat page stopped answering");
                    return;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() { return; }
            }
        }
    }
}

/// Closes the socket normally, saying why.
async fn close(mut socket: WebSocket, reason: &'static str) {
    let frame = CloseFrame {
        code: 1000,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_page_of_this_host_may_open_a_chat() {
        let headers = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, "support.example:4433".parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        assert!(from_this_origin(&headers(Some(
            "https://support.example:4433"
        ))));
        assert!(!from_this_origin(&headers(Some("https://evil.example"))));
        assert!(!from_this_origin(&headers(Some(
            "http://support.example:4433"
        ))));
        assert!(!from_this_origin(&headers(Some("null"))));
        assert!(!from_this_origin(&headers(None)));
    }
}
