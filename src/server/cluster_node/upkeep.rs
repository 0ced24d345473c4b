//! A cluster node's background work: the heartbeat that keeps its lease (and lets go of
//! its cases when it lapses), reserved session codes, wake-ups for waiting pulls, and the
//! live shared queue for watchers. Each runs until the daemon aborts it at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::{close_code, Event, QueuePage, Timestamp};
use sosq::SessionCode;
use tokio::time::Instant;

use super::{ClusterNode, CODES_LOW};
use crate::cluster::{ClusterError, Home};
use crate::server::{ServerError, Shared};
use crate::store::postgres::QueueWake;

/// How many codes one reservation asks for (one statement).
const CODE_BATCH: usize = 2048;
/// How often watchers of the shared queue get a fresh page (when it changed).
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Reserves codes until the node holds at least [`CODES_LOW`].
pub(super) async fn top_up_codes(node: &ClusterNode, shared: &Shared) -> Result<(), ServerError> {
    loop {
        let candidates = {
            let mut broker = shared.broker();
            match broker.codes_supplied() {
                Some(left) if left < CODES_LOW => broker.code_candidates(CODE_BATCH),
                _ => return Ok(()),
            }
        };
        let reserved = node.cluster.reserve_codes(&candidates).await?;
        shared.broker().supply_codes(reserved);
    }
}

/// The node's background work, until aborted: renew the lease every third of it; while
/// it holds, let go of cases the store says another node serves now (or that were
/// deleted), keep codes reserved, and take over the expired cases of lost nodes so they
/// expire exactly once; when it lapses, let go of every case.
pub(super) async fn heartbeat(node: Arc<ClusterNode>, shared: Arc<Shared>) {
    let cluster = node.cluster.clone();
    let mut tick = tokio::time::interval(cluster.lease() / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lapsed = false;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        match cluster.renew().await {
            Ok(()) => {
                node.set_lease(Some(sent + cluster.lease()));
                if lapsed {
                    tracing::warn!("the lease is renewed again; serving cases");
                    // Every party was let go at the lapse: none of this node's rows may
                    // show a customer online until it is back.
                    if let Err(error) = cluster.nobody_here().await {
                        tracing::warn!(%error, "cannot mark this node's waiting customers offline");
                        continue;
                    }
                    lapsed = false;
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot renew this node's lease");
                if matches!(error, ClusterError::NodeTaken(_)) {
                    node.set_lease(None);
                }
            }
        }
        if !node.lease_holds() {
            if !lapsed {
                tracing::error!(
                    "this node's lease lapsed: other nodes take its cases over; letting go of them"
                );
                lapsed = true;
            }
            node.give_up_all(
                &shared,
                "this node lost its database; your case continues on another node: connect again",
            );
            continue;
        }
        if let Err(error) = keep_up(&node, &shared).await {
            tracing::warn!(%error, "cluster upkeep failed; trying again at the next heartbeat");
        }
    }
}

/// One heartbeat's upkeep while the lease holds.
async fn keep_up(node: &ClusterNode, shared: &Shared) -> Result<(), ServerError> {
    let cluster = &node.cluster;
    // What the ledger held *before* the query: a case whose first row commits meanwhile
    // is in the ledger only afterwards, and would look lost.
    let held = cluster.ledger().held();
    let homed: HashMap<SessionCode, i64> = cluster.homed_here().await?.into_iter().collect();
    for (code, epoch) in held {
        // Taken over again here meanwhile (a new epoch in the ledger) is ours too; if the
        // listing does not show that epoch yet, it may predate the takeover, and the next
        // heartbeat looks again rather than letting go of a case just taken.
        let now_held = cluster.ledger().holding(code).0;
        if now_held != 0 && now_held != epoch && homed.get(&code) != Some(&now_held) {
            continue;
        }
        let still_ours = homed
            .get(&code)
            .is_some_and(|stored| *stored == epoch || *stored == now_held);
        let open_here = shared.broker().case(code).is_some();
        if !still_ours && open_here {
            let (close, reason) = match cluster.locate(code).await? {
                // Homed here after all (the listing raced a takeover by this node).
                Home::Here => continue,
                Home::Missing => (close_code::DELETED, "your case was deleted"),
                Home::Finished => (close_code::SESSION_ENDED, "your case was closed"),
                _ => (
                    close_code::SHUTDOWN,
                    "your case continues on another node; connect again",
                ),
            };
            tracing::info!(%code, reason, "letting go of a case");
            node.forget(shared, code, close, reason);
        } else if !open_here && !still_ours {
            cluster.ledger().release(code);
        }
    }
    let now: Timestamp = shared.now();
    let due = cluster
        .orphans_due(i64::try_from(now.0).unwrap_or(i64::MAX), 100)
        .await?;
    for code in due {
        node.adopt(shared, code).await?;
        shared.expiry_wake.notify_one();
    }
    Ok(())
}

/// Keeps this node's reserved codes topped up: woken by intake when they run low, and
/// every second in case a wake-up came while the database was unreachable.
pub(super) async fn keep_codes(node: Arc<ClusterNode>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = node.codes_wanted.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !node.lease_holds() {
            continue;
        }
        if let Err(error) = top_up_codes(&node, &shared).await {
            tracing::warn!(%error, "cannot reserve session codes; trying again in a second");
        }
    }
}

/// Wakes one of this node's waiting pulls that may take it whenever any node (this one
/// too) commits a case waiting online (see `cluster::listen_for_cases`), reconnecting
/// after a lost connection.
pub(super) async fn wake_on_new_cases(node: Arc<ClusterNode>, shared: Arc<Shared>) {
    let url = shared.config().store.clone();
    loop {
        let woken = |case: Option<QueueWake>| {
            node.waiting_pulls.case_waiting(case.as_ref());
        };
        if let Err(error) = crate::cluster::listen_for_cases(&url, woken).await {
            tracing::debug!(%error, "the queue's wake-up connection ended; pulls poll meanwhile");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pushes the shared queue to every watcher whose page changed, every [`WATCH_EVERY`].
pub(super) async fn watch_shared_queue(node: Arc<ClusterNode>, shared: Arc<Shared>) {
    let mut last: HashMap<crate::broker::PartyId, QueuePage> = HashMap::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let watchers: Vec<_> = shared
            .queue_watchers
            .iter()
            .map(|w| (*w.key(), w.value().clone()))
            .collect();
        last.retain(|party, _| watchers.iter().any(|(p, _)| p == party));
        for (party, (caller, limit)) in watchers {
            match node.queue_page(&caller, None, limit).await {
                Ok(page) => {
                    if last.get(&party) != Some(&page) {
                        last.insert(party, page.clone());
                        shared.push(party, Event::QueueChanged(page));
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the shared queue"),
            }
        }
    }
}
