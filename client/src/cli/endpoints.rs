//! Every QUIC endpoint the command opened, so that however it ends (done, an error, Ctrl-C,
//! SIGTERM, SIGHUP) its connections close politely before the process exits: the daemon then
//! frees their seats at once instead of after its idle timeout, and a failing command run in
//! a loop never piles up half-dead connections against the per-address limit.

use std::sync::Mutex;
use std::time::Duration;

static OPEN: Mutex<Vec<quinn::Endpoint>> = Mutex::new(Vec::new());

/// Remembers an endpoint to close at exit.
pub fn remember(endpoint: &quinn::Endpoint) {
    if let Ok(mut open) = OPEN.lock() {
        open.push(endpoint.clone());
    }
}

/// Closes every remembered endpoint (and so every connection on it) with "bye", and waits a
/// moment (at most a second) for the closes to be sent.
pub async fn close_all() {
    let open: Vec<quinn::Endpoint> = match OPEN.lock() {
        Ok(mut open) => std::mem::take(&mut *open),
        Err(_) => return,
    };
    for endpoint in &open {
        endpoint.close(sosq::protocol::close_code::DONE.into(), b"bye");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for endpoint in &open {
            endpoint.wait_idle().await;
        }
    })
    .await;
}
