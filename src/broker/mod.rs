//! The broker core: cases, session codes, the queue, the lifecycle and expiry, as a pure
//! state machine.
//!
//! Nothing in here touches a socket, a disk or a clock. Every command takes the current
//! time as an argument and pushes onto an `out` list the [`Effect`]s the async shell must
//! carry out (persist, notify, pair, disconnect), in order. A refused command returns an
//! error and pushes nothing, so "an illegal transition changes nothing" holds by
//! construction: every method checks first and mutates after.
//!
//! The commands live by phase of a case's life: `intake.rs` (SOS, create, join),
//! `pairing.rs` (pull, connect, assign, transfer, escalate, seating), `presence.rs`
//! (departures, takeovers, releases), `ending.rs` (close, delete, expiry) and `views.rs`
//! (what parties and metrics see). This file holds the types and the `Broker` itself.

mod actor;
mod attachments;
mod case;
mod codes;
mod deadlines;
mod ending;
mod error;
mod homing;
mod intake;
mod messages;
mod notes;
mod pairing;
mod presence;
mod queue;
mod selection;
mod stats;
mod traffic;
mod views;

#[cfg(test)]
mod priority_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sosq::protocol::{CaseInfo, CaseState, Event, HistoryKind, Priority, Timestamp};
use sosq::SessionCode;

pub use actor::{Actor, AuditEntry};
pub use attachments::{
    clean_name, may_begin_accepted, sniff_type, AttachmentBytes, NewAttachment, StoredAttachment,
    DEFAULT_MAX_ATTACHMENTS_PER_CASE, DEFAULT_MAX_ATTACHMENT_BYTES, TEXT_TYPE,
};
pub use case::{Case, CaseRecord, ExpertSeat, PartyId, FOLD_MARK, MAX_HISTORY_ENTRIES};
pub use codes::{hash_secret, secret_matches, CodeBook, SecureRandom};
pub use deadlines::Deadlines;
pub use error::{BrokerError, Searched};
pub use intake::SosRequest;
pub use messages::MAX_MESSAGE_CHARS;
pub use notes::{MAX_NOTE_CHARS, NOTE_ROOM};
pub use pairing::{PullRequest, EXPERT_CONNECTED};
pub use presence::Departure;
pub use queue::{Queue, QueueId, GENERAL};
pub use selection::CaseSelection;
pub use stats::{priority_index, Histogram, Stats, RESPONSE_BUCKETS};
pub use traffic::SessionTraffic;
pub use views::{CustomerFollow, QueueViewer};

/// The longest customer name or expert name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest case description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// The knobs of the core.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// How long after creation an open case expires.
    pub case_ttl: Duration,
    /// The most open cases held at once; keeps the code space sparse and memory bounded.
    pub max_open_cases: usize,
    /// How soon an expert should pick up a waiting SOS case, by priority.
    pub response_targets: ResponseTargets,
    /// The largest file a customer may attach, in bytes.
    pub max_attachment_bytes: u64,
    /// The most files a customer may attach to one case.
    pub max_attachments_per_case: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            case_ttl: Duration::from_secs(24 * 60 * 60),
            max_open_cases: 200_000,
            response_targets: ResponseTargets::default(),
            max_attachment_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            max_attachments_per_case: DEFAULT_MAX_ATTACHMENTS_PER_CASE,
        }
    }
}

/// First-response targets per priority: a live queue's answer to the 2h/4h/8h severity
/// targets of support contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTargets {
    /// For `critical` cases.
    pub critical: Duration,
    /// For `high` cases.
    pub high: Duration,
    /// For `normal` cases.
    pub normal: Duration,
    /// For `low` cases.
    pub low: Duration,
}

impl Default for ResponseTargets {
    fn default() -> Self {
        ResponseTargets {
            critical: Duration::from_secs(2 * 60),
            high: Duration::from_secs(5 * 60),
            normal: Duration::from_secs(15 * 60),
            low: Duration::from_secs(60 * 60),
        }
    }
}

impl ResponseTargets {
    /// The target for `priority`.
    pub fn of(&self, priority: Priority) -> Duration {
        match priority {
            Priority::Critical => self.critical,
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }
}

/// What the shell must do because of a command, in this order.
// Effects live from a command to its application; boxing records would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Make this change durable before anyone is told about it.
    Persist(Persist),
    /// Push an event to a party.
    Notify {
        /// Who.
        party: PartyId,
        /// What.
        event: Event,
    },
    /// Start relaying streams between the two parties of a case.
    Pair {
        /// The case.
        code: SessionCode,
        /// The customer's connection.
        customer: PartyId,
        /// The expert's connection.
        expert: PartyId,
    },
    /// Stop relaying for a case.
    Unpair {
        /// The case.
        code: SessionCode,
        /// Let what was already relayed run to its end (a party left on purpose, after
        /// finishing what it sent) instead of resetting every stream at once (the case
        /// ended, or a party's connection was lost, so a reader never takes cut data for
        /// complete).
        drain: bool,
    },
    /// Close a party's connection, telling it why.
    Disconnect {
        /// Who.
        party: PartyId,
        /// QUIC application close code (see [`sosq::protocol::close_code`]).
        code: u32,
        /// One line for the user.
        reason: String,
    },
}

