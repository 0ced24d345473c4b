//! The expiry timer: sleeps until the core's next deadline (never scanning cases), wakes
//! early when a command may have armed an earlier one, and expires what is due.

use std::sync::Arc;

use super::Shared;
use crate::broker::Actor;

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
            .execute(&Actor::daemon(), |broker, now, out| {
                Ok(broker.expire_due(now, out))
            })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sosq::protocol::{CaseState, Timestamp};

    use crate::clock::Clock;
    use crate::config::Config;
    use crate::server::Shared;
    use crate::store::{CaseStore, MemoryStore};

    /// Lets every ready task run without letting the paused clock move.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_expires_a_case_exactly_at_its_ttl_on_the_paused_clock() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let store = Arc::new(MemoryStore::new());
        let clock = Clock::anchored(Timestamp(1_700_000_000_000));
        let shared = Arc::new(Shared::new(config, store.clone(), clock, None).unwrap());
        let timer = tokio::spawn(super::run(shared.clone()));
        settle().await;

        let (case, _) = shared
            .execute(&crate::broker::Actor::daemon(), |broker, now, out| {
                broker.create(now, "ana", "Bob", "", out)
            })
            .await
            .unwrap();
        let state = || store.get(case.code).unwrap().unwrap().state;
        settle().await;

        tokio::time::advance(Duration::from_secs(24 * 60 * 60) - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(state(), CaseState::New, "one millisecond early");

        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(state(), CaseState::Expired);
        timer.abort();
    }
}
