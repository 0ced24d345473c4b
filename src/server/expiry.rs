//! The expiry timer: sleeps until the core's next deadline (never scanning cases), wakes
//! early when a command may have armed an earlier one, and expires what is due.

use std::sync::Arc;

use super::Shared;

/// Runs until aborted.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let next = shared.broker().next_deadline();
        match next {
            Some(deadline) => {
                let at = shared.clock.instant_of(deadline);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.expiry_wake.notified() => continue,
                }
            }
            None => {
                shared.expiry_wake.notified().await;
                continue;
            }
        }
        let expired = shared
            .execute(|broker, now, out| Ok(broker.expire_due(now, out)))
            .await;
        match expired {
            Ok((codes, _)) if !codes.is_empty() => {
                tracing::info!(count = codes.len(), "expired cases");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not expire cases"),
        }
    }
}
