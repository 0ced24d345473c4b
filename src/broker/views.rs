//! What parties see of the core: the queue, a page at a time, and the waiting customers'
//! positions for the live updates. Every view is built from the core's state under its
//! lock and costs the entries it returns, never the length of the queue.

use sosq::codec::PageBudget;
use sosq::protocol::{CaseInfo, CaseState, QueueCursor, QueueEntry, QueuePage, Timestamp};
use sosq::SessionCode;

use super::queue::{Place, QueueId};
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
        let mut walk = self
            .queue
            .walk(queues.as_deref(), after.map(Place::of_cursor), true)
            .peekable();
        let mut position = after.map_or(0, |cursor| cursor.position);
        let mut budget = PageBudget::new(limit);
        let mut entries = Vec::new();
        let mut last = None;
        while let Some((place, code)) = walk.peek().copied() {
            let Some(entry) = self.entry(code, position + 1) else {
                walk.next();
                continue;
            };
            if !budget.admit(&entry) {
                break;
            }
            walk.next();
            position = entry.position.unwrap_or(position);
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
            next: last.filter(|_| more).map(|place| place.cursor(position)),
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
        let mut position = 0;
        self.queue
            .walk(queues.as_deref(), None, true)
            .filter_map(|(_, code)| {
                let entry = self.entry(code, position + 1)?;
                position = entry.position.unwrap_or(position);
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

    /// The queue entry of a waiting case, at `position` if its customer is online.
    fn entry(&self, code: SessionCode, position: u32) -> Option<QueueEntry> {
        let case = self.cases.get(&code)?;
        let record = &case.record;
        let online = case.customer.is_some();
        Some(QueueEntry {
            position: online.then_some(position),
            code,
            customer: record.customer.clone(),
            description: record.description.clone(),
            waiting_since: record.waiting_since.unwrap_or(record.created_at),
            priority: record.priority,
            response_due: record.response_due.unwrap_or(record.expires_at),
            group: record.group.clone(),
            assigned_to: record.assigned_to.clone(),
            online,
        })
    }
}
