//! The pulls waiting on a cluster node for a case to come (`sosq pull --wait`), and which
//! of them a new case wakes.
//!
//! Waking every waiting pull for each new case sent all of them to claim it, one won and
//! the rest went back to sleep: at a thousand pairings a second the database spent its
//! time on claims that lost. So a wake-up (a `NOTIFY sosq_queue` naming the case's team)
//! wakes one pull that may take the case, the one waiting longest. One notification may
//! stand for several cases (PostgreSQL sends identical ones of a transaction once), and a
//! woken pull may take another case than the one it was woken for, so a woken pull that
//! leaves with a case passes a wake-up on to the next pull sharing a queue with it: a
//! burst of cases drains at the cost of at most one empty claim per node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::postgres::QueueWake;

/// The pulls waiting on this node, longest waiting first.
#[derive(Debug, Default)]
pub struct WaitingPulls {
    waiters: Mutex<Vec<Waiter>>,
    next_id: AtomicU64,
}

/// One waiting pull: whose, over which queues, and whether a wake-up is on its way to it.
#[derive(Debug)]
struct Waiter {
    id: u64,
    expert: String,
    teams: Vec<String>,
    /// Woken and not yet back from its claim: the next wake-up goes to someone else.
    woken: bool,
    wake: Arc<Notify>,
}

impl Waiter {
    /// Whether this pull's claim may take the case (the claim's own rule: the case's
    /// team, or assigned to this expert).
    fn may_take(&self, case: &QueueWake) -> bool {
        match &case.assigned {
            Some(expert) => *expert == self.expert,
            None => self.teams.contains(&case.team),
        }
    }

    /// Whether this pull and `other` may take some of the same cases.
    fn shares_a_queue(&self, other: &Waiter) -> bool {
        self.expert == other.expert || self.teams.iter().any(|team| other.teams.contains(team))
    }

    fn wake(&mut self) {
        self.woken = true;
        // Stored as a permit if the pull is between its claim and its wait.
        self.wake.notify_one();
    }
}

impl WaitingPulls {
    /// No pull waiting.
    pub fn new() -> WaitingPulls {
        WaitingPulls::default()
    }

    fn waiters(&self) -> MutexGuard<'_, Vec<Waiter>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a pull by `expert` over `teams` until the returned guard is dropped.
    /// Register before the first claim: a case committed while it runs still wakes it.
    pub fn wait(&self, expert: &str, teams: &[String]) -> WaitingPull<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        self.waiters().push(Waiter {
            id,
            expert: expert.to_string(),
            teams: teams.to_vec(),
            woken: false,
            wake: wake.clone(),
        });
        WaitingPull {
            pulls: self,
            id,
            wake,
        }
    }

    /// A case waits online (`None`: some case, which one is not known): wakes the
    /// longest-waiting pull that may take it and is not woken already. Whether one was.
    pub fn case_waiting(&self, case: Option<&QueueWake>) -> bool {
        let mut waiters = self.waiters();
        let next = waiters
            .iter_mut()
            .find(|w| !w.woken && case.is_none_or(|case| w.may_take(case)));
        match next {
            Some(waiter) => {
                waiter.wake();
                true
            }
            None => false,
        }
    }

    /// How many pulls wait now.
    pub fn waiting(&self) -> usize {
        self.waiters().len()
    }
}

/// A pull's place among the waiting ones (see [`WaitingPulls::wait`]).
#[derive(Debug)]
pub struct WaitingPull<'a> {
    pulls: &'a WaitingPulls,
    id: u64,
    wake: Arc<Notify>,
}

impl WaitingPull<'_> {
    /// Its claim came back empty: the next wake-up may be for it again.
    pub fn rearm(&self) {
        if let Some(waiter) = self.pulls.waiters().iter_mut().find(|w| w.id == self.id) {
            waiter.woken = false;
        }
    }

    /// Waits until this pull is woken, or `poll` (the fallback for lost notifications)
    /// passes.
    pub async fn woken_or(&self, poll: Duration) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

impl Drop for WaitingPull<'_> {
    /// Leaves the waiting pulls; one that was woken passes a wake-up on (see module docs).
    fn drop(&mut self) {
        let mut waiters = self.pulls.waiters();
        let Some(at) = waiters.iter().position(|w| w.id == self.id) else {
            return;
        };
        let leaving = waiters.remove(at);
        if leaving.woken {
            if let Some(next) = waiters
                .iter_mut()
                .find(|w| !w.woken && w.shares_a_queue(&leaving))
            {
                next.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(team: &str, assigned: Option<&str>) -> QueueWake {
        QueueWake {
            team: team.into(),
            assigned: assigned.map(str::to_string),
        }
    }

    fn teams(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// Whether `pull` was woken (its permit is taken).
    async fn was_woken(pull: &WaitingPull<'_>) -> bool {
        tokio::time::timeout(Duration::ZERO, pull.wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_case_wakes_one_pull_of_its_team_the_longest_waiting() {
        let pulls = WaitingPulls::new();
        let billing = pulls.wait("bo", &teams(&["billing"]));
        let first = pulls.wait("ana", &teams(&["general"]));
        let second = pulls.wait("cy", &teams(&["general"]));
        assert!(pulls.case_waiting(Some(&case("general", None))));
        assert!(!was_woken(&billing).await);
        assert!(was_woken(&first).await);
        assert!(!was_woken(&second).await);
        // The next case goes to the next pull, not again to the one already woken.
        assert!(pulls.case_waiting(Some(&case("general", None))));
        assert!(was_woken(&second).await);
        assert!(!pulls.case_waiting(Some(&case("general", None))));
    }

    #[tokio::test]
    async fn an_assigned_case_wakes_only_its_expert() {
        let pulls = WaitingPulls::new();
        let ana = pulls.wait("ana", &teams(&["general"]));
        let cy = pulls.wait("cy", &teams(&["general"]));
        assert!(pulls.case_waiting(Some(&case("general", Some("cy")))));
        assert!(!was_woken(&ana).await);
        assert!(was_woken(&cy).await);
        assert!(!pulls.case_waiting(Some(&case("general", Some("dee")))));
    }

    #[tokio::test]
    async fn a_woken_pull_that_leaves_wakes_the_next_sharing_a_queue() {
        let pulls = WaitingPulls::new();
        let first = pulls.wait("ana", &teams(&["general"]));
        let billing = pulls.wait("bo", &teams(&["billing"]));
        let second = pulls.wait("cy", &teams(&["general", "billing"]));
        assert!(pulls.case_waiting(None));
        assert!(was_woken(&first).await);
        drop(first);
        assert!(!was_woken(&billing).await);
        assert!(was_woken(&second).await);
        // A pull that was never woken passes nothing on.
        drop(billing);
        assert_eq!(pulls.waiting(), 1);
    }

    #[tokio::test]
    async fn a_rearmed_pull_may_be_woken_again() {
        let pulls = WaitingPulls::new();
        let only = pulls.wait("ana", &teams(&["general"]));
        assert!(pulls.case_waiting(None));
        assert!(!pulls.case_waiting(None));
        only.rearm();
        assert!(pulls.case_waiting(None));
        drop(only);
        assert_eq!(pulls.waiting(), 0);
    }
}
