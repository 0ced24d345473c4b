//! A WebSocket client of the chat (`/chat/customer`, `/cases/CODE/chat`), as a page's
//! script uses it: TLS pinned to the daemon's certificate, HTTP/1.1 upgrade, an `Origin`
//! header like a browser's, JSON messages.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::Daemon;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// One open chat socket.
pub struct ChatSocket {
    socket: WebSocketStream<Tls>,
}

/// Why a socket could not open: the HTTP status the server answered with.
#[derive(Debug)]
pub struct Refused(pub u16);

impl ChatSocket {
    /// Opens `path` on `daemon`'s console with `origin` (none: no Origin header) and the
    /// given cookie (a signed-in staff session).
    pub async fn open_with(
        daemon: &Daemon,
        path: &str,
        origin: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<ChatSocket, Refused> {
        let base = daemon.console_url();
        let authority = base.trim_start_matches("https://").to_string();
        let verifier = sosq::tls::PinnedServerCert::new(daemon.fingerprint.clone());
        let mut tls = rustls::ClientConfig::builder_with_provider(sosq::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("console reachable");
        let name = rustls::pki_types::ServerName::try_from("sosqd").expect("name");
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .expect("TLS");
        let mut request = format!("wss://{authority}{path}")
            .into_client_request()
            .expect("request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("origin"));
        }
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().expect("cookie"));
        }
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _)) => Ok(ChatSocket { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(Refused(response.status().as_u16()))
            }
            Err(e) => panic!("WebSocket handshake: {e}"),
        }
    }

    /// Opens `path` as a page of this console would.
    pub async fn open(daemon: &Daemon, path: &str) -> ChatSocket {
        let origin = daemon.console_url();
        ChatSocket::open_with(daemon, path, Some(&origin), None)
            .await
            .expect("socket opened")
    }

    /// A customer's page sends the help form.
    pub async fn ask(daemon: &Daemon, name: &str, description: &str) -> ChatSocket {
        let mut socket = ChatSocket::open(daemon, "/chat/customer").await;
        socket
            .send(json!({"type": "open", "name": name, "description": description, "priority": "normal"}))
            .await;
        socket
    }

    /// A customer's page that comes back (a reload, another tab): opens the customer's
    /// socket and resumes case `code` with `secret`, as `name`.
    pub async fn resume(daemon: &Daemon, code: &str, secret: &str, name: &str) -> ChatSocket {
        let mut socket = ChatSocket::open(daemon, "/chat/customer").await;
        socket
            .send(json!({"type": "resume", "code": code, "secret": secret, "name": name}))
            .await;
        socket
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("sent");
    }

    /// Sends a chat line.
    pub async fn say(&mut self, text: &str) {
        self.send(json!({"type": "say", "text": text})).await;
    }

    /// The next JSON message; `None` once the socket is closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(super::PATIENCE, self.socket.next())
                .await
                .expect("a message in time")?;
            match message.ok()? {
                Message::Text(text) => return Some(serde_json::from_str(&text).expect("JSON")),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a message of `kind` comes (panics if the socket closes first); returns it.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the socket closed before a {kind:?} message"));
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// The next `count` chat lines from the peer (other messages skipped).
    pub async fn peer_lines(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(count);
        while lines.len() < count {
            let message = self.expect("line").await;
            if message["from"] == "peer" {
                lines.push(message["text"].as_str().expect("text").to_string());
            }
        }
        lines
    }

    /// Closes the socket, as a page that goes away (reload, closed tab).
    pub async fn drop_page(mut self) {
        let _ = self.socket.close(None).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
