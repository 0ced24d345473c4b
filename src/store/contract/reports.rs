//! The reports' part of the contract: a known set of cases with known times, saved and
//! deleted through `submit` as the daemon does, and every figure of every report checked
//! exactly (the same on every backend).

use std::sync::Arc;

use sosq::protocol::{
    Actor, ActorRole, CaseOrigin, CaseState, HistoryEntry, HistoryKind, Priority, Timestamp,
};

use super::{code, commit, Make};
use crate::broker::{AuditEntry, CaseRecord, Persist};
use crate::store::reports::{
    DayOutcomes, ExpertCases, ExpertsReport, FirstResponse, ReportWindow, DAY_MS, HOUR_MS,
};
use crate::store::CaseStore;

const M: u64 = 60_000;
const H: u64 = HOUR_MS;
/// The window's start: a UTC midnight.
const T0: u64 = 100 * DAY_MS;

/// One case of the report's data: SOS (with a response target `due_after` ms after its
/// creation) unless `due_after` is `None`.
struct Case {
    n: u64,
    priority: Priority,
    created: u64,
    due_after: Option<u64>,
    first_response: Option<u64>,
    state: CaseState,
    updated: u64,
    experts: &'static [&'static str],
}

impl Case {
    fn record(&self) -> CaseRecord {
        let at = |at: u64, state: CaseState, kind: HistoryKind, event: String| HistoryEntry {
            at: Timestamp(at),
            state,
            kind,
            event,
            actor: Some(Actor::new(ActorRole::Customer, "carla")),
            address: None,
        };
        let mut history = vec![
            at(
                self.created,
                CaseState::New,
                HistoryKind::Created,
                "created by customer carla".into(),
            ),
            // A customer attaching, and an expert's words under another kind: neither is
            // an expert taking the case.
            at(
                self.created,
                CaseState::Pending,
                HistoryKind::Attached,
                "customer carla asked for help (SOS)".into(),
            ),
            at(
                self.created,
                CaseState::Pending,
                HistoryKind::Event,
                "expert zed connected".into(),
            ),
        ];
        for expert in self.experts {
            // Twice each (a reconnect): still one case for the expert.
            for _ in 0..2 {
                history.push(at(
                    self.updated,
                    self.state,
                    HistoryKind::Attached,
                    format!("expert {expert} connected"),
                ));
            }
        }
        CaseRecord {
            code: code(self.n),
            origin: match self.due_after {
                Some(_) => CaseOrigin::Sos,
                None => CaseOrigin::CreatedByExpert("dee".into()),
            },
            customer: "carla".into(),
            description: "report data".into(),
            state: self.state,
            created_at: Timestamp(self.created),
            updated_at: Timestamp(self.updated),
            expires_at: Timestamp(self.created + DAY_MS),
            waiting_since: self.due_after.map(|_| Timestamp(self.created)),
            resume_secret_hash: None,
            last_message: None,
            attachments: 0,
            group: crate::broker::GENERAL.into(),
            assigned_to: None,
            priority: self.priority,
            response_due: self.due_after.map(|after| Timestamp(self.created + after)),
            first_response_at: self.first_response.map(Timestamp),
            history,
        }
    }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use CaseState::*;
    use Priority::*;
    let case = |n, priority, created, due_after, first_response, state, updated, experts| Case {
        n, priority, created, due_after, first_response, state, updated, experts,
    };
    vec![
        // Critical: 4 cases, 3 responded (10, 20, 4 min: median 10 min), 2 in time.
        case(1, Critical, T0 + H, Some(15 * M), Some(T0 + H + 10 * M), Closed, T0 + 2 * H, &["ana"]),
        case(2, Critical, T0 + H + 30 * M, Some(15 * M), Some(T0 + H + 50 * M), Closed, T0 + DAY_MS + 3 * H, &["ana", "bo"]),
        case(3, Critical, T0 + 3 * H, Some(15 * M), None, Expired, T0 + 27 * H, &[]),
        case(9, Critical, T0 + 4 * H, Some(15 * M), Some(T0 + 4 * H + 4 * M), Closed, T0 + 4 * H + 30 * M, &["eve"]),
        // High: 3 cases, 2 responded in time (30 min and 45 min 1 ms: median rounded down).
        case(4, High, T0 + 5 * H, Some(H), Some(T0 + 5 * H + 30 * M), InProgress, T0 + 5 * H + 30 * M, &["bo"]),
        case(10, High, T0 + 6 * H, Some(H), Some(T0 + 6 * H + 45 * M + 1), Closed, T0 + 7 * H, &["bo"]),
        // Open, never answered, waiting until its expiry at T0 + 44 h.
        case(18, High, T0 + 20 * H, Some(H), None, Pending, T0 + 20 * H, &[]),
        // Normal: created before the window (waits over its start), and one closed unanswered.
        case(5, Normal, T0 - 2 * H, Some(4 * H), Some(T0 + H), Closed, T0 + 4 * H, &["cy"]),
        case(17, Normal, T0 + 12 * H, Some(4 * H), None, Closed, T0 + 14 * H, &[]),
        // Before the window altogether.
        case(11, Normal, T0 - 5 * H, Some(4 * H), None, Closed, T0 - 4 * H, &["cy"]),
        // Low: answered exactly at its target (in time).
        case(8, Low, T0 + 10 * H, Some(8 * H), Some(T0 + 18 * H), Closed, T0 + 19 * H, &["ana"]),
        // After the last point, in the window's last half hour.
        case(6, Normal, T0 + 47 * H + 30 * M, Some(H), None, Pending, T0 + 47 * H + 30 * M, &[]),
        // Made by an expert: no target, so not in first responses or the queue.
        case(7, Normal, T0 + 2 * H, None, Some(T0 + 2 * H + 5 * M), InProgress, T0 + 2 * H + 5 * M, &["dee"]),
    ]
}

