//! Live queue: whenever the queue changes, waiting customers whose place moved are told
//! their new position, and experts watching the queue get the new queue. Changes are
//! batched for a moment, and each batch looks only at the cases the core reports as
//! possibly moved (those behind the earliest change in their line), so a new arrival at
//! the back of a 100,000-case queue costs one position, not a pass over the queue. The
//! core remembers what each customer was told, so a case put back at the position it had
//! (an escalation or assignment that passes nobody) is not told it again.

use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::Event;

use super::Shared;

/// How long changes are gathered before one update goes out.
const BATCH: Duration = Duration::from_millis(50);

/// Runs until aborted.
pub async fn run(shared: Arc<Shared>) {
    let mut last_version = None;
    loop {
        shared.queue_changed.notified().await;
        tokio::time::sleep(BATCH).await;
        let (version, moved, views) = {
            let mut broker = shared.broker();
            let views: Vec<_> = shared
                .queue_watchers
                .iter()
                .map(|watcher| {
                    let (caller, limit) = watcher.value();
                    let page = super::dispatch::queue_for(caller, &broker, None, *limit);
                    (*watcher.key(), page)
                })
                .collect();
            (broker.queue_version(), broker.take_moved_positions(), views)
        };
        shared.queue_seen.send_replace(version);
        for (code, customer, position) in moved {
            if let Some(customer) = customer {
                shared.push(customer, Event::QueuePosition { code, position });
            }
        }
        // Watchers of a shared queue get it from the placement (`cluster_node`), not this core.
        if last_version == Some(version) || shared.placement.shared_queue() {
            continue;
        }
        last_version = Some(version);
        for (watcher, page) in views {
            shared.push(watcher, Event::QueueChanged(page));
        }
    }
}
