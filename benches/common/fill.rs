//! What the admin-table benchmarks share (`cases_filter.rs` on the store, `console.rs`
//! over HTTPS): one bulk fill of cases in SQL, the keyset cursor of the case at a place in
//! creation order, and the median timing. Included by `#[path]`: each bench is its own crate.

use std::time::{Duration, Instant};

use sosq::protocol::Timestamp;
use sosq::SessionCode;

/// Creation time of case 1; case n is created `n` seconds later.
pub const T0: u64 = 1_700_000_000_000;
/// Runs per figure (the median is kept).
pub const RUNS: usize = 7;

/// The columns the fill writes, for either database, from the numbers in `series` (a
/// `generate_series` or a recursive CTE named `x`): case `n` is in one of 8 teams and 4
/// priorities, 78% closed, 20% expired, 1% pending, 1% in progress; one in 1,000 has "VPN"
/// in its description. Codes are spread over the code space like drawn codes are.
pub fn fill_sql(series: &str) -> String {
    format!(
        "INSERT INTO cases (code, origin, created_by, customer, description, state,
             created_at, updated_at, expires_at, waiting_since, resume_secret_hash,
             history_len, team, assigned_to, priority, response_due, first_response_at)
         SELECT (x * 997) % 1000000000, 'sos', NULL, 'customer ' || x,
             CASE WHEN x % 1000 = 7 THEN 'VPN down at site ' || x ELSE 'printer on fire' END,
             CASE WHEN x % 100 = 0 THEN 'pending' WHEN x % 100 = 1 THEN 'in_progress'
                  WHEN x % 100 < 80 THEN 'closed' ELSE 'expired' END,
             {T0} + x * 1000, {T0} + x * 1000 + 600000, {T0} + x * 1000 + 86400000,
             NULL, NULL, 0, 'team' || (x % 8), NULL,
             CASE x % 4 WHEN 0 THEN 'critical' WHEN 1 THEN 'high' WHEN 2 THEN 'normal'
                  ELSE 'low' END,
             NULL, NULL
         FROM {series}"
    )
}

/// The creation time and code of the case at 0-based place `i` in creation order: the
/// keyset cursor of a page that starts right after it.
pub fn cursor_at(i: u64) -> (Timestamp, SessionCode) {
    let n = i + 1;
    let code = SessionCode::from_number(n * 997 % 1_000_000_000).expect("a code");
    (Timestamp(T0 + n * 1_000), code)
}

/// The median of [`RUNS`] timings of `work`, after one run to warm caches and prepared
/// statements.
pub fn median(mut work: impl FnMut()) -> Duration {
    work();
    let mut taken: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    taken.sort_unstable();
    taken[RUNS / 2]
}
