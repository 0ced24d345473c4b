//! The queues of waiting SOS cases: one per team (group), plus one per expert for cases
//! assigned to that expert. Each is in pull order: priority first, then the response
//! deadline, then how long the customer has waited, ties broken by arrival order. A case
//! whose expert drops goes back in at its original place, so nobody loses their turn.
//!
//! A waiting customer whose connection dropped keeps its place too, set apart ("away"):
//! experts see it in line, marked offline, but nobody can pull it and it counts for no one's
//! position until the customer is back.

use std::cmp::Reverse;
use std::collections::{btree_map, BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::ops::Bound;

use sosq::protocol::{Priority, QueueCursor, Timestamp};
use sosq::SessionCode;

/// The team queue every case lands in unless it names another.
pub const GENERAL: &str = "general";

/// Which queue a case waits in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueId {
    /// A team's queue, by group name.
    Group(String),
    /// The cases assigned to one expert, by user name.
    Expert(String),
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueId::Group(group) => write!(f, "group {group}"),
            QueueId::Expert(expert) => write!(f, "expert {expert}"),
        }
    }
}

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

impl Place {
    /// The page cursor that continues after this place.
    pub fn cursor(&self) -> QueueCursor {
        QueueCursor {
            priority: self.priority,
            response_due: self.response_due,
            waiting_since: self.waiting_since,
            arrival: self.arrival,
        }
    }

    /// The place a page cursor names (the case there may have left the line since; the
    /// next page starts behind where it was, all the same).
    pub fn of_cursor(cursor: &QueueCursor) -> Place {
        Place {
            priority: cursor.priority,
            response_due: cursor.response_due,
            waiting_since: cursor.waiting_since,
            arrival: cursor.arrival,
        }
    }
}

/// One queue in pull order.
#[derive(Debug, Default)]
struct Line {
    order: BTreeMap<Place, SessionCode>,
}

/// Every queue, and which one each waiting case is in.
#[derive(Debug, Default)]
pub struct Queue {
    lines: HashMap<QueueId, Line>,
    place: HashMap<SessionCode, (QueueId, Place)>,
    /// The cases whose customer is offline, in the same order (and sharing the arrival
    /// numbers) as the lines they are shown in.
    away: HashMap<QueueId, Line>,
    away_place: HashMap<SessionCode, (QueueId, Place)>,
    /// Arrival number of every case that has ever been in line and is still open, so a
    /// case that comes back keeps its turn even among same-millisecond arrivals.
    arrival: HashMap<SessionCode, u64>,
    arrivals: u64,
    /// Bumped on every change, so the shell can tell watchers only when needed.
    version: u64,
    /// Per line, the earliest place where a case went in or out since the last
    /// [`Queue::take_moved`]: only cases at or behind it may have a new position.
    changed_from: HashMap<QueueId, Place>,
    /// The position each online waiting case's customer was last told (in a reply or by
    /// [`Queue::take_moved`]), so a case that is taken out and put back at the same
    /// position (an escalation that does not pass anyone, an assignment to an empty
    /// line) is not told it again. Forgotten when the case leaves the online lines.
    told: HashMap<SessionCode, u32>,
}

impl Queue {
    /// Puts `code` in line in queue `id` (moving it if it waits elsewhere or its priority
    /// or deadline changed).
    pub fn push(
        &mut self,
        code: SessionCode,
        id: QueueId,
        priority: Priority,
        response_due: Timestamp,
        waiting_since: Timestamp,
    ) {
        let place = self.stand(code, &id, priority, response_due, waiting_since, true);
        self.mark_changed(&id, place);
        self.place.insert(code, (id, place));
    }

    /// Puts `code` in line in queue `id` as offline: shown in its place, never handed out,
    /// and behind nobody's position (moving it if it was online).
    pub fn push_away(
        &mut self,
        code: SessionCode,
        id: QueueId,
        priority: Priority,
        response_due: Timestamp,
        waiting_since: Timestamp,
    ) {
        let place = self.stand(code, &id, priority, response_due, waiting_since, false);
        self.away_place.insert(code, (id, place));
        // Offline, it has no position; back online, it is told its place afresh.
        self.told.remove(&code);
    }

    /// Takes `code` out of wherever it stands and stands it in line `id`, online or away,
    /// at its place: its first arrival number, kept for as long as the case is open.
    fn stand(
        &mut self,
        code: SessionCode,
        id: &QueueId,
        priority: Priority,
        response_due: Timestamp,
        waiting_since: Timestamp,
        online: bool,
    ) -> Place {
        self.take_out(code);
        self.version += 1;
        let arrivals = &mut self.arrivals;
        let arrival = *self.arrival.entry(code).or_insert_with(|| {
            *arrivals += 1;
            *arrivals
        });
        let place = Place {
            priority,
            response_due,
            waiting_since,
            arrival,
        };
        let lines = if online {
            &mut self.lines
        } else {
            &mut self.away
        };
        lines
            .entry(id.clone())
            .or_default()
            .order
            .insert(place, code);
        place
    }

