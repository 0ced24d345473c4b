//! What the admin console's Reports page charts, as the stores compute it: small results
//! over a time window, whose size depends on the window and on the number of priorities
//! and experts, never on the number of cases. Each store runs its own queries (the SQL sits
//! next to that store's other queries); the sparse rows they return are laid out here, one
//! row per day or sampling point, so every store gives the same shape.
//!
//! Which cases count:
//! - First response and queue length look at cases with a response target
//!   (`response_due` set): the ones a customer opened with SOS and that waited in a queue.
//!   A case an expert created by hand has no target; its expert is already on it.
//! - Outcomes per day take closed and expired cases by the time they ended (`updated_at`,
//!   which the ending transition sets last), and deletions from the audit log, because a
//!   deleted case has no row left.
//! - Cases per expert take cases created in the window, and for each the experts who sat
//!   down in it (history entries of kind `attached` worded [`EXPERT_CONNECTED`]).

use sosq::protocol::{Priority, Timestamp};

pub use crate::broker::EXPERT_CONNECTED;

/// One hour, in ms.
pub const HOUR_MS: u64 = 3_600_000;

/// One day, in ms (UTC days: no leap seconds in Unix time).
pub const DAY_MS: u64 = 86_400_000;

/// The longest window a report covers, in ms (92 days); a longer one is cut to its last
/// 92 days, so no report grows without bound.
pub const MAX_WINDOW_MS: u64 = 92 * DAY_MS;

/// The most points a queue-length series has (14 days of hours); over longer windows the
/// points are several hours apart.
pub const MAX_QUEUE_POINTS: u64 = 14 * 24;

/// The audit actor of retention's deletions. They are not counted as "deleted": retention
/// removes cases that ended long ago (and were counted as closed or expired on the day they
/// ended), so counting them again would show a spike on the day retention ran that says
/// nothing about support. "Deleted" is what admins removed.
pub const RETENTION_ACTOR: &str = "sosqd retention";

/// The time window a report covers: from `from` (inclusive) to `to` (exclusive), both ms
/// since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportWindow {
    from: Timestamp,
    to: Timestamp,
}

impl ReportWindow {
    /// The window `[from, to)` (ms since the epoch). An inverted window is empty (`to` is
    /// taken as `from`); one longer than [`MAX_WINDOW_MS`] keeps its last 92 days.
    pub fn new(from: Timestamp, to: Timestamp) -> ReportWindow {
        let to = to.max(from);
        let from = Timestamp(from.0.max(to.0.saturating_sub(MAX_WINDOW_MS)));
        ReportWindow { from, to }
    }

    /// The `days` whole UTC days up to and including the day `now` (ms) falls on: the
    /// usual "last 14 days" (to the end of today, so today's hours still to come are
    /// empty).
    pub fn last_days(now: Timestamp, days: u32) -> ReportWindow {
        let today = now.0 / DAY_MS * DAY_MS;
        let to = today.saturating_add(DAY_MS);
        ReportWindow::new(
            Timestamp(to.saturating_sub(u64::from(days) * DAY_MS)),
            Timestamp(to),
        )
    }

    /// The first instant in the window (ms since the epoch).
    pub fn from(&self) -> Timestamp {
        self.from
    }

    /// The first instant after the window (ms since the epoch).
    pub fn to(&self) -> Timestamp {
        self.to
    }

    /// The start (ms, UTC midnight) of every UTC day the window touches, oldest first.
    pub fn days(&self) -> Vec<Timestamp> {
        if self.to <= self.from {
            return Vec::new();
        }
        let first = self.from.0 / DAY_MS;
        let last = (self.to.0 - 1) / DAY_MS;
        (first..=last).map(|day| Timestamp(day * DAY_MS)).collect()
    }

    /// The spacing of the queue-length points (ms): one hour, or a whole number of hours
    /// so that there are at most [`MAX_QUEUE_POINTS`].
    pub fn queue_step_ms(&self) -> u64 {
        let hours = (self.to.0 - self.from.0).div_ceil(HOUR_MS);
        HOUR_MS * hours.div_ceil(MAX_QUEUE_POINTS).max(1)
    }

    /// How many queue-length points the window has: at `from`, `from + step`, ... before
    /// `to`.
    pub fn queue_points(&self) -> u64 {
        (self.to.0 - self.from.0).div_ceil(self.queue_step_ms())
    }
}

