//! Expiry deadlines, kept ordered so the shell can sleep until the next one instead of
//! scanning every case.
//!
//! Deadlines are kept on the monotonic clock, not the wall clock: a case expires `case_ttl`
//! of real time after it was created even if the system clock is stepped (an NTP
//! correction, an admin fixing the date) in between, and a step forward never fires one
//! early. The core is fed wall-clock timestamps (they go into the history); the shell tells
//! it how far the wall clock is ahead of the monotonic one ([`Deadlines::set_clock_skew`]),
//! and deadlines are translated once, when they are set.

use std::collections::{BTreeSet, HashMap};

use sosq::protocol::Timestamp;
use sosq::SessionCode;

/// Open cases by the monotonic time they expire.
#[derive(Debug, Default)]
pub struct Deadlines {
    order: BTreeSet<(Timestamp, SessionCode)>,
    by_code: HashMap<SessionCode, Timestamp>,
    /// Milliseconds the wall clock is ahead of the monotonic clock (negative: behind).
    skew_ms: i64,
}

impl Deadlines {
    /// Records how far the wall clock is now ahead of the monotonic clock, in milliseconds
    /// (`wall - monotonic`); 0 until the clock is stepped. Deadlines already set keep their
    /// monotonic time: a step changes neither when they fire nor their order.
    pub fn set_clock_skew(&mut self, skew_ms: i64) {
        self.skew_ms = skew_ms;
    }

    /// The monotonic reading that corresponds to the wall-clock time `at` right now.
    pub fn monotonic(&self, at: Timestamp) -> Timestamp {
        let at = i64::try_from(at.0).unwrap_or(i64::MAX);
        Timestamp(u64::try_from(at.saturating_sub(self.skew_ms)).unwrap_or(0))
    }

    /// Sets (or replaces) the deadline of `code`, due at the wall-clock time `at` as the
    /// clock reads now.
    pub fn set(&mut self, code: SessionCode, at: Timestamp) {
        let at = self.monotonic(at);
        if let Some(old) = self.by_code.insert(code, at) {
            self.order.remove(&(old, code));
        }
        self.order.insert((at, code));
    }

    /// Forgets the deadline of `code`.
    pub fn clear(&mut self, code: SessionCode) {
        if let Some(at) = self.by_code.remove(&code) {
            self.order.remove(&(at, code));
        }
    }

    /// The earliest deadline, on the monotonic clock (the shell sleeps until then).
    pub fn next(&self) -> Option<Timestamp> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns every code due at the wall-clock time `now`, earliest first.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<SessionCode> {
        let now = self.monotonic(now);
        let mut due = Vec::new();
        while let Some(&(at, code)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            self.by_code.remove(&code);
            due.push(code);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(n: u64) -> SessionCode {
        SessionCode::from_number(n).expect("code")
    }

    #[test]
    fn a_clock_stepped_forward_fires_nothing_early_and_one_stepped_back_nothing_late() {
        let mut deadlines = Deadlines::default();
        // Created at wall 1,000 with a ttl of 100: due at wall 1,100.
        deadlines.set(code(1), Timestamp(1_100));
        // The clock jumps an hour ahead: wall 1,050 now reads 3,601,050.
        deadlines.set_clock_skew(3_600_000);
        assert!(deadlines.take_due(Timestamp(3_601_050)).is_empty());
        assert_eq!(deadlines.take_due(Timestamp(3_601_100)), vec![code(1)]);

        // Stepped back by ten seconds instead: the deadline comes on real time, not later.
        let mut deadlines = Deadlines::default();
        deadlines.set(code(2), Timestamp(20_000));
        deadlines.set_clock_skew(-10_000);
        assert!(deadlines.take_due(Timestamp(9_999)).is_empty());
        assert_eq!(deadlines.take_due(Timestamp(10_000)), vec![code(2)]);
        assert_eq!(deadlines.next(), None);
    }

    #[test]
    fn deadlines_set_after_a_step_count_from_the_stepped_wall_clock() {
        let mut deadlines = Deadlines::default();
        deadlines.set_clock_skew(5_000);
        deadlines.set(code(3), Timestamp(15_000));
        assert_eq!(deadlines.next(), Some(Timestamp(10_000)));
        assert!(deadlines.take_due(Timestamp(14_999)).is_empty());
        assert_eq!(deadlines.take_due(Timestamp(15_000)), vec![code(3)]);
    }
}
