//! Expiry deadlines, kept ordered so the shell can sleep until the next one instead of
//! scanning every case.

use std::collections::{BTreeSet, HashMap};

use sosq::protocol::Timestamp;
use sosq::SessionCode;

/// Open cases by the time they expire.
#[derive(Debug, Default)]
pub struct Deadlines {
    order: BTreeSet<(Timestamp, SessionCode)>,
    by_code: HashMap<SessionCode, Timestamp>,
}

impl Deadlines {
    /// Sets (or replaces) the deadline of `code`.
    pub fn set(&mut self, code: SessionCode, at: Timestamp) {
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

    /// The earliest deadline.
    pub fn next(&self) -> Option<Timestamp> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns every code whose deadline is at or before `now`, earliest first.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<SessionCode> {
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
