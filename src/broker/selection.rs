//! Which cases an admin's listing or bulk delete is about, resolved against one `now`
//! so that the core and the store agree on "older than".

use serde::{Deserialize, Serialize};
use sosq::protocol::{CaseFilter, CaseState, Priority, Timestamp, MAX_FILTER_TEXT_CHARS};

use super::{BrokerError, CaseRecord};

/// A filter with absolute times: every given field must match. Time ranges are
/// `[from, before)`. Built from a wire [`CaseFilter`] by [`CaseSelection::resolve`], which
/// checks it; the stores take it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSelection {
    /// Only cases in this state.
    pub state: Option<CaseState>,
    /// Only cases created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only cases created strictly before this time.
    pub created_before: Option<Timestamp>,
    /// Only closed or expired cases that ended (their `updated_at`: a finished case never
    /// changes again, and retention reads the same column) at or after this time.
    pub closed_from: Option<Timestamp>,
    /// Only closed or expired cases that ended strictly before this time.
    pub closed_before: Option<Timestamp>,
    /// Only cases of this team, exactly.
    pub team: Option<String>,
    /// Only cases of this priority.
    pub priority: Option<Priority>,
    /// Only cases whose customer name or description contains this text, ignoring ASCII
    /// case (so that SQLite's `lower`, PostgreSQL's and this one agree byte for byte).
    pub text: Option<String>,
}

impl CaseSelection {
    /// Resolves a wire filter against `now`: "older than N ms" becomes an upper bound on
    /// the creation time (the tighter of it and `created_to`).
    ///
    /// Errors ([`BrokerError::InvalidInput`], with what to fix): an empty or too long text,
    /// an empty team, or a range whose from is not before its to.
    pub fn resolve(filter: &CaseFilter, now: Timestamp) -> Result<CaseSelection, BrokerError> {
        let aged = filter
            .older_than_ms
            .map(|ms| Timestamp(now.0.saturating_sub(ms)));
        let created_before = match (aged, filter.created_to) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        check_range("created", filter.created_from, filter.created_to)?;
        check_range("closed", filter.closed_from, filter.closed_to)?;
        if let Some(text) = &filter.text {
            let chars = text.chars().count();
            if chars == 0 {
                return Err(BrokerError::InvalidInput(
                    "the text filter is empty; leave it out to match any text".into(),
                ));
            }
            if chars > MAX_FILTER_TEXT_CHARS {
                return Err(BrokerError::InvalidInput(format!(
                    "the text filter is {chars} characters long; at most \
                     {MAX_FILTER_TEXT_CHARS} are allowed"
                )));
            }
        }
        if filter.team.as_deref() == Some("") {
            return Err(BrokerError::InvalidInput(
                "the team filter is empty; name a team or leave it out".into(),
            ));
        }
        Ok(CaseSelection {
            state: filter.state,
            created_from: filter.created_from,
            created_before,
            closed_from: filter.closed_from,
            closed_before: filter.closed_to,
            team: filter.team.clone(),
            priority: filter.priority,
            text: filter.text.clone(),
        })
    }

    /// Whether only finished cases can match: a closing-time bound is given.
    pub fn finished_only(&self) -> bool {
        self.closed_from.is_some() || self.closed_before.is_some()
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &CaseRecord) -> bool {
        let ended = !record.state.is_open();
        self.state.is_none_or(|state| record.state == state)
            && self
                .created_from
                .is_none_or(|from| record.created_at >= from)
            && self
                .created_before
                .is_none_or(|before| record.created_at < before)
            && (!self.finished_only() || ended)
            && self
                .closed_from
                .is_none_or(|from| record.updated_at >= from)
            && self
                .closed_before
                .is_none_or(|before| record.updated_at < before)
            && self.team.as_ref().is_none_or(|team| &record.group == team)
            && self
                .priority
                .is_none_or(|priority| record.priority == priority)
            && self.text.as_ref().is_none_or(|text| {
                let wanted = text.to_ascii_lowercase();
                contains_ascii_folded(&record.customer, &wanted)
                    || contains_ascii_folded(&record.description, &wanted)
            })
    }
}

/// Whether `haystack`, ASCII-lowercased, contains `lowered` (already lowercased).
fn contains_ascii_folded(haystack: &str, lowered: &str) -> bool {
    haystack.to_ascii_lowercase().contains(lowered)
}

/// Refuses a range that selects nothing (`from` not before `to`): surely a mistake, and
/// saying so beats an empty page.
fn check_range(
    what: &str,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<(), BrokerError> {
    match (from, to) {
        (Some(from), Some(to)) if from >= to => Err(BrokerError::InvalidInput(format!(
            "the {what} range is empty: from ({} ms) must be before to ({} ms, exclusive)",
            from.0, to.0
        ))),
        _ => Ok(()),
    }
}
