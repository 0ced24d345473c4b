//! Throttling of failed session-code look-ups: per connection, per address, and in total.
//!
//! Session codes are short so people can read them aloud; what keeps them from being
//! guessed is that every wrong code costs the guesser. A wrong code is charged to three
//! budgets that each refill slowly: the connection's (one party), its address's, and the
//! whole broker's; a look-up is refused while any of the three is spent, and the client is
//! told how long to wait. The connection's budget is the smallest, so one person's typos
//! spend that person's budget and leave most of the address's to the others behind the
//! same office NAT. IPv6 addresses are charged by their /64, because one household or
//! office gets a whole /64 and could otherwise use a fresh address for every guess.
//! Time is an argument, like in the broker core.
//!
//! The same buckets bound how often a case's customer may add a message
//! ([`Throttle::message`]): per case, not per connection, so reconnecting buys nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

use sosq::SessionCode;

use crate::broker::PartyId;

/// One failure budget: a burst, then a slow refill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Failures that may be made at once.
    pub burst: u32,
    /// Failures earned back per minute.
    pub per_minute: u32,
}

/// The three failure budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleLimits {
    /// One connection's (one party's).
    pub per_connection: Budget,
    /// One IPv4 address's, or one IPv6 /64's.
    pub per_address: Budget,
    /// All connections' together.
    pub total: Budget,
    /// Messages one case's customer may add per minute (and at once).
    pub messages_per_minute: u32,
}

impl ThrottleLimits {
    /// The budgets from the daemon's settings (the six `wrong_codes_*` options).
    pub fn from_config(config: &crate::config::Config) -> ThrottleLimits {
        ThrottleLimits {
            per_connection: Budget {
                burst: config.wrong_codes_per_connection_burst,
                per_minute: config.wrong_codes_per_connection_per_minute,
            },
            per_address: Budget {
                burst: config.wrong_codes_per_address_burst,
                per_minute: config.wrong_codes_per_address_per_minute,
            },
            total: Budget {
                burst: config.wrong_codes_total_burst,
                per_minute: config.wrong_codes_total_per_minute,
            },
            messages_per_minute: config.customer_messages_per_minute,
        }
    }
}

/// A token bucket of failures.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(budget: Budget, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(budget.burst),
            updated: now,
        }
    }

    fn refill(&mut self, budget: Budget, now: Instant) {
        let earned =
            now.duration_since(self.updated).as_secs_f64() * f64::from(budget.per_minute) / 60.0;
        self.tokens = (self.tokens + earned).min(f64::from(budget.burst));
        self.updated = now;
    }

    /// How long until one token is back (zero if one is there).
    fn wait(&self, budget: Budget) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        if budget.per_minute == 0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64((1.0 - self.tokens) * 60.0 / f64::from(budget.per_minute))
    }

    /// Takes one token (the caller checked there was one; a race only empties it).
    fn charge(&mut self, budget: Budget, now: Instant) {
        self.refill(budget, now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn is_full(&self, budget: Budget) -> bool {
        self.tokens >= f64::from(budget.burst)
    }
}

/// The address a wrong code is charged to: an IPv4 address as it is, an IPv6 address as
/// its /64 (the rest zeroed). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a
/// dual-stack socket sees IPv4 clients) is its IPv4 address, not the /64 every IPv4
/// client would then share.
pub(super) fn charged_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// The failure budgets of every connection, every address and the broker.
#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    /// Only connections that made a failure; removed by [`Throttle::forget`] when the
    /// connection ends, so this holds at most one bucket per open connection.
    connections: HashMap<PartyId, Bucket>,
    /// Only addresses that made a failure; pruned of refilled buckets when it grows.
    addresses: HashMap<IpAddr, Bucket>,
    total: Bucket,
    /// Only cases whose customer added a message; pruned of refilled buckets when it
    /// grows, like the addresses.
    messages: HashMap<SessionCode, Bucket>,
}

/// How many address buckets to keep before forgetting the ones that have refilled.
const PRUNE_ABOVE: usize = 10_000;

impl Throttle {
    /// Budgets with these limits, all full.
    pub fn new(limits: ThrottleLimits, now: Instant) -> Throttle {
        Throttle {
            limits,
            connections: HashMap::new(),
            addresses: HashMap::new(),
            total: Bucket::full(limits.total, now),
            messages: HashMap::new(),
        }
    }

    /// Replaces the budgets (a reload). What was spent stays spent; each bucket refills
    /// at the new rate and up to the new burst from now on.
    pub fn set_limits(&mut self, limits: ThrottleLimits) {
        self.limits = limits;
    }

