//! The queue of waiting SOS cases, in pull order: priority first, then the response
//! deadline, then how long the customer has waited, ties broken by arrival order. A case
//! whose expert drops goes back in at its original place, so nobody loses their turn.

use std::collections::{BTreeMap, HashMap};

use sosq::protocol::{Priority, Timestamp};
use sosq::SessionCode;

/// Where a case stands in line; the derived order is the pull order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// Most urgent first.
    pub priority: Priority,
    /// Earliest response deadline first.
    pub response_due: Timestamp,
    /// Longest waiting first.
    pub waiting_since: Timestamp,
    arrival: u64,
}

/// Waiting cases in pull order.
#[derive(Debug, Default)]
pub struct Queue {
    order: BTreeMap<Place, SessionCode>,
    place: HashMap<SessionCode, Place>,
    /// Arrival number of every case that has ever been in line and is still open, so a
    /// case that comes back keeps its turn even among same-millisecond arrivals.
    arrival: HashMap<SessionCode, u64>,
    arrivals: u64,
    /// Bumped on every change of order, so the shell can tell watchers only when needed.
    version: u64,
}

impl Queue {
    /// Puts `code` in line (or moves it, if its priority or deadline changed).
    pub fn push(
        &mut self,
        code: SessionCode,
        priority: Priority,
        response_due: Timestamp,
        waiting_since: Timestamp,
    ) {
        self.remove(code);
        self.version += 1;
        let arrivals = &mut self.arrivals;
        let arrival = *self.arrival.entry(code).or_insert_with(|| {
            *arrivals += 1;
            *arrivals
        });
        let key = Place {
            priority,
            response_due,
            waiting_since,
            arrival,
        };
        self.order.insert(key, code);
        self.place.insert(code, key);
    }

    /// Takes `code` out of line; no-op if it is not there.
    pub fn remove(&mut self, code: SessionCode) {
        if let Some(key) = self.place.remove(&code) {
            self.order.remove(&key);
            self.version += 1;
        }
    }

    /// Forgets `code` entirely (its case closed, expired or was deleted).
    pub fn forget(&mut self, code: SessionCode) {
        self.remove(code);
        self.arrival.remove(&code);
    }

    /// A number that changes whenever the order does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The case the next pull takes.
    pub fn front(&self) -> Option<SessionCode> {
        self.order.values().next().copied()
    }

    /// 1-based position of `code`, if it is waiting.
    pub fn position(&self, code: SessionCode) -> Option<u32> {
        let key = self.place.get(&code)?;
        Some(self.order.range(..key).count() as u32 + 1)
    }

    /// Waiting cases, next first.
    pub fn iter(&self) -> impl Iterator<Item = SessionCode> + '_ {
        self.order.values().copied()
    }

    /// Number of waiting cases.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
