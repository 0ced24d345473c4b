//! How many SOS requests one address may open: a burst, then a slow refill, so a script
//! cannot fill the queue (and bury the real customers in it) from one machine, while an
//! office behind one NAT still has room for several people asking at once. The same budget
//! holds for `sosq request` and for the `/help` page, which asks on the browser's behalf
//! with the browser's address (`web_pass.rs`). Time is an argument, as in the core.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::throttle::{charged_address, Budget};

/// How many address budgets to keep before forgetting the ones that have refilled.
const PRUNE_ABOVE: usize = 10_000;

/// The SOS budgets of every address that asked lately.
#[derive(Debug)]
pub struct SosThrottle {
    budget: Budget,
    /// Tokens left and when they were counted, per address (IPv6: per /64).
    addresses: HashMap<IpAddr, (f64, Instant)>,
}

impl SosThrottle {
    /// Every address with a full `budget`.
    pub fn new(budget: Budget) -> SosThrottle {
        SosThrottle {
            budget,
            addresses: HashMap::new(),
        }
    }

    /// Replaces the budget (a reload); what was spent stays spent.
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// Takes one SOS from `address`'s budget at `now`; `Err(wait)` if it is spent, with
    /// how long until one is back.
    pub fn take(&mut self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let budget = self.budget;
        let refilled = |(tokens, at): (f64, Instant)| {
            let earned = now.saturating_duration_since(at).as_secs_f64()
                * f64::from(budget.per_minute)
                / 60.0;
            (tokens + earned).min(f64::from(budget.burst))
        };
        if self.addresses.len() >= PRUNE_ABOVE {
            self.addresses
                .retain(|_, kept| refilled(*kept) < f64::from(budget.burst));
        }
        let kept = self
            .addresses
            .entry(charged_address(address))
            .or_insert((f64::from(budget.burst), now));
        let tokens = refilled(*kept);
        if tokens < 1.0 {
            *kept = (tokens, now);
            if budget.per_minute == 0 {
                return Err(Duration::MAX);
            }
            return Err(Duration::from_secs_f64(
                (1.0 - tokens) * 60.0 / f64::from(budget.per_minute),
            ));
        }
        *kept = (tokens - 1.0, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_one_per_refill_and_others_are_not_charged() {
        let budget = Budget {
            burst: 3,
            per_minute: 6,
        };
        let mut throttle = SosThrottle::new(budget);
        let now = Instant::now();
        let one: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.take(one, now), Ok(()));
        }
        let wait = throttle.take(one, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10), "one back every 10 s");
        assert_eq!(throttle.take("198.51.100.8".parse().unwrap(), now), Ok(()));
        assert_eq!(throttle.take(one, now + Duration::from_secs(10)), Ok(()));
        assert!(throttle.take(one, now + Duration::from_secs(10)).is_err());
        // An IPv6 household is one address.
        let home: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.take(home, now), Ok(()));
        }
        assert!(throttle
            .take("2001:db8:1:2::99".parse().unwrap(), now)
            .is_err());
    }
}
