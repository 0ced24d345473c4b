//! What parties see of the core: the queue, a page at a time, and the waiting customers'
//! positions for the live updates. Every view is built from the core's state under its
//! lock and costs the entries it returns, not the length of the queue, with one
//! exception: a page after the first places its positions by counting, in each line it
//! shows, the cases ahead of its cursor from the nearer end of that line (the first page,
//! the one `queue --watch` and most people see, counts nothing).

use sosq::codec::PageBudget;
use sosq::protocol::{
    queue_message, CaseInfo, CaseState, QueueCursor, QueueEntry, QueuePage, Timestamp,
};
use sosq::SessionCode;

use std::collections::HashMap;

use super::queue::{Place, Queue, QueueId};
use super::{Broker, BrokerError, ExpertSeat, PartyId};

/// Whose view of the queue: admins see every queue, an expert its teams' and its own.
#[derive(Debug, Clone, Copy)]
pub enum QueueViewer<'a> {
    /// Every queue.
    Everyone,
    /// One expert.
    Expert {
        /// The expert's user name (its own queue of assigned cases).
        name: &'a str,
        /// The teams it works.
        teams: &'a [String],
    },
}

impl QueueViewer<'_> {
    /// The queues this viewer sees; `None` for all of them.
    fn queues(&self) -> Option<Vec<QueueId>> {
        match self {
            QueueViewer::Everyone => None,
            QueueViewer::Expert { name, teams } => Some(
                ExpertSeat {
                    party: PartyId(0),
                    name: name.to_string(),
                    groups: teams.to_vec(),
                    pulled: false,
                }
                .queues(),
            ),
        }
    }
}

/// What a customer following its case sees ([`Broker::customer_follow`]).
#[derive(Debug, Clone)]
pub struct CustomerFollow {
    /// The case.
    pub info: CaseInfo,
    /// Its place in its queue while it waits online.
    pub position: Option<u32>,
    /// The latest entries of its history, oldest first.
    pub history: Vec<sosq::protocol::HistoryEntry>,
}

impl Broker {
    /// A customer looks at its own case (attached, or with the resume secret).
    pub fn customer_view(
        &self,
        party: PartyId,
        code: &str,
        secret: Option<&str>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(code)?;
        self.check_customer_owns(party, code, secret)?;
        Ok(self.cases[&code].info())
    }

    /// A customer follows its own open case (with the resume secret, from the web
    /// console's `/case`): the case, its place in its queue while it waits, and the last
    /// `entries` entries of its history without staff-internal ones. Errors as
    /// [`Broker::customer_view`].
    pub fn customer_follow(
        &self,
        party: PartyId,
        code: SessionCode,
        secret: &str,
        entries: usize,
    ) -> Result<CustomerFollow, BrokerError> {
        let code = self.open_code(&code.to_string())?;
        self.check_customer_owns(party, code, Some(secret))?;
        let case = &self.cases[&code];
        let mut history: Vec<sosq::protocol::HistoryEntry> = case
            .record
            .history
            .iter()
            .rev()
            .filter(|entry| !entry.staff_only())
            .take(entries)
            .cloned()
            .collect();
        history.reverse();
        Ok(CustomerFollow {
            info: case.info(),
            position: self.queue.position(code),
            history,
        })
    }

    /// Open cases by state: new, pending, in progress.
    pub fn open_by_state(&self) -> [(CaseState, usize); 3] {
        let mut counts = [
            (CaseState::New, 0),
            (CaseState::Pending, 0),
            (CaseState::InProgress, 0),
        ];
        for case in self.cases.values() {
            if let Some(slot) = counts
                .iter_mut()
                .find(|(state, _)| *state == case.record.state)
            {
                slot.1 += 1;
            }
        }
        counts
    }

    /// Per queue: how many wait and since when the longest has waited.
    pub fn queue_summary(&self) -> Vec<(QueueId, usize, Timestamp)> {
        let mut summary: std::collections::BTreeMap<QueueId, (usize, Timestamp)> =
            std::collections::BTreeMap::new();
        for code in self.queue.iter() {
            let (Some(case), Some(id)) = (self.cases.get(&code), self.queue.queue_of(code)) else {
                continue;
            };
            let since = case.record.waiting_since.unwrap_or(case.record.created_at);
            let entry = summary.entry(id.clone()).or_insert((0, since));
            entry.0 += 1;
            entry.1 = entry.1.min(since);
        }
        summary
            .into_iter()
            .map(|(id, (count, oldest))| (id, count, oldest))
            .collect()
    }

    /// A number that changes whenever the queue's order or content does (offline
    /// customers included: experts see them).
    pub fn queue_version(&self) -> u64 {
        self.queue.version()
    }

