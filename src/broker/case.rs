//! A service case: its durable record, who is attached to it right now, and the lifecycle
//! rules that say which state may follow which.

use serde::{Deserialize, Serialize};
use sosq::protocol::{
    CaseInfo, CaseOrigin, CaseState, HistoryEntry, HistoryKind, Priority, Timestamp,
};
use sosq::SessionCode;

use super::error::BrokerError;
use super::queue::QueueId;

/// Identifies one connected party (one QUIC connection) to the broker core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartyId(pub u64);

/// What the store keeps of a case: everything but who is connected right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// The session code, unique among all cases held.
    pub code: SessionCode,
    /// SOS button or created by an expert.
    pub origin: CaseOrigin,
    /// The customer's name.
    pub customer: String,
    /// What the customer needs help with.
    pub description: String,
    /// Current lifecycle state.
    pub state: CaseState,
    /// When the case was created.
    pub created_at: Timestamp,
    /// When the state last changed.
    pub updated_at: Timestamp,
    /// `created_at + case_ttl`: when an open case expires.
    pub expires_at: Timestamp,
    /// For SOS cases: when the customer started waiting (the queue order).
    pub waiting_since: Option<Timestamp>,
    /// The team queue the case belongs to.
    pub group: String,
    /// The expert the case is assigned to: offered to that expert only.
    pub assigned_to: Option<String>,
    /// How urgent the case is.
    pub priority: Priority,
    /// For SOS cases: `waiting_since` plus the response target of its priority.
    pub response_due: Option<Timestamp>,
    /// When an expert first connected to the customer.
    pub first_response_at: Option<Timestamp>,
    /// SHA-256 (hex) of the customer's resume secret, once a customer has attached.
    pub resume_secret_hash: Option<String>,
    /// Every transition and event, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The customer's latest message (`Request::AddMessage`), shown to staff.
    #[serde(default)]
    pub last_message: Option<String>,
    /// How many files the customer attached: the number of the latest (attachments are
    /// numbered from 1), and what the per-case cap is checked against. The files
    /// themselves are only in the store.
    #[serde(default)]
    pub attachments: u32,
}

impl CaseRecord {
    /// Whether the lifecycle allows going from the current state to `to`.
    pub fn may_become(&self, to: CaseState) -> bool {
        use CaseState::*;
        matches!(
            (self.state, to),
            (New, Pending | Closed | Expired)
                | (Pending, InProgress | Closed | Expired)
                | (InProgress, Pending | Closed | Expired)
        )
    }

    /// Moves to `to`, recording `event` (of `kind`) in the history; refuses illegal steps
    /// unchanged.
    pub fn transition(
        &mut self,
        to: CaseState,
        now: Timestamp,
        kind: HistoryKind,
        event: impl Into<String>,
        action: &'static str,
    ) -> Result<(), BrokerError> {
        if !self.may_become(to) {
            return Err(BrokerError::IllegalTransition {
                code: self.code,
                from: self.state,
                action,
            });
        }
        self.state = to;
        self.updated_at = now;
        self.note(now, kind, event);
        Ok(())
    }

    /// Records an event that does not change the state (a partner left, for instance).
    ///
    /// A history holds at most [`MAX_HISTORY_ENTRIES`]: what a party can make the daemon
    /// keep is bounded (a customer rejoining with its secret over and over costs nothing
    /// else). Past that, the last entry folds every later event into itself: it says how
    /// many were folded and what the latest was, with its time, state and actor, so the
    /// history still ends in the case's current state (its kind is [`HistoryKind::Folded`]).
    pub fn note(&mut self, now: Timestamp, kind: HistoryKind, event: impl Into<String>) {
        let mut event = event.into();
        if self.history.len() >= MAX_HISTORY_ENTRIES {
            // A staff note's words never go into a folding entry, which is not staff-only
            // (the core refuses notes before it comes to this; see `notes.rs`).
            if kind == HistoryKind::Note {
                event = "a staff note".into();
            }
            if let Some(last) = self.history.last_mut() {
                let folded = folded_count(&last.event).unwrap_or(1) + 1;
                *last = HistoryEntry {
                    at: now,
                    state: self.state,
                    kind: HistoryKind::Folded,
                    event: format!(
                        "{folded} {FOLD_MARK} (a case keeps {MAX_HISTORY_ENTRIES}); the latest: {event}"
                    ),
                    actor: None,
                    address: None,
                };
                return;
            }
        }
        self.history.push(HistoryEntry {
            at: now,
            state: self.state,
            kind,
            event,
            actor: None,
            address: None,
        });
    }

