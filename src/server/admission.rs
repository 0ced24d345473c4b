//! Who gets in, decided before the TLS handshake costs us anything: a cap on connections in
//! total and per source address, and QUIC address validation (Retry) once handshakes come
//! faster than a threshold, so spoofed floods cannot make us do crypto for them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// The limits admission enforces.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Connections open at once, in total.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// Above this many new handshakes per second, unvalidated clients get a Retry first.
    pub retry_above_handshakes_per_second: u32,
}

impl AdmissionLimits {
    /// The limits from the daemon's settings (`max_connections`,
    /// `max_connections_per_address`, `retry_above_handshakes_per_second`).
    pub fn from_config(config: &crate::config::Config) -> AdmissionLimits {
        AdmissionLimits {
            max_connections: config.max_connections,
            max_connections_per_address: config.max_connections_per_address,
            retry_above_handshakes_per_second: config.retry_above_handshakes_per_second,
        }
    }
}

/// What to do with an incoming connection.
pub enum Decision {
    /// Go ahead; the guard holds the connection's place until dropped.
    Accept(AdmissionGuard),
    /// Ask the client to prove its address first (QUIC Retry).
    Retry,
    /// Refuse before the handshake, with the reason for the log.
    Refuse(&'static str),
}

/// Counts open connections in total and per address.
pub struct Admission {
    /// Replaced whole by a reload; read once per connection attempt.
    limits: Mutex<AdmissionLimits>,
    open: AtomicUsize,
    per_address: DashMap<IpAddr, usize>,
    /// Start of the current one-second window and handshakes seen in it.
    window: Mutex<(Instant, u32)>,
}

impl Admission {
    /// Admission with these limits and nobody connected.
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits: Mutex::new(limits),
            open: AtomicUsize::new(0),
            per_address: DashMap::new(),
            window: Mutex::new((Instant::now(), 0)),
        })
    }

    /// Replaces the limits (a reload). Connections already open stay, even above a
    /// lowered limit; the limits apply to the next attempts.
    pub fn set_limits(&self, limits: AdmissionLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    fn limits(&self) -> AdmissionLimits {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Decides on a connection attempt from `address`; `validated` says whether the
    /// client already proved its address (answered a Retry).
    pub fn decide(self: &Arc<Self>, address: IpAddr, validated: bool) -> Decision {
        let limits = self.limits();
        if !validated && self.handshake_rate_exceeded(limits.retry_above_handshakes_per_second) {
            return Decision::Retry;
        }
        if self.open.load(Ordering::Relaxed) >= limits.max_connections {
            return Decision::Refuse("the server is at its connection limit");
        }
        {
            let mut count = self.per_address.entry(address).or_insert(0);
            if *count >= limits.max_connections_per_address {
                return Decision::Refuse("too many connections from this address");
            }
            *count += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Decision::Accept(AdmissionGuard {
            admission: self.clone(),
            address: Some(address),
        })
    }

    /// Decides on a connection of the daemon's own web front (`crate::web::bridge`): one
    /// per browser party, all from one loopback address, so only the total limit applies
    /// here; the web front holds each browser address to `max_connections_per_address`
    /// itself.
    pub fn decide_web_front(self: &Arc<Self>) -> Decision {
        if self.open.load(Ordering::Relaxed) >= self.limits().max_connections {
            return Decision::Refuse("the server is at its connection limit");
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Decision::Accept(AdmissionGuard {
            admission: self.clone(),
            address: None,
        })
    }

    /// Counts one handshake attempt; true when this second has seen more than the threshold.
    fn handshake_rate_exceeded(&self, threshold: u32) -> bool {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        window.1 = window.1.saturating_add(1);
        window.1 > threshold
    }

    fn release(&self, address: Option<IpAddr>) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let Some(address) = address else {
            return;
        };
        let now_empty = match self.per_address.get_mut(&address) {
            Some(mut count) => {
                *count = count.saturating_sub(1);
                *count == 0
            }
            None => false,
        };
        if now_empty {
            self.per_address.remove_if(&address, |_, count| *count == 0);
        }
    }
}

/// Holds one connection's place; frees it when dropped.
pub struct AdmissionGuard {
    admission: Arc<Admission>,
    /// None: a web front connection, not counted per address.
    address: Option<IpAddr>,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        self.admission.release(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize, retry_above: u32) -> AdmissionLimits {
        AdmissionLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            retry_above_handshakes_per_second: retry_above,
        }
    }

    fn accept(decision: Decision) -> AdmissionGuard {
        match decision {
            Decision::Accept(guard) => guard,
            Decision::Retry => panic!("unexpected retry"),
            Decision::Refuse(why) => panic!("unexpected refusal: {why}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn per_address_and_total_caps_hold_and_free_on_drop() {
        let admission = Admission::new(limits(3, 2, 1000));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = accept(admission.decide(a, false));
        let _a2 = accept(admission.decide(a, false));
        assert!(matches!(admission.decide(a, false), Decision::Refuse(_)));
        let _b1 = accept(admission.decide(b, false));
        assert!(
            matches!(admission.decide(b, false), Decision::Refuse(_)),
            "total cap"
        );
        assert_eq!(admission.open_connections(), 3);
        drop(a1);
        assert_eq!(admission.open_connections(), 2);
        let _a3 = accept(admission.decide(a, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_handshake_burst_turns_on_retry_for_unvalidated_clients_only() {
        let admission = Admission::new(limits(100, 100, 3));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut guards = Vec::new();
        for _ in 0..3 {
            guards.push(accept(admission.decide(ip, false)));
        }
        assert!(matches!(admission.decide(ip, false), Decision::Retry));
        guards.push(accept(admission.decide(ip, true)));
        tokio::time::advance(Duration::from_secs(1)).await;
        guards.push(accept(admission.decide(ip, false)));
    }

    #[tokio::test(start_paused = true)]
    async fn new_limits_apply_to_the_next_attempt_and_keep_who_is_in() {
        let admission = Admission::new(limits(3, 3, 1000));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _first = accept(admission.decide(ip, false));
        let _second = accept(admission.decide(ip, false));
        admission.set_limits(limits(1, 1, 1000));
        assert_eq!(admission.open_connections(), 2, "nobody is dropped");
        assert!(matches!(admission.decide(ip, false), Decision::Refuse(_)));
        admission.set_limits(limits(10, 10, 1000));
        let _third = accept(admission.decide(ip, false));
    }
}