/// A change to the case store.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    /// Insert or replace this case.
    Save(CaseRecord),
    /// Delete these cases (absent codes are ignored).
    Delete(Vec<SessionCode>),
    /// Delete every case the selection matches.
    DeleteWhere(CaseSelection),
    /// Append this staff note to the history of a stored case the core does not hold (a
    /// closed or expired one), after whatever history the store holds then; nothing if
    /// the case is no longer stored, or its history holds [`MAX_HISTORY_ENTRIES`] already.
    /// An append, not a save of the record read: see `notes.rs`.
    Note {
        /// The case.
        code: SessionCode,
        /// The note's entry (its actor stamped by [`Broker::attribute`]).
        entry: sosq::protocol::HistoryEntry,
    },
    /// Keep this attachment of an open case, whose record (saved just before, in the same
    /// submission) counts it; nothing if the case is no longer stored. Deleting the case
    /// deletes its attachments.
    Attach {
        /// The case.
        code: SessionCode,
        /// The file and what staff see of it.
        attachment: StoredAttachment,
    },
    /// Append to the audit log; the store records its `count` (cases removed by earlier
    /// steps of the same delete, else 0) plus the number of cases the deletes earlier in the
    /// same submission removed.
    Audit(AuditEntry),
}

/// A party's place in a case after it attached.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    /// The case.
    pub case: CaseInfo,
    /// The customer's resume secret, handed out the first time a customer attaches.
    pub resume_secret: Option<String>,
    /// Position in the queue, for a waiting SOS case.
    pub position: Option<u32>,
}

/// Who asks to close a case.
#[derive(Debug, Clone, Copy)]
pub enum Closer<'a> {
    /// An expert, by name.
    Expert(&'a str),
    /// A customer: attached on this connection, or proving ownership with the secret.
    Customer {
        /// The customer's connection.
        party: PartyId,
        /// The resume secret, when closing from another connection.
        secret: Option<&'a str>,
    },
}

/// The broker core. See the module documentation.
pub struct Broker {
    config: BrokerConfig,
    cases: HashMap<SessionCode, Case>,
    parties: HashMap<PartyId, SessionCode>,
    codes: CodeBook,
    /// Waiting SOS cases: online ones `pull` hands out, offline ones shown in their place.
    queue: Queue,
    deadlines: Deadlines,
    /// Experts whose `pull --wait` found the queue empty, first come first served.
    idle_experts: VecDeque<ExpertSeat>,
    stats: Stats,
}