    /// One page of the queue as `viewer` sees it, next first: at most `limit` entries
    /// (see [`sosq::protocol::page_items`]), fewer if they would not fit one frame, starting
    /// after `after`, with the cursor of the next page if there is more.
    pub fn queue_page(
        &self,
        viewer: QueueViewer<'_>,
        after: Option<&QueueCursor>,
        limit: usize,
    ) -> QueuePage {
        let queues = viewer.queues();
        let start = after.map(Place::of_cursor);
        let mut walk = self.queue.walk(queues.as_deref(), start, true).peekable();
        let mut positions = Positions::after(start);
        let mut budget = PageBudget::new(limit);
        let mut entries = Vec::new();
        let mut last = None;
        while let Some((place, code)) = walk.peek().copied() {
            let Some(mut entry) = self.entry(code) else {
                walk.next();
                continue;
            };
            // Counted only once the entry is on the page: a refused one is the next
            // page's first.
            let position = positions.peek(&self.queue, code);
            entry.position = entry.online.then_some(position).flatten();
            if !budget.admit(&entry) {
                break;
            }
            walk.next();
            if entry.online {
                positions.count(&self.queue, code);
            }
            last = Some(place);
            entries.push(entry);
        }
        let more = walk.peek().is_some();
        let online = self.queue.count(queues.as_deref());
        let offline = self.queue.count_away(queues.as_deref());
        QueuePage {
            entries,
            online: u32::try_from(online).unwrap_or(u32::MAX),
            offline: u32::try_from(offline).unwrap_or(u32::MAX),
            next: last.filter(|_| more).map(|place| place.cursor()),
        }
    }

    /// Every waiting case of every queue, next first. Its size grows with the queue: for
    /// tests and the fuzzer; replies use [`Broker::queue_page`].
    pub fn queue_view(&self) -> Vec<QueueEntry> {
        self.view_all(QueueViewer::Everyone)
    }

    /// The whole queue an expert of `groups` is offered, next first (tests; replies page).
    pub fn queue_view_for(&self, expert: &str, groups: &[String]) -> Vec<QueueEntry> {
        self.view_all(QueueViewer::Expert {
            name: expert,
            teams: groups,
        })
    }

    fn view_all(&self, viewer: QueueViewer<'_>) -> Vec<QueueEntry> {
        let queues = viewer.queues();
        let mut positions = Positions::after(None);
        self.queue
            .walk(queues.as_deref(), None, true)
            .filter_map(|(_, code)| {
                let mut entry = self.entry(code)?;
                if entry.online {
                    entry.position = positions.count(&self.queue, code);
                }
                Some(entry)
            })
            .collect()
    }

    /// Waiting cases whose queue position changed since their customer was last told it,
    /// with their customer (if connected) and position; see
    /// [`Queue::take_moved`](super::queue::Queue::take_moved).
    pub fn take_moved_positions(&mut self) -> Vec<(SessionCode, Option<PartyId>, u32)> {
        self.queue
            .take_moved()
            .into_iter()
            .map(|(code, position)| {
                let customer = self.cases.get(&code).and_then(|case| case.customer);
                (code, customer, position)
            })
            .collect()
    }

    /// The queue entry of a waiting case, without its position (the page counts it).
    fn entry(&self, code: SessionCode) -> Option<QueueEntry> {
        let case = self.cases.get(&code)?;
        let record = &case.record;
        let online = case.customer.is_some();
        Some(QueueEntry {
            position: None,
            code,
            customer: record.customer.clone(),
            description: record.description.clone(),
            waiting_since: record.waiting_since.unwrap_or(record.created_at),
            priority: record.priority,
            response_due: record.response_due.unwrap_or(record.expires_at),
            group: record.group.clone(),
            assigned_to: record.assigned_to.clone(),
            online,
            last_message: record.last_message.as_deref().map(queue_message),
            attachments: record.attachments,
        })
    }
}

/// The positions of a page's entries, each in its own line (the team's queue, or the
/// queue of cases assigned to one expert): what its customer was told, whichever queues
/// the page merges. A page that starts after a cursor counts, for each line it shows, the
/// cases of that line up to the cursor ([`Queue::up_to`](super::queue::Queue::up_to)),
/// once per line.
struct Positions {
    start: Option<Place>,
    /// Per line shown so far: the position of its last online case on the page.
    shown: HashMap<QueueId, u32>,
}

impl Positions {
    fn after(start: Option<Place>) -> Positions {
        Positions {
            start,
            shown: HashMap::new(),
        }
    }

    /// The position online case `code` would have as the next entry of the page.
    fn peek(&mut self, queue: &Queue, code: SessionCode) -> Option<u32> {
        let id = queue.queue_of(code)?;
        Some(self.last_of(queue, id) + 1)
    }

    /// Puts online case `code` on the page; its position.
    fn count(&mut self, queue: &Queue, code: SessionCode) -> Option<u32> {
        let id = queue.queue_of(code)?;
        let position = self.last_of(queue, id) + 1;
        self.shown.insert(id.clone(), position);
        Some(position)
    }

    fn last_of(&mut self, queue: &Queue, id: &QueueId) -> u32 {
        if let Some(last) = self.shown.get(id) {
            return *last;
        }
        let ahead = self.start.map_or(0, |start| queue.up_to(id, start));
        self.shown.insert(id.clone(), ahead);
        ahead
    }
}
