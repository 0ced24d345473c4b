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
        let (version, queue, customers) = {
            let broker = shared.broker();
            let queue = broker.queue_view();
            let customers: Vec<_> = queue
                .iter()
                .map(|entry| broker.case(entry.code).and_then(|case| case.customer))
                .collect();
            (broker.queue_version(), queue, customers)
        };
        if last_version == Some(version) {
            continue;
        }
        last_version = Some(version);
        let mut now_told = HashMap::with_capacity(queue.len());
        for (entry, customer) in queue.iter().zip(customers) {
            now_told.insert(entry.code, entry.position);
            let Some(customer) = customer else { continue };
            if told.get(&entry.code) != Some(&entry.position) {
                shared.push(
                    customer,
                    Event::QueuePosition {
                        code: entry.code,
                        position: entry.position,
                    },
                );
            }
        }
        told = now_told;
        let watchers: Vec<_> = shared.queue_watchers.iter().map(|w| *w.key()).collect();
        for watcher in watchers {
            shared.push(
                watcher,
                Event::QueueChanged {
                    queue: queue.clone(),
                },
            );
        }
    }
}
