//! The console's listener: TCP accept, the TLS handshake with the daemon's certificate,
//! then HTTP/1.1 or HTTP/2 (ALPN) into the router. One task per connection; a cap on
//! connections and a time limit on the handshake and the request head, so a slow or
//! silent client holds little for long.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::{router, WebState, HANDSHAKE_TIMEOUT};
use crate::transport::Identity;

/// What can go wrong setting the console up.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The certificate or key is not usable for HTTPS.
    #[error("the web console cannot use the certificate: {0}")]
    Tls(#[from] rustls::Error),
}

/// The most console connections open at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;

/// The HTTPS setup of the console: the daemon's certificate chain and key, HTTP/2 or
/// HTTP/1.1 by ALPN. Errors: the key does not fit the certificate.
pub fn tls_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, WebError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(sosq::tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// Serves the console on `listener` until the task is aborted, each connection with the
/// HTTPS setup in force when it arrives (a reload may swap the certificate).
pub async fn serve(state: Arc<WebState>, listener: TcpListener) {
    tokio::select! {
        () = accept(state.clone(), listener) => {}
        () = sweep_revoked(state) => {}
    }
}

/// How often console sessions are checked against the users store.
const REVOCATION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends the console sessions of revoked tokens within [`REVOCATION_CHECK`], as the
/// daemon closes their QUIC connections (each request checks too; this also ends the
/// sessions that make none).
async fn sweep_revoked(state: Arc<WebState>) {
    let mut tick = tokio::time::interval(REVOCATION_CHECK);
    loop {
        tick.tick().await;
        state
            .sessions
            .retain_staff(|user| state.shared.still_authorized(Some(user)));
    }
}

/// The accept loop.
async fn accept(state: Arc<WebState>, listener: TcpListener) {
    let shared = state.shared.clone();
    let app = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            // Without TCP_NODELAY, the tail of a page written after a full TLS record waits
            // for the browser's delayed acknowledgement (40 ms on Linux): measured by
            // benches/console.rs as a flat 44 ms per page over HTTP/2.
            Ok((tcp, remote)) => {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%remote, %error, "cannot set TCP_NODELAY on a console connection");
                }
                (tcp, remote)
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(%error, "the web console cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(tls) = shared.web_tls() else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "console TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            serve_connection(stream, remote, app).await;
        });
    }
}

/// One HTTPS connection: HTTP/1.1 (with upgrades, for the chat's WebSocket) or HTTP/2, each
/// request told where it came from.
async fn serve_connection(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    remote: SocketAddr,
    app: axum::Router,
) {
    let service = app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        },
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let result = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
    if let Err(error) = result {
        tracing::debug!(%remote, %error, "console connection ended with an error");
    }
}
