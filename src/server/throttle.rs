//! Throttling of failed session-code look-ups, per source address and in total.
//!
//! Session codes are short so people can read them aloud; what keeps them from being
//! guessed is that every wrong code costs the guesser: each address has a small budget of
//! failures that refills slowly, and so does the whole broker. A throttled client is told
//! how long to wait. Time is an argument, like in the broker core.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Failure budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleLimits {
    /// Failures one address may make in a burst.
    pub per_address_burst: u32,
    /// Failures per minute one address earns back.
    pub per_address_per_minute: u32,
    /// Failures all addresses together may make in a burst.
    pub total_burst: u32,
    /// Failures per minute all addresses together earn back.
    pub total_per_minute: u32,
}

/// A token bucket of failures.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    fn refill(&mut self, burst: u32, per_minute: u32, now: Instant) {
        let earned = now.duration_since(self.updated).as_secs_f64() * f64::from(per_minute) / 60.0;
        self.tokens = (self.tokens + earned).min(f64::from(burst));
        self.updated = now;
    }

    /// How long until one token is back (zero if one is there).
    fn wait(&self, per_minute: u32) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        if per_minute == 0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64((1.0 - self.tokens) * 60.0 / f64::from(per_minute))
    }
}

/// The failure budgets of every address and of the broker.
#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    addresses: HashMap<IpAddr, Bucket>,
    total: Bucket,
}

/// How many address buckets to keep before forgetting the ones that have refilled.
const PRUNE_ABOVE: usize = 10_000;

impl Throttle {
    /// Budgets with these limits, all full.
    pub fn new(limits: ThrottleLimits, now: Instant) -> Throttle {
        let total = Bucket::full(limits.total_burst, now);
        Throttle {
            limits,
            addresses: HashMap::new(),
            total,
        }
    }

    /// `Err(wait)` if `address` may not try a code now.
    pub fn check(&mut self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let limits = self.limits.clone();
        self.total
            .refill(limits.total_burst, limits.total_per_minute, now);
        let total_wait = self.total.wait(limits.total_per_minute);
        let address_wait = match self.addresses.get_mut(&address) {
            Some(bucket) => {
                bucket.refill(limits.per_address_burst, limits.per_address_per_minute, now);
                bucket.wait(limits.per_address_per_minute)
            }
            None => Duration::ZERO,
        };
        let wait = total_wait.max(address_wait);
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Charges one failed look-up to `address` and to the total.
    pub fn failed(&mut self, address: IpAddr, now: Instant) {
        let limits = self.limits.clone();
        if self.addresses.len() >= PRUNE_ABOVE {
            self.addresses.retain(|_, bucket| {
                bucket.refill(limits.per_address_burst, limits.per_address_per_minute, now);
                bucket.tokens < f64::from(limits.per_address_burst)
            });
        }
        let bucket = self
            .addresses
            .entry(address)
            .or_insert_with(|| Bucket::full(limits.per_address_burst, now));
        bucket.refill(limits.per_address_burst, limits.per_address_per_minute, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        self.total
            .refill(limits.total_burst, limits.total_per_minute, now);
        self.total.tokens = (self.total.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            per_address_burst: 3,
            per_address_per_minute: 6,
            total_burst: 5,
            total_per_minute: 60,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_gets_its_burst_then_waits_for_the_refill() {
        let now = Instant::now();
        let mut throttle = Throttle::new(limits(), now);
        let guesser: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.check(guesser, now), Ok(()));
            throttle.failed(guesser, now);
        }
        // 6 per minute: one failure earned back every 10 seconds.
        assert_eq!(throttle.check(guesser, now), Err(Duration::from_secs(10)));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            throttle.check(other, now),
            Ok(()),
            "others are not punished"
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(throttle.check(guesser, later), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn many_addresses_together_exhaust_the_total_budget() {
        let now = Instant::now();
        let mut throttle = Throttle::new(limits(), now);
        for i in 0..5u8 {
            let address = IpAddr::from([10, 0, 1, i]);
            assert_eq!(throttle.check(address, now), Ok(()));
            throttle.failed(address, now);
        }
        let fresh: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(throttle.check(fresh, now), Err(Duration::from_secs(1)));
        assert_eq!(throttle.check(fresh, now + Duration::from_secs(1)), Ok(()));
    }
}
