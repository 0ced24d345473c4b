//! Pairings that end while their streams still drain (a party left on purpose after
//! finishing what it sent): the bytes they carry go into the case history once the last
//! stream is done, so the history counts exactly what was relayed, drained bytes included.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sosq::SessionCode;
use tokio::sync::mpsc;

use super::Shared;
use crate::broker::{Actor, Effect};
use crate::relay::Draining;

/// Runs until aborted: waits for each draining pairing to finish and notes its traffic in
/// the case, if the case is still open (a case closed meanwhile kept the line it had then).
pub async fn run(
    shared: Arc<Shared>,
    mut drains: mpsc::UnboundedReceiver<(SessionCode, Draining)>,
) {
    while let Some((code, draining)) = drains.recv().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let traffic = draining.finished().await;
            shared.counters.relayed_bytes.fetch_add(
                traffic.customer_to_expert + traffic.expert_to_customer,
                Ordering::Relaxed,
            );
            let noted = shared
                .execute(&Actor::daemon(), |broker, now, out| {
                    let mut changes = Vec::new();
                    broker.record_traffic(now, code, traffic, &mut changes);
                    out.extend(changes.into_iter().map(Effect::Persist));
                    Ok(())
                })
                .await;
            if let Err(e) = noted {
                tracing::error!(%code, error = %e, "could not note a drained session's traffic");
            }
        });
    }
}
