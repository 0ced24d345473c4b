//! The shell's clock: wall-clock timestamps that advance with tokio's clock, so the async
//! layers can be tested with `tokio::time::pause()` and `advance()` like the core is
//! tested with injected timestamps.

use sosq::protocol::Timestamp;
use tokio::time::Instant;

/// Maps tokio instants to wall-clock timestamps and back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: Timestamp,
    instant_at_start: Instant,
}

impl Clock {
    /// A clock anchored at the current wall time.
    pub fn new() -> Clock {
        Clock::anchored(Timestamp::now())
    }

    /// A clock that reads `wall` right now (tests pick their epoch).
    pub fn anchored(wall: Timestamp) -> Clock {
        Clock {
            wall_at_start: wall,
            instant_at_start: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.wall_at_start
            .plus(Instant::now().saturating_duration_since(self.instant_at_start))
    }

    /// The tokio instant at which the clock will read `at` (now, if `at` has passed).
    pub fn instant_of(&self, at: Timestamp) -> Instant {
        let now = self.now();
        Instant::now() + at.since(now)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