/// First responses to the cases of one priority created in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstResponse {
    /// The priority (the case's priority now: an escalated case counts at its new one).
    pub priority: Priority,
    /// Cases of this priority with a response target created in the window.
    pub cases: u64,
    /// How many of them got a first response (both partners connected), so far.
    pub responded: u64,
    /// How many got it by their target (`first_response_at <= response_due`).
    pub within_target: u64,
    /// The median time from creation to first response over the responded ones, in ms
    /// (for an even number, the mean of the two middle ones, rounded down); `None` when
    /// none was responded to.
    pub median_ms: Option<u64>,
}

/// How cases ended on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayOutcomes {
    /// The day's start (UTC midnight, ms since the epoch).
    pub day: Timestamp,
    /// Cases closed that day (still stored).
    pub closed: u64,
    /// Cases that expired that day (still stored).
    pub expired: u64,
    /// Cases admins deleted that day, from the audit log (not retention's, see
    /// [`RETENTION_ACTOR`]). A deleted case no longer counts as closed or expired on the
    /// day it ended: its row is gone.
    pub deleted: u64,
}

/// How many cases waited for a first response at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePoint {
    /// The instant (ms since the epoch).
    pub at: Timestamp,
    /// Cases created by then, with no first response yet, not closed or expired, and not
    /// past their expiry.
    pub waiting: u64,
}

/// The queue length over a window, one point per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSeries {
    /// The time between two points, in ms (a whole number of hours).
    pub step_ms: u64,
    /// One point per step from the window's start, oldest first.
    pub points: Vec<QueuePoint>,
}

/// How many cases one expert took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpertCases {
    /// The expert's user name (as the users file has it: user data, escape it to show it).
    pub expert: String,
    /// Cases created in the window that the expert sat down in at least once.
    pub cases: u64,
}

/// Cases per expert, the busiest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpertsReport {
    /// The busiest experts (most cases first, then by name), at most the number asked for.
    pub top: Vec<ExpertCases>,
    /// Cases taken by all the other experts together (a case two of them took counts
    /// twice, as it does in `top`).
    pub others: u64,
    /// How many other experts that is.
    pub other_experts: u64,
}

/// Every report over one window: what the Reports page charts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reports {
    /// The window the reports cover (after cutting, see [`ReportWindow::new`]).
    pub window: ReportWindow,
    /// First responses per priority, most urgent first.
    pub first_responses: Vec<FirstResponse>,
    /// Outcomes per UTC day, oldest first.
    pub outcomes: Vec<DayOutcomes>,
    /// Queue length over the window.
    pub queue: QueueSeries,
    /// Cases per expert, busiest first.
    pub experts: ExpertsReport,
}

/// The window's days with their counts: `closed`, `expired` and `deleted` are sparse
/// `(day start in ms, count)` rows as a query returns them; days without a row count 0.
pub fn outcome_days(
    window: &ReportWindow,
    closed: &[(u64, u64)],
    expired: &[(u64, u64)],
    deleted: &[(u64, u64)],
) -> Vec<DayOutcomes> {
    let on = |rows: &[(u64, u64)], day: Timestamp| {
        rows.iter()
            .filter(|(at, _)| *at == day.0)
            .map(|(_, n)| n)
            .sum()
    };
    window
        .days()
        .into_iter()
        .map(|day| DayOutcomes {
            day,
            closed: on(closed, day),
            expired: on(expired, day),
            deleted: on(deleted, day),
        })
        .collect()
}

/// The queue series from sparse `(point index, waiting)` rows of a running sum: a point
/// without a row waits as many as the point before it (0 before the first row).
pub fn queue_series(window: &ReportWindow, running: &[(u64, i64)]) -> QueueSeries {
    let step_ms = window.queue_step_ms();
    let mut waiting = 0;
    let mut rows = running.iter().peekable();
    let points = (0..window.queue_points())
        .map(|i| {
            while let Some((_, total)) = rows.next_if(|(at, _)| *at <= i) {
                waiting = u64::try_from(*total).unwrap_or(0);
            }
            QueuePoint {
                at: Timestamp(window.from.0 + i * step_ms),
                waiting,
            }
        })
        .collect();
    QueueSeries { step_ms, points }
}

/// The point a queue event at `at` (ms) first shows in: the first point at or after it.
pub fn queue_point_of(window: &ReportWindow, at: u64) -> u64 {
    at.saturating_sub(window.from.0)
        .div_ceil(window.queue_step_ms())
}

/// One row per priority (most urgent first) from sparse per-priority rows; a priority
/// without a row has no cases.
pub fn first_responses(found: Vec<FirstResponse>) -> Vec<FirstResponse> {
    Priority::ALL
        .into_iter()
        .map(|priority| {
            found
                .iter()
                .find(|row| row.priority == priority)
                .cloned()
                .unwrap_or(FirstResponse {
                    priority,
                    cases: 0,
                    responded: 0,
                    within_target: 0,
                    median_ms: None,
                })
        })
        .collect()
}