    /// Takes `code` out of line (online or away); no-op if it is not there.
    pub fn remove(&mut self, code: SessionCode) {
        self.take_out(code);
        self.told.remove(&code);
    }

    /// Takes `code` out of line, remembering what its customer was told: [`Queue::stand`]
    /// puts it back at once.
    fn take_out(&mut self, code: SessionCode) {
        if let Some((id, place)) = self.away_place.remove(&code) {
            if let Some(line) = self.away.get_mut(&id) {
                line.order.remove(&place);
                if line.order.is_empty() {
                    self.away.remove(&id);
                }
            }
            self.version += 1;
        }
        if let Some((id, place)) = self.place.remove(&code) {
            if let Some(line) = self.lines.get_mut(&id) {
                line.order.remove(&place);
                if line.order.is_empty() {
                    self.lines.remove(&id);
                }
            }
            self.mark_changed(&id, place);
            self.version += 1;
        }
    }

    fn mark_changed(&mut self, id: &QueueId, place: Place) {
        match self.changed_from.get_mut(id) {
            Some(from) => *from = (*from).min(place),
            None => {
                self.changed_from.insert(id.clone(), place);
            }
        }
    }

    /// `code`'s party has just been told it is number `position` in a reply (a new SOS, a
    /// join): [`Queue::take_moved`] does not tell it again until it moves, and unless a
    /// case ahead of it also changed, starts behind it, so a new arrival at the back costs
    /// no message at all.
    pub fn told(&mut self, code: SessionCode, position: u32) {
        let Some((id, place)) = self.place.get(&code) else {
            return;
        };
        self.told.insert(code, position);
        if self.changed_from.get(id) != Some(place) {
            return;
        }
        let next = self.lines.get(id).and_then(|line| {
            line.order
                .range((
                    std::ops::Bound::Excluded(*place),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .map(|(next, _)| *next)
        });
        match next {
            Some(next) => {
                self.changed_from.insert(id.clone(), next);
            }
            None => {
                self.changed_from.remove(id);
            }
        }
    }

    /// What changed since the last call: every waiting case whose position is not the one
    /// its customer was last told, with its position now (which counts as told from then
    /// on). Only cases at or behind the earliest place where a case went in or out of
    /// their line are looked at, so it costs those cases, not the whole queue: a new
    /// arrival at the back costs one. A case taken out and put back at the same position
    /// (README: a waiting customer is told its position whenever it changes) is not
    /// reported.
    pub fn take_moved(&mut self) -> Vec<(SessionCode, u32)> {
        let mut moved = Vec::new();
        for (id, from) in std::mem::take(&mut self.changed_from) {
            let Some(line) = self.lines.get(&id) else {
                continue;
            };
            let behind = line.order.range(from..).count();
            let ahead = line.order.len() - behind;
            for (i, (_, code)) in line.order.range(from..).enumerate() {
                let position = (ahead + i + 1) as u32;
                if self.told.insert(*code, position) != Some(position) {
                    moved.push((*code, position));
                }
            }
        }
        moved
    }

    /// Forgets `code` entirely (its case closed, expired or was deleted).
    pub fn forget(&mut self, code: SessionCode) {
        self.remove(code);
        self.arrival.remove(&code);
    }

    /// A number that changes whenever any queue does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Marks that what the queue shows changed while nobody moved (a waiting customer's
    /// new message), so staff watching it are sent a fresh page.
    pub fn touch(&mut self) {
        self.version += 1;
    }

    /// Whether `code` waits in a line, its customer online or not.
    pub fn contains(&self, code: SessionCode) -> bool {
        self.place.contains_key(&code) || self.away_place.contains_key(&code)
    }

    /// The case the next pull from these queues takes.
    pub fn front_among(&self, ids: &[QueueId]) -> Option<SessionCode> {
        ids.iter()
            .filter_map(|id| self.lines.get(id)?.order.iter().next())
            .min_by_key(|(place, _)| **place)
            .map(|(_, code)| *code)
    }

    /// The case the next pull from any queue would take (for tests and admins).
    pub fn front(&self) -> Option<SessionCode> {
        self.lines
            .values()
            .filter_map(|line| line.order.iter().next())
            .min_by_key(|(place, _)| **place)
            .map(|(_, code)| *code)
    }

    /// The queue `code` waits in.
    pub fn queue_of(&self, code: SessionCode) -> Option<&QueueId> {
        self.place.get(&code).map(|(id, _)| id)
    }

    /// 1-based position of `code` in its own queue, if it is waiting.
    ///
    /// Walks from both ends of the line at once and stops at whichever reaches `code`
    /// first, so it costs the distance to the nearer end: a new SOS case, which lands at
    /// (or near) the back, is placed in O(log n) instead of counting everyone before it.
    pub fn position(&self, code: SessionCode) -> Option<u32> {
        let (id, place) = self.place.get(&code)?;
        let line = self.lines.get(id)?;
        let mut before = line.order.range(..*place);
        let mut after = line.order.range(*place..).skip(1);
        let mut steps = 0usize;
        loop {
            if before.next().is_none() {
                return Some(steps as u32 + 1);
            }
            if after.next().is_none() {
                let behind = steps;
                return Some((line.order.len() - behind) as u32);
            }
            steps += 1;
        }
    }

    /// How many online cases of line `id` stand at or before `place` (a page cursor's: the
    /// last case shown, which may have left the line since): what the positions in that
    /// line on the page after it start from. Like [`Queue::position`], it counts from both
    /// ends of the line at once and stops at the nearer one, so it costs the distance from
    /// `place` to the nearer end.
    pub fn up_to(&self, id: &QueueId, place: Place) -> u32 {
        let Some(line) = self.lines.get(id) else {
            return 0;
        };
        let mut before = line.order.range(..=place);
        let mut behind = line.order.range((Bound::Excluded(place), Bound::Unbounded));
        let mut steps = 0usize;
        loop {
            if before.next().is_none() {
                return steps as u32;
            }
            if behind.next().is_none() {
                return (line.order.len() - steps) as u32;
            }
            steps += 1;
        }
    }

    /// Waiting cases of the queues `ids` (every queue with `None`) merged in pull order,
    /// starting right after `after`, the offline ones among them when `with_away`. Lazy: a
    /// page of k entries costs k steps (times the log of the number of queues), not the
    /// length of the queue.
    pub fn walk(&self, ids: Option<&[QueueId]>, after: Option<Place>, with_away: bool) -> Walk<'_> {
        let mut lines = pick(&self.lines, ids);
        if with_away {
            lines.extend(pick(&self.away, ids));
        }
        let start = match after {
            Some(place) => Bound::Excluded(place),
            None => Bound::Unbounded,
        };
        let mut ranges: Vec<_> = lines
            .into_iter()
            .map(|line| line.order.range((start, Bound::Unbounded)))
            .collect();
        let mut heads = BinaryHeap::new();
        for (i, range) in ranges.iter_mut().enumerate() {
            if let Some((place, code)) = range.next() {
                heads.push(Reverse((*place, *code, i)));
            }
        }
        Walk { ranges, heads }
    }

    /// How many offline cases wait in the queues `ids` (every queue with `None`).
    pub fn count_away(&self, ids: Option<&[QueueId]>) -> usize {
        match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.away.get(id))
                .map(|line| line.order.len())
                .sum(),
            None => self.away_place.len(),
        }
    }

    /// How many online cases wait in the queues `ids` (every queue with `None`).
    pub fn count(&self, ids: Option<&[QueueId]>) -> usize {
        match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.lines.get(id))
                .map(|line| line.order.len())
                .sum(),
            None => self.place.len(),
        }
    }

    /// Waiting cases of these queues merged in pull order.
    pub fn among(&self, ids: &[QueueId]) -> Vec<SessionCode> {
        let mut merged: Vec<(Place, SessionCode)> = ids
            .iter()
            .filter_map(|id| self.lines.get(id))
            .flat_map(|line| line.order.iter().map(|(place, code)| (*place, *code)))
            .collect();
        merged.sort_unstable();
        merged.into_iter().map(|(_, code)| code).collect()
    }

    /// Every waiting case of every queue, merged in pull order.
    pub fn iter(&self) -> impl Iterator<Item = SessionCode> {
        let mut merged: Vec<(Place, SessionCode)> = self
            .place
            .iter()
            .map(|(code, (_, place))| (*place, *code))
            .collect();
        merged.sort_unstable();
        merged.into_iter().map(|(_, code)| code)
    }

    /// Every waiting case with its queue and position in it.
    pub fn positions(&self) -> Vec<(SessionCode, u32)> {
        self.lines
            .values()
            .flat_map(|line| {
                line.order
                    .values()
                    .enumerate()
                    .map(|(i, code)| (*code, i as u32 + 1))
            })
            .collect()
    }

    /// Number of waiting cases in all queues.
    pub fn len(&self) -> usize {
        self.place.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.place.is_empty()
    }
}

/// The lines of `ids` (all with `None`) among `lines`.
fn pick<'a>(lines: &'a HashMap<QueueId, Line>, ids: Option<&[QueueId]>) -> Vec<&'a Line> {
    match ids {
        Some(ids) => ids.iter().filter_map(|id| lines.get(id)).collect(),
        None => lines.values().collect(),
    }
}

/// Waiting cases of several lines in pull order (see [`Queue::walk`]).
pub struct Walk<'a> {
    ranges: Vec<btree_map::Range<'a, Place, SessionCode>>,
    heads: BinaryHeap<Reverse<(Place, SessionCode, usize)>>,
}

impl Iterator for Walk<'_> {
    type Item = (Place, SessionCode);

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((place, code, line)) = self.heads.pop()?;
        if let Some((next_place, next_code)) = self.ranges[line].next() {
            self.heads.push(Reverse((*next_place, *next_code, line)));
        }
        Some((place, code))
    }
}

// The tests read the lines directly, so they live in a child module.
#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