fn delete(at: u64, actor: &str, numbers: &[u64], before: u64) -> Vec<Persist> {
    vec![
        Persist::Delete(numbers.iter().copied().map(code).collect()),
        Persist::Audit(AuditEntry {
            at: Timestamp(at),
            actor: actor.into(),
            address: None,
            action: "delete".into(),
            selector: "report data".into(),
            // A bulk delete in steps audits the earlier steps' count with its last one.
            count: before,
        }),
    ]
}

pub(super) async fn reports_count_exactly(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CaseStore> = make(dir.path());
    let doomed = (20..=24).map(|n| Case {
        n,
        priority: Priority::Critical,
        created: T0 + 2 * H,
        due_after: Some(H),
        first_response: None,
        state: CaseState::Closed,
        updated: T0 + 3 * H,
        experts: &["ana"],
    });
    let saves = cases().into_iter().chain(doomed).map(|case| case.record());
    commit(&store, saves.map(Persist::Save).collect()).await;
    // Admins: 3 earlier plus 1 on day one, 2 on day two, 1 after the window; retention 1.
    commit(&store, delete(T0 + 5 * H, "admin root", &[20], 3)).await;
    commit(&store, delete(T0 + DAY_MS + H, "admin root", &[21, 22], 0)).await;
    commit(
        &store,
        delete(T0 + DAY_MS + 2 * H, "sosqd retention", &[23], 0),
    )
    .await;
    commit(&store, delete(T0 + 2 * DAY_MS + H, "admin root", &[24], 0)).await;

    let window = ReportWindow::new(Timestamp(T0), Timestamp(T0 + 2 * DAY_MS));
    let row = |priority, cases, responded, within_target, median_ms| FirstResponse {
        priority,
        cases,
        responded,
        within_target,
        median_ms,
    };
    assert_eq!(
        store.first_responses(&window).unwrap(),
        vec![
            row(Priority::Critical, 4, 3, 2, Some(10 * M)),
            row(Priority::High, 3, 2, 2, Some(2_250_000)),
            row(Priority::Normal, 2, 0, 0, None),
            row(Priority::Low, 1, 1, 1, Some(8 * H)),
        ]
    );

    let day = |n: u64, closed, expired, deleted| DayOutcomes {
        day: Timestamp(T0 + n * DAY_MS),
        closed,
        expired,
        deleted,
    };
    assert_eq!(
        store.outcomes_by_day(&window).unwrap(),
        vec![day(0, 6, 0, 4), day(1, 1, 1, 2)]
    );

    let series = store.queue_length(&window).unwrap();
    assert_eq!(series.step_ms, H);
    let mut expected = vec![0u64; 48];
    for (hours, waiting) in [
        (0..1, 1),
        (1..2, 1),
        (3..4, 1),
        (4..7, 2),
        (7..10, 1),
        (10..12, 2),
        (12..14, 3),
        (14..18, 2),
        (18..20, 1),
        (20..27, 2),
        (27..44, 1),
    ] {
        hours.for_each(|hour| expected[hour] = waiting);
    }
    let waiting: Vec<u64> = series.points.iter().map(|point| point.waiting).collect();
    assert_eq!(waiting, expected);
    assert!(series
        .points
        .iter()
        .enumerate()
        .all(|(i, point)| point.at == Timestamp(T0 + i as u64 * H)));

    let expert = |name: &str, cases| ExpertCases {
        expert: name.into(),
        cases,
    };
    assert_eq!(
        store.cases_per_expert(&window, 2).unwrap(),
        ExpertsReport {
            top: vec![expert("ana", 3), expert("bo", 3)],
            others: 2,
            other_experts: 2,
        },
        "ties by name; cy's cases were created before the window"
    );
    assert_eq!(
        store.cases_per_expert(&window, 10).unwrap().top,
        vec![
            expert("ana", 3),
            expert("bo", 3),
            expert("dee", 1),
            expert("eve", 1)
        ]
    );

    // A window with nothing in it: every day and point present, all zero.
    let empty = ReportWindow::new(Timestamp(T0 + 10 * DAY_MS), Timestamp(T0 + 11 * DAY_MS));
    assert!(store
        .first_responses(&empty)
        .unwrap()
        .iter()
        .all(|row| row.cases == 0 && row.median_ms.is_none()));
    assert_eq!(
        store.outcomes_by_day(&empty).unwrap(),
        vec![day(10, 0, 0, 0)]
    );
    let series = store.queue_length(&empty).unwrap();
    assert_eq!(series.points.len(), 24);
    assert!(series.points.iter().all(|point| point.waiting == 0));
    assert_eq!(
        store.cases_per_expert(&empty, 5).unwrap(),
        ExpertsReport::default()
    );
}
