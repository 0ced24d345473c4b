//! Which cases an admin's listing or bulk delete is about, resolved against one `now`
//! so that the core and the store agree on "older than".

use serde::{Deserialize, Serialize};
use sosq::protocol::{CaseFilter, CaseState, Timestamp};

use super::CaseRecord;

/// A filter with absolute times: every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSelection {
    /// Only cases in this state.
    pub state: Option<CaseState>,
    /// Only cases created strictly before this time.
    pub created_before: Option<Timestamp>,
}

impl CaseSelection {
    /// Resolves a wire filter ("older than N ms") against `now`.
    pub fn resolve(filter: &CaseFilter, now: Timestamp) -> CaseSelection {
        CaseSelection {
            state: filter.state,
            created_before: filter
                .older_than_ms
                .map(|ms| Timestamp(now.0.saturating_sub(ms))),
        }
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &CaseRecord) -> bool {
        self.state.is_none_or(|state| record.state == state)
            && self
                .created_before
                .is_none_or(|before| record.created_at < before)
    }
}