/// The top `top` of `(expert, cases)` rows ordered busiest first, and the rest summed.
/// `total_cases` and `total_experts` are over every expert (the rows may be cut already).
pub fn experts_report(
    rows: Vec<(String, u64)>,
    top: usize,
    total_cases: u64,
    total_experts: u64,
) -> ExpertsReport {
    let top: Vec<ExpertCases> = rows
        .into_iter()
        .take(top)
        .map(|(expert, cases)| ExpertCases { expert, cases })
        .collect();
    let shown: u64 = top.iter().map(|row| row.cases).sum();
    ExpertsReport {
        others: total_cases.saturating_sub(shown),
        other_experts: total_experts.saturating_sub(top.len() as u64),
        top,
    }
}

/// The expert an `attached` history entry's words name, if they are an expert's
/// ([`EXPERT_CONNECTED`]), exactly as [`EXPERT_NAME_SQL`] reads them.
pub fn expert_of(event: &str) -> Option<&str> {
    event
        .strip_prefix(EXPERT_CONNECTED.0)?
        .strip_suffix(EXPERT_CONNECTED.1)
}

/// The SQL (SQLite and PostgreSQL alike) extracting the expert's name from `h.event` of an
/// entry [`EXPERT_ATTACHED_SQL`] matched; `substr` counts from 1 in both.
pub const EXPERT_NAME_SQL: &str = "substr(h.event, 8, length(h.event) - 17)";

/// The SQL condition on history rows `h` matching an expert sitting down.
pub const EXPERT_ATTACHED_SQL: &str = "h.kind = 'attached' AND h.event LIKE 'expert % connected'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_matches_the_words_the_broker_writes() {
        // The SQL hard-codes the lengths of the two parts; this fails if the words change.
        assert_eq!(EXPERT_CONNECTED, ("expert ", " connected"));
        assert_eq!(8, EXPERT_CONNECTED.0.len() + 1);
        assert_eq!(17, EXPERT_CONNECTED.0.len() + EXPERT_CONNECTED.1.len());
        assert_eq!(expert_of("expert ana connected"), Some("ana"));
        assert_eq!(expert_of("customer ana joined"), None);
        assert_eq!(expert_of("expert  connected"), Some(""));
    }

    #[test]
    fn retention_deletes_under_the_actor_reports_leave_out() {
        let actor = sosq::protocol::Actor::new(sosq::protocol::ActorRole::Sosqd, "retention");
        assert_eq!(actor.to_string(), RETENTION_ACTOR);
    }

    #[test]
    fn windows_are_cut_to_their_last_92_days_and_never_inverted() {
        let w = ReportWindow::new(Timestamp(5), Timestamp(3));
        assert_eq!((w.from(), w.to()), (Timestamp(5), Timestamp(5)));
        assert!(w.days().is_empty());
        assert_eq!(w.queue_points(), 0);
        let to = 200 * DAY_MS;
        let w = ReportWindow::new(Timestamp(0), Timestamp(to));
        assert_eq!(w.from(), Timestamp(to - MAX_WINDOW_MS));
        assert_eq!(w.days().len(), 92);
        assert!(w.queue_points() <= MAX_QUEUE_POINTS);
        assert_eq!(w.queue_step_ms(), 7 * HOUR_MS);
    }

    #[test]
    fn last_days_ends_with_today() {
        let now = Timestamp(100 * DAY_MS + 5 * HOUR_MS);
        let w = ReportWindow::last_days(now, 14);
        assert_eq!(w.to(), Timestamp(101 * DAY_MS));
        assert_eq!(w.days().len(), 14);
        assert_eq!(w.queue_step_ms(), HOUR_MS);
        assert_eq!(w.queue_points(), 14 * 24);
    }

    #[test]
    fn queue_points_carry_the_running_sum_forward() {
        let w = ReportWindow::new(Timestamp(0), Timestamp(4 * HOUR_MS));
        let series = queue_series(&w, &[(1, 2), (3, 1)]);
        let waiting: Vec<u64> = series.points.iter().map(|p| p.waiting).collect();
        assert_eq!(waiting, vec![0, 2, 2, 1]);
        assert_eq!(series.points[3].at, Timestamp(3 * HOUR_MS));
        assert_eq!(queue_point_of(&w, 0), 0);
        assert_eq!(queue_point_of(&w, 1), 1);
        assert_eq!(queue_point_of(&w, HOUR_MS), 1);
    }
}
