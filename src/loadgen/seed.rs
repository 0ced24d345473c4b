//! Seeding a case store before a daemon starts on it: many finished cases written through
//! the store API ([`CaseStore`]'s SQLite implementation), as fast as its writer commits, for
//! the scale benchmark and the tests that need a big store (a million cases for paging).

use std::time::Duration;

use sosq::protocol::{
    Actor, ActorRole, CaseOrigin, CaseState, HistoryEntry, HistoryKind, Priority, Timestamp,
};
use sosq::SessionCode;

use super::LoadError;
use crate::broker::{CaseRecord, Persist, GENERAL};
use crate::store::{CaseStore, SqliteStore};

/// Writes `count` closed SOS cases, created `age` before `now`, straight into the case
/// store in `data_dir` (before the daemon starts on it): far faster than opening and
/// closing each through the protocol, and the rows are the same a closed case leaves.
/// Codes are spread over the code space.
pub async fn seed_closed_cases(
    data_dir: &std::path::Path,
    count: u64,
    age: Duration,
) -> Result<(), LoadError> {
    let now = Timestamp::now();
    let created = Timestamp(now.0.saturating_sub(age.as_millis() as u64));
    seed_finished_cases(data_dir, count, |_| (created, CaseState::Closed)).await
}

/// Writes `count` SOS cases straight into the case store in `data_dir`, as
/// [`seed_closed_cases`] does, case `n` created at and left in what `shape(n)` says (closed
/// or expired; or pending: a customer waiting, offline until it comes back). Case `n` has code `n × 997` (below 10⁹ for up to a million cases), so a
/// test knows every code it seeded without reading them back.
///
/// The store gets the cases in submissions of [`SEED_BATCH`], a few queued ahead of the
/// one being committed: its writer never waits for the next batch, and memory holds a few
/// batches, not every case (a million cases: 20 to 30 s in a debug build on two cores,
/// holding 60 MB; queuing them all at once held 740 MB and was no faster).
pub async fn seed_finished_cases(
    data_dir: &std::path::Path,
    count: u64,
    shape: impl Fn(u64) -> (Timestamp, CaseState),
) -> Result<(), LoadError> {
    let store = SqliteStore::open_in(data_dir)?;
    let now = Timestamp::now();
    let mut tickets = std::collections::VecDeque::new();
    let mut n = 0;
    while n < count {
        let end = (n + SEED_BATCH).min(count);
        let batch = (n..end)
            .filter_map(|n| {
                let (created, state) = shape(n);
                finished_record(n, created, state, now)
            })
            .map(Persist::Save)
            .collect();
        tickets.push_back(store.submit(batch));
        if tickets.len() > SEED_AHEAD {
            if let Some(ticket) = tickets.pop_front() {
                ticket.await?;
            }
        }
        n = end;
    }
    for ticket in tickets {
        ticket.await?;
    }
    Ok(())
}

/// Cases per store submission when seeding.
pub const SEED_BATCH: u64 = 10_000;

/// Submissions queued ahead of the one the store is committing.
const SEED_AHEAD: usize = 4;

fn finished_record(
    n: u64,
    created: Timestamp,
    state: CaseState,
    now: Timestamp,
) -> Option<CaseRecord> {
    let entry = |state, kind, event: &str| HistoryEntry {
        at: created,
        state,
        kind,
        event: event.into(),
        actor: Some(Actor::new(ActorRole::Expert, "load")),
        address: Some("127.0.0.1:50000".into()),
    };
    let (kind, last) = match state {
        CaseState::Expired => (
            HistoryKind::Expired,
            "expired: not closed within 1day of creation",
        ),
        CaseState::Pending => (HistoryKind::Attached, "customer asked for help (SOS)"),
        _ => (HistoryKind::Closed, "closed by expert load"),
    };
    Some(CaseRecord {
        // A stride coprime to 10^9 spreads the codes like drawn ones and keeps them unique.
        code: SessionCode::from_number(n * 997 % 1_000_000_000)?,
        origin: CaseOrigin::Sos,
        customer: format!("customer {n}"),
        description: "seeded by the load generator".into(),
        state,
        created_at: created,
        updated_at: created,
        expires_at: now.plus(Duration::from_secs(3_600)),
        waiting_since: Some(created),
        resume_secret_hash: None,
        last_message: None,
        attachments: 0,
        group: GENERAL.into(),
        assigned_to: None,
        priority: Priority::Normal,
        response_due: Some(created.plus(Duration::from_secs(900))),
        first_response_at: (!state.is_open()).then_some(created),
        history: vec![
            entry(CaseState::New, HistoryKind::Created, "created by customer"),
            entry(state, kind, last),
        ],
    })
}