impl Broker {
    /// An empty broker drawing codes and secrets from `rng`.
    pub fn new(config: BrokerConfig, rng: Box<dyn SecureRandom>) -> Self {
        Broker {
            config,
            cases: HashMap::new(),
            parties: HashMap::new(),
            codes: CodeBook::new(rng),
            queue: Queue::default(),
            deadlines: Deadlines::default(),
            idle_experts: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Replaces the configuration (a reload of the daemon's settings). It applies to what
    /// happens from now on: cases keep the expiry and response deadline they were given,
    /// new cases and new waits get the new ones, and `max_open_cases` is checked at the
    /// next request (cases already over a lowered limit stay).
    pub fn set_config(&mut self, config: BrokerConfig) {
        self.config = config;
    }

    /// Takes back a case from the store at start-up. Open cases come back with nobody
    /// attached; their deadlines are armed (a passed one fires on the next `expire_due`).
    pub fn restore(&mut self, record: CaseRecord) {
        self.codes.reserve(record.code);
        if record.state.is_open() {
            self.deadlines.set(record.code, record.expires_at);
            self.cases.insert(
                record.code,
                Case {
                    record,
                    customer: None,
                    expert: None,
                },
            );
        }
    }

    /// Marks a stored code as held, so it is never handed out again (start-up loads every
    /// stored code this way, without loading the closed cases themselves).
    pub fn reserve_code(&mut self, code: SessionCode) {
        self.codes.reserve(code);
    }

    /// After a restart nobody is connected: a case that was in progress goes back to
    /// `pending` until its partners reconnect (the customer with its resume secret, the
    /// expert by code). Call once, after every open case is restored.
    pub fn resume_after_restart(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let mut interrupted: Vec<SessionCode> = self
            .cases
            .values()
            .filter(|case| case.record.state == CaseState::InProgress)
            .map(|case| case.record.code)
            .collect();
        interrupted.sort_unstable();
        for code in interrupted {
            let case = self.case_mut(code);
            case.record
                .transition(
                    CaseState::Pending,
                    now,
                    HistoryKind::Restarted,
                    "sosqd restarted; waiting for the partners to reconnect",
                    "move to pending",
                )
                .expect("in progress may always go back to pending");
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
        }
        // Every waiting SOS case takes its place again, offline until its customer is back,
        // in the order the customers first asked (ties by code, so restarts agree).
        let mut waiting: Vec<(Timestamp, SessionCode)> = self
            .cases
            .values()
            .filter(|case| case.is_waiting_offline())
            .map(|case| {
                let record = &case.record;
                (
                    record.waiting_since.unwrap_or(record.created_at),
                    record.code,
                )
            })
            .collect();
        waiting.sort_unstable();
        for (_, code) in waiting {
            self.refresh_queue(code, now, out);
        }
    }

    /// Names `actor` on every history entry the command just wrote: in the records it asks
    /// the store to save, and in the open cases the core keeps.
    pub fn attribute(&mut self, actor: &Actor, out: &mut [Effect]) {
        for effect in out.iter_mut() {
            match effect {
                Effect::Persist(Persist::Save(record)) => {
                    actor.stamp(record);
                    if let Some(case) = self.cases.get_mut(&record.code) {
                        actor.stamp(&mut case.record);
                    }
                }
                Effect::Persist(Persist::Note { entry, .. }) => actor.stamp_entry(entry),
                _ => {}
            }
        }
    }

    /// Frees codes whose cases the store has deleted.
    pub fn release_codes(&mut self, codes: &[SessionCode]) {
        for code in codes {
            if !self.cases.contains_key(code) {
                self.codes.release(*code);
            }
        }
    }

    /// When the next open case expires, on the monotonic clock (see
    /// [`Broker::set_clock_skew`]); the shell sleeps until then.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.next()
    }

    /// Tells the core how far the wall clock (the `now` every command gets, which goes into
    /// histories) is ahead of the monotonic clock, in milliseconds. Expiry runs on the
    /// monotonic clock, so a stepped system clock never expires a case early or late; the
    /// shell calls this before every command (0 until the clock is stepped).
    pub fn set_clock_skew(&mut self, skew_ms: i64) {
        self.deadlines.set_clock_skew(skew_ms);
    }

    /// Number of open cases.
    pub fn open_cases(&self) -> usize {
        self.cases.len()
    }

    /// Number of session codes held (open and stored cases).
    pub fn codes_held(&self) -> usize {
        self.codes.len()
    }

    /// Counters for the metrics endpoint.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The open case with this code, if any.
    pub fn case(&self, code: SessionCode) -> Option<&Case> {
        self.cases.get(&code)
    }

    /// The case a party is attached to.
    pub fn attached_case(&self, party: PartyId) -> Option<SessionCode> {
        self.parties.get(&party).copied()
    }

    // ----- internals -------------------------------------------------------------------

    /// Refuses a party that already sits in a case or waits for one: one connection is
    /// one party in at most one case.
    fn ensure_unattached(&self, party: PartyId) -> Result<(), BrokerError> {
        if let Some(code) = self.parties.get(&party) {
            return Err(BrokerError::AlreadyAttached(*code));
        }
        if self.idle_experts.iter().any(|seat| seat.party == party) {
            return Err(BrokerError::AlreadyWaiting);
        }
        Ok(())
    }

    /// Parses a typed code and finds its open case.
    fn open_code(&self, typed: &str) -> Result<SessionCode, BrokerError> {
        let code: SessionCode = typed.parse()?;
        if self.cases.contains_key(&code) {
            Ok(code)
        } else {
            Err(BrokerError::UnknownCode(code))
        }
    }

    fn check_customer_owns(
        &self,
        party: PartyId,
        code: SessionCode,
        secret: Option<&str>,
    ) -> Result<(), BrokerError> {
        let case = &self.cases[&code];
        let attached_here = case.customer == Some(party);
        let proves_it = match (secret, &case.record.resume_secret_hash) {
            (Some(secret), Some(hash)) => secret_matches(secret, hash),
            _ => false,
        };
        if attached_here || proves_it {
            Ok(())
        } else {
            Err(BrokerError::NotYourCase(code))
        }
    }

    fn case_mut(&mut self, code: SessionCode) -> &mut Case {
        self.cases
            .get_mut(&code)
            .expect("callers look the case up first")
    }
}

/// "24h", "90s": a duration as people write it.
pub fn humanize(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