    /// The queue the case waits in while waiting: its expert's if assigned, else its team's.
    pub fn queue_id(&self) -> QueueId {
        match &self.assigned_to {
            Some(expert) => QueueId::Expert(expert.clone()),
            None => QueueId::Group(self.group.clone()),
        }
    }

    /// Whether the first response came within the target (unknown until it came).
    pub fn response_target_met(&self) -> Option<bool> {
        let due = self.response_due?;
        self.first_response_at.map(|at| at <= due)
    }

    /// The client's view of this record, with the given live presence.
    pub fn info(&self, customer_online: bool, expert: Option<String>) -> CaseInfo {
        CaseInfo {
            code: self.code,
            state: self.state,
            origin: self.origin.clone(),
            customer: self.customer.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            group: self.group.clone(),
            assigned_to: self.assigned_to.clone(),
            priority: self.priority,
            response_due: self.response_due,
            first_response_at: self.first_response_at,
            response_target_met: self.response_target_met(),
            customer_online,
            expert,
            last_message: self.last_message.clone(),
            attachments: self.attachments,
        }
    }
}

/// The most entries a case's history keeps; later events fold into the last one (see
/// [`CaseRecord::note`]). A normal case writes about ten; 256 leaves room for a long,
/// eventful one, and bounds what an open case costs in memory and on the wire.
pub const MAX_HISTORY_ENTRIES: usize = 256;

/// The words that mark a folding history entry.
pub const FOLD_MARK: &str = "events folded into this last entry";

/// How many events a folding entry holds, if `event` is one.
fn folded_count(event: &str) -> Option<u64> {
    let (count, rest) = event.split_once(' ')?;
    rest.starts_with(FOLD_MARK).then(|| count.parse().ok())?
}

/// The expert attached to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpertSeat {
    /// The expert's connection.
    pub party: PartyId,
    /// The expert's user name.
    pub name: String,
    /// The team queues the expert pulls from.
    pub groups: Vec<String>,
    /// Whether the expert took the case from the queue (`pull`) rather than by its code:
    /// a pulling expert whose customer vanishes is let go to take the next case, one who
    /// came for this case by code waits for its customer to come back.
    pub pulled: bool,
}

impl ExpertSeat {
    /// The queues this expert is offered cases from: its teams' and its own.
    pub fn queues(&self) -> Vec<QueueId> {
        self.groups
            .iter()
            .cloned()
            .map(QueueId::Group)
            .chain(std::iter::once(QueueId::Expert(self.name.clone())))
            .collect()
    }
}

/// An open case as the broker holds it: the record plus who is connected.
#[derive(Debug, Clone)]
pub struct Case {
    /// What is persisted.
    pub record: CaseRecord,
    /// The customer's connection, while connected.
    pub customer: Option<PartyId>,
    /// The expert, while connected.
    pub expert: Option<ExpertSeat>,
}

impl Case {
    /// The client's view, with live presence.
    pub fn info(&self) -> CaseInfo {
        self.record.info(
            self.customer.is_some(),
            self.expert.as_ref().map(|seat| seat.name.clone()),
        )
    }

    /// Whether this case belongs in the queue, to be handed out: an SOS case whose customer
    /// is waiting online with no expert.
    pub fn is_waiting(&self) -> bool {
        self.is_unserved_sos() && self.customer.is_some()
    }

    /// Whether this case keeps its place in the queue while its customer is offline: an SOS
    /// case with no expert whose customer dropped (or has not come back since a restart).
    /// Experts see it, marked offline; nobody can pull it until the customer is back.
    pub fn is_waiting_offline(&self) -> bool {
        self.is_unserved_sos() && self.customer.is_none()
    }

    fn is_unserved_sos(&self) -> bool {
        matches!(self.record.origin, CaseOrigin::Sos)
            && self.record.state == CaseState::Pending
            && self.expert.is_none()
    }
}