    /// `Err(wait)` if `connection`, coming from `address`, may not try a code now; the wait
    /// is until every one of its three budgets has a failure to spend again.
    pub fn check(
        &mut self,
        connection: PartyId,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let limits = self.limits;
        self.total.refill(limits.total, now);
        let waits = [
            self.total.wait(limits.total),
            wait_in(
                &mut self.connections,
                &connection,
                limits.per_connection,
                now,
            ),
            wait_in(
                &mut self.addresses,
                &charged_address(address),
                limits.per_address,
                now,
            ),
        ];
        let wait = waits.into_iter().fold(Duration::ZERO, Duration::max);
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Charges one failed look-up to `connection`, to `address` and to the total.
    pub fn failed(&mut self, connection: PartyId, address: IpAddr, now: Instant) {
        let limits = self.limits;
        if self.addresses.len() >= PRUNE_ABOVE {
            // A full bucket is the same as none.
            self.addresses.retain(|_, bucket| {
                bucket.refill(limits.per_address, now);
                !bucket.is_full(limits.per_address)
            });
        }
        charge_in(
            &mut self.connections,
            connection,
            limits.per_connection,
            now,
        );
        let address = charged_address(address);
        charge_in(&mut self.addresses, address, limits.per_address, now);
        self.total.charge(limits.total, now);
    }

    /// `Err(wait)` while case `code`'s message budget is spent: a minute's worth at once,
    /// then one back every `60 / messages_per_minute` seconds. Checked before a message,
    /// charged ([`Throttle::message_sent`]) only once it was taken, so a stranger's refused
    /// message never spends a customer's budget.
    pub fn message_wait(&mut self, code: SessionCode, now: Instant) -> Result<(), Duration> {
        let budget = self.message_budget();
        let wait = wait_in(&mut self.messages, &code, budget, now);
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Charges one message to case `code`'s budget.
    pub fn message_sent(&mut self, code: SessionCode, now: Instant) {
        let budget = self.message_budget();
        if self.messages.len() >= PRUNE_ABOVE {
            self.messages.retain(|_, bucket| {
                bucket.refill(budget, now);
                !bucket.is_full(budget)
            });
        }
        charge_in(&mut self.messages, code, budget, now);
    }

    fn message_budget(&self) -> Budget {
        Budget {
            burst: self.limits.messages_per_minute,
            per_minute: self.limits.messages_per_minute,
        }
    }

    /// Drops the budget of a connection that ended. What it spent stays charged to its
    /// address and the total, so reconnecting buys only a fresh per-connection budget.
    pub fn forget(&mut self, connection: PartyId) {
        self.connections.remove(&connection);
    }
}

/// The wait of the bucket under `key` (none: it never failed, nothing to wait for).
fn wait_in<K: Hash + Eq>(
    buckets: &mut HashMap<K, Bucket>,
    key: &K,
    budget: Budget,
    now: Instant,
) -> Duration {
    match buckets.get_mut(key) {
        Some(bucket) => {
            bucket.refill(budget, now);
            bucket.wait(budget)
        }
        None => Duration::ZERO,
    }
}

/// Charges one failure to the bucket under `key`, starting it full.
fn charge_in<K: Hash + Eq>(buckets: &mut HashMap<K, Bucket>, key: K, budget: Budget, now: Instant) {
    buckets
        .entry(key)
        .or_insert_with(|| Bucket::full(budget, now))
        .charge(budget, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: PartyId = PartyId(1);
    const TWO: PartyId = PartyId(2);

    /// Roomy budgets, so each test runs into only the one it is about.
    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            per_connection: Budget {
                burst: 100,
                per_minute: 60,
            },
            per_address: Budget {
                burst: 100,
                per_minute: 60,
            },
            total: Budget {
                burst: 100,
                per_minute: 60,
            },
            messages_per_minute: 20,
        }
    }

    /// Charges `n` failures, each first allowed.
    fn fail(throttle: &mut Throttle, connection: PartyId, address: &str, n: u32, now: Instant) {
        let address: IpAddr = address.parse().unwrap();
        for _ in 0..n {
            assert_eq!(throttle.check(connection, address, now), Ok(()));
            throttle.failed(connection, address, now);
        }
    }

    fn check(
        throttle: &mut Throttle,
        connection: PartyId,
        address: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        throttle.check(connection, address.parse().unwrap(), now)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_gets_its_burst_then_waits_while_its_address_mates_go_on() {
        let now = Instant::now();
        let mut limits = limits();
        limits.per_connection = Budget {
            burst: 3,
            per_minute: 6,
        };
        let mut throttle = Throttle::new(limits, now);
        fail(&mut throttle, ONE, "10.0.0.1", 3, now);
        // 6 per minute: one failure earned back every 10 seconds.
        assert_eq!(
            check(&mut throttle, ONE, "10.0.0.1", now),
            Err(Duration::from_secs(10))
        );
        assert_eq!(
            check(&mut throttle, TWO, "10.0.0.1", now),
            Ok(()),
            "another party behind the same address is not punished"
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(check(&mut throttle, ONE, "10.0.0.1", later), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn many_connections_on_one_address_exhaust_its_budget() {
        let now = Instant::now();
        let mut limits = limits();
        limits.per_connection.burst = 2;
        limits.per_address = Budget {
            burst: 5,
            per_minute: 6,
        };
        let mut throttle = Throttle::new(limits, now);
        fail(&mut throttle, PartyId(1), "10.0.0.1", 2, now);
        fail(&mut throttle, PartyId(2), "10.0.0.1", 2, now);
        fail(&mut throttle, PartyId(3), "10.0.0.1", 1, now);
        assert_eq!(
            check(&mut throttle, PartyId(4), "10.0.0.1", now),
            Err(Duration::from_secs(10)),
            "a fresh connection finds its address spent"
        );
        assert_eq!(check(&mut throttle, PartyId(4), "10.0.0.2", now), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn many_addresses_together_exhaust_the_total_budget() {
        let now = Instant::now();
        let mut limits = limits();
        limits.total = Budget {
            burst: 5,
            per_minute: 60,
        };
        let mut throttle = Throttle::new(limits, now);
        for i in 0..5u64 {
            fail(&mut throttle, PartyId(i), &format!("10.0.1.{i}"), 1, now);
        }
        assert_eq!(
            check(&mut throttle, PartyId(9), "10.9.9.9", now),
            Err(Duration::from_secs(1))
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(check(&mut throttle, PartyId(9), "10.9.9.9", later), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_addresses_share_a_budget_by_their_64_and_ipv4_by_address() {
        let now = Instant::now();
        let mut limits = limits();
        limits.per_address = Budget {
            burst: 2,
            per_minute: 6,
        };
        let mut throttle = Throttle::new(limits, now);
        fail(&mut throttle, PartyId(1), "2001:db8:1:2::1", 1, now);
        fail(&mut throttle, PartyId(2), "2001:db8:1:2:ffff:0:0:9", 1, now);
        let spent = Err(Duration::from_secs(10));
        assert_eq!(
            check(&mut throttle, PartyId(3), "2001:db8:1:2::77", now),
            spent
        );
        assert_eq!(
            check(&mut throttle, PartyId(3), "2001:db8:1:3::1", now),
            Ok(())
        );

        fail(&mut throttle, PartyId(4), "192.0.2.1", 2, now);
        assert_eq!(check(&mut throttle, PartyId(5), "192.0.2.1", now), spent);
        assert_eq!(check(&mut throttle, PartyId(5), "192.0.2.2", now), Ok(()));
    }

    #[test]
    fn an_ipv4_mapped_address_is_charged_as_its_ipv4_address() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let neighbour: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert_eq!(
            charged_address(mapped),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_ne!(charged_address(mapped), charged_address(neighbour));
        assert_eq!(
            charged_address("2001:db8::1:2:3:4".parse().unwrap()),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_case_takes_a_minutes_worth_of_messages_at_once_then_one_every_few_seconds() {
        let now = Instant::now();
        let mut limits = limits();
        limits.messages_per_minute = 3;
        let mut throttle = Throttle::new(limits, now);
        let code = SessionCode::from_number(7).unwrap();
        let other = SessionCode::from_number(8).unwrap();
        let send = |throttle: &mut Throttle, code, at| {
            let allowed = throttle.message_wait(code, at);
            if allowed.is_ok() {
                throttle.message_sent(code, at);
            }
            allowed
        };
        for _ in 0..3 {
            assert_eq!(send(&mut throttle, code, now), Ok(()));
        }
        assert_eq!(send(&mut throttle, code, now), Err(Duration::from_secs(20)));
        assert_eq!(send(&mut throttle, other, now), Ok(()), "each case its own");
        let later = now + Duration::from_secs(20);
        assert_eq!(send(&mut throttle, code, later), Ok(()));
        assert!(send(&mut throttle, code, later).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ended_is_forgotten_but_its_failures_stay_charged() {
        let now = Instant::now();
        let mut limits = limits();
        limits.per_connection.burst = 2;
        limits.per_address.burst = 3;
        let mut throttle = Throttle::new(limits, now);
        fail(&mut throttle, ONE, "10.0.0.1", 2, now);
        assert!(check(&mut throttle, ONE, "10.0.0.1", now).is_err());
        throttle.forget(ONE);
        assert!(throttle.connections.is_empty(), "nothing kept of it");
        // A new party gets its own budget, but the address has only one failure left.
        fail(&mut throttle, TWO, "10.0.0.1", 1, now);
        assert!(check(&mut throttle, TWO, "10.0.0.1", now).is_err());
        throttle.forget(TWO);
        assert!(throttle.connections.is_empty());
    }
}
