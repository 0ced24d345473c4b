//! Retention: closed and expired cases older than `retention` (by when they last changed)
//! are deleted by the daemon itself, a batch at a time through the same ordered path as
//! every other change ([`Shared::execute`]), so the broker keeps serving between batches
//! and the deleted cases' codes are released.

use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::{ActorRole, Timestamp};

use super::{ServerError, Shared};
use crate::broker::{humanize, Actor, AuditEntry, Effect, Persist};
use crate::store::StoreError;

/// Cases deleted per transaction.
pub const BATCH: usize = 1_000;

/// Runs until aborted: a sweep at start, then one every tenth of the retention period
/// (at least every second, at most every hour).
pub async fn run(shared: Arc<Shared>) {
    let every =
        (shared.config().retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        match sweep(&shared).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "retention deleted old closed and expired cases"),
            Err(e) => tracing::error!(error = %e, "retention could not delete old cases"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Deletes every closed or expired case that last changed more than `retention` ago, in
/// batches of [`BATCH`]; returns how many went.
pub async fn sweep(shared: &Shared) -> Result<usize, ServerError> {
    let retention = shared.config().retention;
    let cutoff = Timestamp(
        shared
            .now()
            .0
            .saturating_sub(retention.as_millis().min(u64::MAX as u128) as u64),
    );
    let actor = Actor {
        who: sosq::protocol::Actor::new(ActorRole::Sosqd, "retention"),
        address: None,
    };
    let mut total = 0;
    loop {
        let store = shared.store.clone();
        let mut codes = tokio::task::spawn_blocking(move || store.finished_before(cutoff, BATCH))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))??;
        let full = codes.len() == BATCH;
        if codes.is_empty() {
            return Ok(total);
        }
        let ((), report) = shared
            .execute(&actor, |broker, now, out| {
                // A code freed by an admin's delete meanwhile may belong to a new open case.
                codes.retain(|code| broker.case(*code).is_none());
                let count = codes.len();
                broker.delete(now, &actor.who.to_string(), Persist::Delete(codes), out)?;
                out.push(Effect::Persist(Persist::Audit(AuditEntry {
                    at: now,
                    actor: actor.who.to_string(),
                    address: None,
                    action: "delete".into(),
                    selector: format!(
                        "{count} closed or expired cases unchanged for {}",
                        humanize(retention)
                    ),
                    count: 0,
                })));
                Ok(())
            })
            .await?;
        total += report.deleted.len();
        if !full {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sosq::protocol::{CaseState, Timestamp};

    use crate::broker::{Actor, CaseSelection, Closer};
    use crate::clock::Clock;
    use crate::config::Config;
    use crate::server::Shared;
    use crate::store::{CaseStore, MemoryStore};

    #[tokio::test(start_paused = true)]
    async fn deletes_only_finished_cases_past_retention_in_batches_and_frees_their_codes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            retention: Duration::from_secs(3600),
            ..Config::default()
        };
        let store = Arc::new(MemoryStore::new());
        let shared = Shared::new(
            config,
            store.clone(),
            Clock::anchored(Timestamp(1_000_000)),
            None,
        )
        .unwrap();
        let actor = Actor::daemon();
        let mut closed = Vec::new();
        for i in 0..(super::BATCH + 5) {
            let (case, _) = shared
                .execute(&actor, |b, now, out| b.create(now, "ana", "Bob", "", out))
                .await
                .unwrap();
            if i != 1 && i != 3 {
                let code = case.code.to_string();
                shared
                    .execute(&actor, |b, now, out| {
                        b.close(now, Closer::Expert("ana"), &code, out)
                    })
                    .await
                    .unwrap();
                closed.push(case.code);
            }
        }
        let held = shared.broker().codes_held();
        assert_eq!(super::sweep(&shared).await.unwrap(), 0, "nothing old yet");

        tokio::time::advance(Duration::from_secs(3601)).await;
        let (late, _) = shared
            .execute(&actor, |b, now, out| b.create(now, "ana", "Eve", "", out))
            .await
            .unwrap();
        let code = late.code.to_string();
        shared
            .execute(&actor, |b, now, out| {
                b.close(now, Closer::Expert("ana"), &code, out)
            })
            .await
            .unwrap();

        assert_eq!(super::sweep(&shared).await.unwrap(), closed.len());
        let left = store.list(&CaseSelection::default()).unwrap();
        assert!(left
            .iter()
            .all(|r| r.state.is_open() || r.code == late.code));
        assert_eq!(left.len(), 1 + 2);
        assert!(left.iter().any(|r| r.state == CaseState::Closed));
        assert_eq!(shared.broker().codes_held(), held + 1 - closed.len());
        let audit = store.audit_log().unwrap();
        assert_eq!(audit.len(), 2, "one audit entry per batch");
        assert_eq!(
            audit.iter().map(|entry| entry.count).sum::<u64>(),
            closed.len() as u64
        );
    }
}
