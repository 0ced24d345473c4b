//! The queue of waiting SOS cases, oldest first.
//!
//! Ordered by when the customer started waiting, ties broken by arrival order; a case
//! whose expert drops goes back in at its original place, so nobody loses their turn.

use std::collections::{BTreeMap, HashMap};

use sosq::protocol::Timestamp;
use sosq::SessionCode;

/// Waiting cases in pull order.
#[derive(Debug, Default)]
pub struct Queue {
    order: BTreeMap<(Timestamp, u64), SessionCode>,
    place: HashMap<SessionCode, (Timestamp, u64)>,
    /// Arrival number of every case that has ever been in line and is still open, so a
    /// case that comes back keeps its turn even among same-millisecond arrivals.
    arrival: HashMap<SessionCode, u64>,
    arrivals: u64,
}

impl Queue {
    /// Puts `code` in line by its waiting time; no-op if it is already in line.
    pub fn push(&mut self, code: SessionCode, waiting_since: Timestamp) {
        if self.place.contains_key(&code) {
            return;
        }
        let arrivals = &mut self.arrivals;
        let arrival = *self.arrival.entry(code).or_insert_with(|| {
            *arrivals += 1;
            *arrivals
        });
        let key = (waiting_since, arrival);
        self.order.insert(key, code);
        self.place.insert(code, key);
    }

    /// Takes `code` out of line; no-op if it is not there.
    pub fn remove(&mut self, code: SessionCode) {
        if let Some(key) = self.place.remove(&code) {
            self.order.remove(&key);
        }
    }

    /// Forgets `code` entirely (its case closed, expired or was deleted).
    pub fn forget(&mut self, code: SessionCode) {
        self.remove(code);
        self.arrival.remove(&code);
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
