//! Live queue: whenever the queue changes, waiting customers whose place moved are told
//! their new position, and experts watching the queue get the new queue. Changes are
//! batched for a moment, so a burst of pulls costs one pass over the queue, not one each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::Event;
use sosq::SessionCode;

use super::Shared;

/// How long changes are gathered before one update goes out.
const BATCH: Duration = Duration::from_millis(50);

/// Runs until aborted.
pub async fn run(shared: Arc<Shared>) {
    let mut told: HashMap<SessionCode, u32> = HashMap::new();
    let mut last_version = None;
    loop {
        shared.queue_changed.notified().await;
        tokio::time::sleep(BATCH).await;
        let (version, positions, views) = {
            let broker = shared.broker();
            let views: Vec<_> = shared
                .queue_watchers
                .iter()
                .map(|watcher| {
                    let queue = super::dispatch::queue_for(&shared, watcher.value(), &broker);
                    (*watcher.key(), queue)
                })
                .collect();
            (broker.queue_version(), broker.waiting_positions(), views)
        };
        if last_version == Some(version) {
            continue;
        }
        last_version = Some(version);
        let mut now_told = HashMap::with_capacity(positions.len());
        for (code, customer, position) in positions {
            now_told.insert(code, position);
            let Some(customer) = customer else { continue };
            if told.get(&code) != Some(&position) {
                shared.push(customer, Event::QueuePosition { code, position });
            }
        }
        told = now_told;
        for (watcher, queue) in views {
            shared.push(watcher, Event::QueueChanged { queue });
        }
    }
}
