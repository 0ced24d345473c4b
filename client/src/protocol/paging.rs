//! Lists in pages: no reply or event depends on how many cases, queue entries or history
//! entries exist.
//!
//! Every list request names where to start (a cursor from the previous page, or nothing for
//! the first) and how many items it wants; the server answers with at most that many, fewer
//! when the page would pass [`MAX_PAGE_BYTES`] encoded, and with the cursor of the next page
//! when there is more. Cursors print as short tokens (`sosq queue --after TOKEN`) and read
//! back with `FromStr`, so any client can page the same way.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::case::{CaseInfo, CaseState, Priority, QueueEntry, Timestamp};
use super::history::HistoryEntry;
use crate::code::SessionCode;

/// Items a page holds when the request does not say (`limit` 0).
pub const DEFAULT_PAGE_ITEMS: u32 = 100;

/// The most items one page holds, whatever the request asks.
pub const MAX_PAGE_ITEMS: u32 = 1_000;

/// The most bytes a page's items may take encoded. The frame limit is 64 KiB; the rest of a
/// page (code, state, counts, cursor) takes well under 1 KiB, and the largest single item
/// (a history entry with a 2,000-character reason in 4-byte characters, about 8.5 KiB) fits
/// many times over, so a page always has room for at least one.
pub const MAX_PAGE_BYTES: usize = 56 * 1024;

/// The items a page request gets: `limit` 0 means [`DEFAULT_PAGE_ITEMS`], anything above
/// [`MAX_PAGE_ITEMS`] is capped.
pub fn page_items(limit: u32) -> usize {
    match limit {
        0 => DEFAULT_PAGE_ITEMS as usize,
        n => n.min(MAX_PAGE_ITEMS) as usize,
    }
}

/// One page of the waiting cases a party may see, next first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePage {
    /// The entries, in pull order; offline customers keep their place (position `None`).
    pub entries: Vec<QueueEntry>,
    /// Customers waiting online in these queues, on every page.
    pub online: u32,
    /// Customers waiting whose connection dropped, on every page.
    pub offline: u32,
    /// Where the next page starts, if there is one.
    pub next: Option<QueueCursor>,
}

/// Where a page of the queue starts: right after this place in line.
///
/// The place is the queue's own order (priority, response deadline, waiting since, arrival),
/// so paging never skips or repeats a case that stays in line while others come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCursor {
    /// Priority of the last case shown.
    pub priority: Priority,
    /// Its response deadline.
    pub response_due: Timestamp,
    /// Since when it waits.
    pub waiting_since: Timestamp,
    /// Its arrival number (ties between equal times).
    pub arrival: u64,
}

impl fmt::Display for QueueCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.priority, self.response_due.0, self.waiting_since.0, self.arrival
        )
    }
}

impl std::str::FromStr for QueueCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a queue page token (as printed after a page)");
        let parts: Vec<&str> = s.trim().split('.').collect();
        let [priority, due, since, arrival] = parts.as_slice() else {
            return Err(bad());
        };
        let number = |text: &str| text.parse::<u64>().map_err(|_| bad());
        Ok(QueueCursor {
            priority: priority.parse().map_err(|_| bad())?,
            response_due: Timestamp(number(due)?),
            waiting_since: Timestamp(number(since)?),
            arrival: number(arrival)?,
        })
    }
}

/// One page of stored cases, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasesPage {
    /// The cases, by creation time then code.
    pub cases: Vec<CaseInfo>,
    /// Where the next page starts, if there is one.
    pub next: Option<CasesCursor>,
}

/// Where a page of the case list starts: right after this case in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasesCursor {
    /// When the last case shown was created.
    pub created_at: Timestamp,
    /// Its code.
    pub code: SessionCode,
}

impl fmt::Display for CasesCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at.0, self.code)
    }
}

impl std::str::FromStr for CasesCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a case list page token (as printed after a page)");
        let (at, code) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(CasesCursor {
            created_at: Timestamp(at.parse().map_err(|_| bad())?),
            code: code.parse().map_err(|_| bad())?,
        })
    }
}

/// One page of a case's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The case.
    pub code: SessionCode,
    /// Its state now.
    pub state: CaseState,
    /// Entries from the requested index on.
    pub entries: Vec<HistoryEntry>,
    /// How many entries the history has in all.
    pub total: u32,
    /// The index the next page starts at, if there is more.
    pub next: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_print() {
        let queue = QueueCursor {
            priority: Priority::High,
            response_due: Timestamp(1_764_528_000_000),
            waiting_since: Timestamp(1_764_527_000_000),
            arrival: 77,
        };
        assert_eq!(queue.to_string().parse::<QueueCursor>(), Ok(queue));
        let cases = CasesCursor {
            created_at: Timestamp(5),
            code: SessionCode::from_number(123_456_789).unwrap(),
        };
        assert_eq!(cases.to_string(), "5.s123-456-789");
        assert_eq!(cases.to_string().parse::<CasesCursor>(), Ok(cases));
        assert!("nonsense".parse::<QueueCursor>().is_err());
        assert!("5".parse::<CasesCursor>().is_err());
    }

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(page_items(0), DEFAULT_PAGE_ITEMS as usize);
        assert_eq!(page_items(7), 7);
        assert_eq!(page_items(u32::MAX), MAX_PAGE_ITEMS as usize);
    }
}
