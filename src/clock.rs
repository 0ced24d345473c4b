//! The shell's clock: wall-clock timestamps for what people read (histories, creation
//! times), and a monotonic reading for what must not jump (expiry).
//!
//! [`Clock::new`] reads the system clock for timestamps, so an NTP correction while the
//! daemon runs shows in the next history entry, and keeps a monotonic reading beside it
//! (anchored at the wall time of start-up and advanced by tokio's clock) for deadlines. The
//! core is told their difference ([`Clock::skew_ms`]) and keeps expiry on the monotonic
//! side. [`Clock::anchored`] makes both follow tokio's clock from a chosen epoch, so the
//! async layers can be tested with `tokio::time::pause()` and `advance()` like the core is
//! tested with injected timestamps.

use sosq::protocol::Timestamp;
use tokio::time::Instant;

/// Where wall-clock timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wall {
    /// The system clock, as it is now (steps included).
    System,
    /// The anchor plus tokio's elapsed time (tests).
    FollowsTokio,
}

/// Wall-clock and monotonic readings, and tokio instants for deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Wall,
    wall_at_start: Timestamp,
    instant_at_start: Instant,
}

impl Clock {
    /// A clock whose timestamps follow the system clock.
    pub fn new() -> Clock {
        Clock {
            wall: Wall::System,
            wall_at_start: Timestamp::now(),
            instant_at_start: Instant::now(),
        }
    }

    /// A clock that reads `wall` right now and advances with tokio's clock only (tests
    /// pick their epoch and move time with `tokio::time::advance`).
    pub fn anchored(wall: Timestamp) -> Clock {
        Clock {
            wall: Wall::FollowsTokio,
            wall_at_start: wall,
            instant_at_start: Instant::now(),
        }
    }

    /// The current wall-clock time: what histories record.
    pub fn now(&self) -> Timestamp {
        match self.wall {
            Wall::System => Timestamp::now(),
            Wall::FollowsTokio => self.monotonic(),
        }
    }

    /// The monotonic reading: the wall time at start plus the time elapsed since, never
    /// stepped.
    pub fn monotonic(&self) -> Timestamp {
        self.wall_at_start
            .plus(Instant::now().saturating_duration_since(self.instant_at_start))
    }

    /// How far the wall clock is ahead of the monotonic reading, in milliseconds (negative
    /// when behind); what [`crate::broker::Broker::set_clock_skew`] wants.
    pub fn skew_ms(&self) -> i64 {
        self.read().1
    }

    /// The current wall-clock time and the skew ([`Clock::skew_ms`]) from one reading of
    /// each clock, so a command's time and its skew agree.
    pub fn read(&self) -> (Timestamp, i64) {
        let wall = self.now();
        (wall, skew(wall, self.monotonic()))
    }

    /// The tokio instant at which the monotonic reading will be `at` (now, if `at` has
    /// passed): where the expiry timer sleeps to.
    pub fn instant_of(&self, at: Timestamp) -> Instant {
        Instant::now() + at.since(self.monotonic())
    }
}

/// `wall - monotonic` in milliseconds, saturating.
fn skew(wall: Timestamp, monotonic: Timestamp) -> i64 {
    let wall = i128::from(wall.0);
    let monotonic = i128::from(monotonic.0);
    (wall - monotonic).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_anchored_clock_has_no_skew_and_sleeps_to_monotonic_deadlines() {
        let clock = Clock::anchored(Timestamp(1_000_000));
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        assert_eq!(clock.now(), Timestamp(1_005_000));
        assert_eq!(clock.skew_ms(), 0);
        let at = clock.instant_of(Timestamp(1_007_000));
        assert_eq!(at - Instant::now(), std::time::Duration::from_secs(2));
    }

    #[test]
    fn skew_is_signed() {
        assert_eq!(skew(Timestamp(5), Timestamp(2)), 3);
        assert_eq!(skew(Timestamp(2), Timestamp(5)), -3);
    }
}
