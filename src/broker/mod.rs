//! The broker core: cases, session codes, the queue, the lifecycle and expiry, as a pure
//! state machine.
//!
//! Nothing in here touches a socket, a disk or a clock. Every command takes the current
//! time as an argument and pushes onto an `out` list the [`Effect`]s the async shell must
//! carry out (persist, notify, pair, disconnect), in order. A refused command returns an
//! error and pushes nothing, so "an illegal transition changes nothing" holds by
//! construction: every method checks first and mutates after.

mod case;
mod codes;
mod deadlines;
mod error;
mod queue;
mod selection;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sosq::protocol::{
    close_code, CaseInfo, CaseOrigin, CaseState, Event, QueueEntry, Role, Timestamp,
};
use sosq::SessionCode;

pub use case::{Case, CaseRecord, ExpertSeat, PartyId};
pub use codes::{hash_secret, secret_matches, CodeBook, SecureRandom};
pub use deadlines::Deadlines;
pub use error::BrokerError;
pub use queue::Queue;
pub use selection::CaseSelection;

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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            case_ttl: Duration::from_secs(24 * 60 * 60),
            max_open_cases: 200_000,
        }
    }
}

/// What the shell must do because of a command, in this order.
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
    /// Stop relaying for a case and end its streams.
    Unpair {
        /// The case.
        code: SessionCode,
    },
    /// Close a party's connection, telling it why.
    Disconnect {
        /// Who.
        party: PartyId,
        /// QUIC application close code (see [`close_code`]).
        code: u32,
        /// One line for the user.
        reason: String,
    },
}

/// A change to the case store.
#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    /// Insert or replace this case.
    Save(CaseRecord),
    /// Delete these cases (absent codes are ignored).
    Delete(Vec<SessionCode>),
    /// Delete every case the selection matches.
    DeleteWhere(CaseSelection),
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
    queue: Queue,
    deadlines: Deadlines,
    /// Experts whose `pull --wait` found the queue empty, first come first served.
    idle_experts: VecDeque<ExpertSeat>,
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
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
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

    /// Frees codes whose cases the store has deleted.
    pub fn release_codes(&mut self, codes: &[SessionCode]) {
        for code in codes {
            if !self.cases.contains_key(code) {
                self.codes.release(*code);
            }
        }
    }

    /// When the next open case expires; the shell sleeps until then.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.next()
    }

    /// Number of open cases.
    pub fn open_cases(&self) -> usize {
        self.cases.len()
    }

    /// Number of session codes held (open and stored cases).
    pub fn codes_held(&self) -> usize {
        self.codes.len()
    }

    /// The open case with this code, if any.
    pub fn case(&self, code: SessionCode) -> Option<&Case> {
        self.cases.get(&code)
    }

    /// The case a party is attached to.
    pub fn attached_case(&self, party: PartyId) -> Option<SessionCode> {
        self.parties.get(&party).copied()
    }

    /// The customer's SOS button: a new case, customer attached, `pending`, in the queue
    /// (or straight to an expert who is waiting for one).
    pub fn open_sos(
        &mut self,
        now: Timestamp,
        party: PartyId,
        customer: &str,
        description: &str,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        self.ensure_unattached(party)?;
        let customer = checked_name("customer name", customer)?;
        let description = checked_description(description)?;
        let code = self.new_case(now, CaseOrigin::Sos, customer, description)?;
        let secret = self.codes.resume_secret();
        let case = self.case_mut(code);
        case.record.resume_secret_hash = Some(hash_secret(&secret));
        case.record.waiting_since = Some(now);
        let event = format!("customer {} asked for help (SOS)", case.record.customer);
        self.seat_customer(now, code, party, event, out);
        Ok(self.attached(code, Some(secret)))
    }

    /// An expert creates a case by hand; it is `new` until someone attaches.
    pub fn create(
        &mut self,
        now: Timestamp,
        expert: &str,
        customer: &str,
        description: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let customer = checked_name("customer name", customer)?;
        let description = checked_description(description)?;
        let code = self.new_case(
            now,
            CaseOrigin::CreatedByExpert(expert.to_string()),
            customer,
            description,
        )?;
        let case = self.case_mut(code);
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        Ok(case.info())
    }

    /// A customer attaches by code: the first customer of an expert-created case binds it
    /// (and gets a resume secret); anyone after that needs the secret.
    pub fn join(
        &mut self,
        now: Timestamp,
        party: PartyId,
        code: &str,
        customer: &str,
        secret: Option<&str>,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        self.ensure_unattached(party)?;
        let customer = checked_name("customer name", customer)?;
        let code = self.open_code(code)?;
        let case = &self.cases[&code];
        if case.customer.is_some() {
            return Err(BrokerError::CustomerAlreadyConnected(code));
        }
        let new_secret = match (&case.record.resume_secret_hash, secret) {
            (Some(hash), Some(given)) if secret_matches(given, hash) => None,
            (Some(_), _) => return Err(BrokerError::NotYourCase(code)),
            (None, _) => Some(self.codes.resume_secret()),
        };
        let case = self.case_mut(code);
        let event = match &new_secret {
            Some(secret) => {
                case.record.resume_secret_hash = Some(hash_secret(secret));
                format!("customer {customer} joined")
            }
            None => format!("customer {customer} came back"),
        };
        self.seat_customer(now, code, party, event, out);
        Ok(self.attached(code, new_secret))
    }

    /// An expert takes the oldest waiting case. With `wait` and an empty queue the expert
    /// waits (`Ok(None)`) and is paired with the next customer who arrives.
    pub fn pull(
        &mut self,
        now: Timestamp,
        party: PartyId,
        expert: &str,
        wait: bool,
        out: &mut Vec<Effect>,
    ) -> Result<Option<CaseInfo>, BrokerError> {
        self.ensure_unattached(party)?;
        let seat = ExpertSeat {
            party,
            name: expert.to_string(),
        };
        match self.queue.front() {
            Some(code) => {
                self.seat_expert(now, code, seat, out);
                Ok(Some(self.cases[&code].info()))
            }
            None if wait => {
                self.idle_experts.push_back(seat);
                Ok(None)
            }
            None => Err(BrokerError::QueueEmpty),
        }
    }

    /// An expert attaches to a case by its code.
    pub fn connect(
        &mut self,
        now: Timestamp,
        party: PartyId,
        expert: &str,
        code: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        self.ensure_unattached(party)?;
        let code = self.open_code(code)?;
        if self.cases[&code].expert.is_some() {
            return Err(BrokerError::ExpertAlreadyConnected(code));
        }
        let seat = ExpertSeat {
            party,
            name: expert.to_string(),
        };
        self.seat_expert(now, code, seat, out);
        Ok(self.cases[&code].info())
    }

    /// Closes a case: by any expert, or by its own customer.
    pub fn close(
        &mut self,
        now: Timestamp,
        closer: Closer<'_>,
        code: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(code)?;
        let who = match closer {
            Closer::Expert(name) => format!("expert {name}"),
            Closer::Customer { party, secret } => {
                self.check_customer_owns(party, code, secret)?;
                "the customer".to_string()
            }
        };
        let mut case = self.take_case(code);
        case.record
            .transition(CaseState::Closed, now, format!("closed by {who}"), "close")
            .expect("open cases may always close");
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        self.end_sessions(&case, out, |party| Effect::Notify {
            party,
            event: Event::SessionEnded {
                code,
                reason: format!("case {code} was closed by {who}"),
            },
        });
        Ok(case.info())
    }

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

    /// Admin bulk delete, open-case side: ends the sessions of the open cases selected and
    /// asks the store to delete every selected case. Codes are released once the store
    /// reports which cases it deleted ([`Broker::release_codes`]).
    pub fn delete(
        &mut self,
        now: Timestamp,
        admin: &str,
        selection: Persist,
        out: &mut Vec<Effect>,
    ) -> Result<(), BrokerError> {
        let doomed: Vec<SessionCode> = match &selection {
            Persist::Delete(codes) => {
                let mut open: Vec<SessionCode> = codes
                    .iter()
                    .copied()
                    .filter(|code| self.cases.contains_key(code))
                    .collect();
                // An admin may name a code twice; end its session once.
                open.sort_unstable();
                open.dedup();
                open
            }
            Persist::DeleteWhere(filter) => self
                .cases
                .values()
                .filter(|case| filter.matches(&case.record))
                .map(|case| case.record.code)
                .collect(),
            Persist::Save(_) => {
                return Err(BrokerError::InvalidInput(
                    "a delete needs codes or a filter".into(),
                ))
            }
        };
        out.push(Effect::Persist(selection));
        for code in doomed {
            let mut case = self.take_case(code);
            case.record.note(now, format!("deleted by admin {admin}"));
            let reason = format!("case {code} was deleted by an administrator");
            self.end_sessions(&case, out, |party| Effect::Disconnect {
                party,
                code: close_code::DELETED,
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// A party's connection is gone: free its seat; a case with both partners drops back
    /// to `pending`, and an SOS customer whose expert left goes back in the queue.
    pub fn disconnect(&mut self, now: Timestamp, party: PartyId, out: &mut Vec<Effect>) {
        self.idle_experts.retain(|seat| seat.party != party);
        let Some(code) = self.parties.remove(&party) else {
            return;
        };
        let Some(case) = self.cases.get_mut(&code) else {
            return;
        };
        let was_paired = case.record.state == CaseState::InProgress;
        let (event, peer, peer_reason) = if case.customer == Some(party) {
            case.customer = None;
            let peer = case.expert.as_ref().map(|seat| seat.party);
            (
                "customer disconnected".to_string(),
                peer,
                "the customer disconnected; waiting for them to come back".to_string(),
            )
        } else {
            let name = case.expert.take().map(|seat| seat.name).unwrap_or_default();
            (
                format!("expert {name} disconnected"),
                case.customer,
                format!("expert {name} disconnected; you are waiting for an expert again"),
            )
        };
        if was_paired {
            case.record
                .transition(CaseState::Pending, now, event, "move to pending")
                .expect("in progress may always go back to pending");
            out.push(Effect::Unpair { code });
            if let Some(peer) = peer {
                out.push(Effect::Notify {
                    party: peer,
                    event: Event::PeerLeft {
                        code,
                        reason: peer_reason,
                    },
                });
            }
        } else {
            case.record.note(now, event);
        }
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        self.refresh_queue(code, now, out);
    }

    /// Expires every open case whose deadline is at or before `now`: its code stops working
    /// and its parties are disconnected with the reason.
    pub fn expire_due(&mut self, now: Timestamp, out: &mut Vec<Effect>) -> Vec<SessionCode> {
        let due = self.deadlines.take_due(now);
        for &code in &due {
            let ttl = humanize(self.config.case_ttl);
            let mut case = self.take_case(code);
            case.record
                .transition(
                    CaseState::Expired,
                    now,
                    format!("expired: not closed within {ttl} of creation"),
                    "expire",
                )
                .expect("open cases may always expire");
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
            let reason = format!("case {code} expired: it was not closed within {ttl}");
            self.end_sessions(&case, out, |party| Effect::Disconnect {
                party,
                code: close_code::EXPIRED,
                reason: reason.clone(),
            });
        }
        due
    }

    /// The waiting cases, next first.
    pub fn queue_view(&self) -> Vec<QueueEntry> {
        self.queue
            .iter()
            .enumerate()
            .filter_map(|(i, code)| {
                let case = self.cases.get(&code)?;
                Some(QueueEntry {
                    position: i as u32 + 1,
                    code,
                    customer: case.record.customer.clone(),
                    description: case.record.description.clone(),
                    waiting_since: case.record.waiting_since.unwrap_or(case.record.created_at),
                    online: case.customer.is_some(),
                })
            })
            .collect()
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

    fn new_case(
        &mut self,
        now: Timestamp,
        origin: CaseOrigin,
        customer: String,
        description: String,
    ) -> Result<SessionCode, BrokerError> {
        if self.cases.len() >= self.config.max_open_cases {
            return Err(BrokerError::TooManyCases(self.config.max_open_cases));
        }
        let code = self.codes.issue();
        let expires_at = now.plus(self.config.case_ttl);
        let created_by = match &origin {
            CaseOrigin::Sos => format!("created by customer {customer}"),
            CaseOrigin::CreatedByExpert(expert) => format!("created by expert {expert}"),
        };
        let mut record = CaseRecord {
            code,
            origin,
            customer,
            description,
            state: CaseState::New,
            created_at: now,
            updated_at: now,
            expires_at,
            waiting_since: None,
            resume_secret_hash: None,
            history: Vec::new(),
        };
        record.note(now, created_by);
        self.deadlines.set(code, expires_at);
        self.cases.insert(
            code,
            Case {
                record,
                customer: None,
                expert: None,
            },
        );
        Ok(code)
    }

    fn case_mut(&mut self, code: SessionCode) -> &mut Case {
        self.cases
            .get_mut(&code)
            .expect("callers look the case up first")
    }

    fn seat_customer(
        &mut self,
        now: Timestamp,
        code: SessionCode,
        party: PartyId,
        event: String,
        out: &mut Vec<Effect>,
    ) {
        self.parties.insert(party, code);
        let case = self.case_mut(code);
        case.customer = Some(party);
        case.record.note(now, event);
        self.after_seating(now, code, out);
    }

    fn seat_expert(
        &mut self,
        now: Timestamp,
        code: SessionCode,
        seat: ExpertSeat,
        out: &mut Vec<Effect>,
    ) {
        self.parties.insert(seat.party, code);
        let case = self.case_mut(code);
        case.record
            .note(now, format!("expert {} connected", seat.name));
        case.expert = Some(seat);
        self.after_seating(now, code, out);
    }

    /// After someone sat down: `new` becomes `pending`; both seats taken becomes
    /// `in_progress` and pairs the two; the queue is brought up to date.
    fn after_seating(&mut self, now: Timestamp, code: SessionCode, out: &mut Vec<Effect>) {
        let case = self.case_mut(code);
        if case.record.state == CaseState::New {
            case.record
                .transition(
                    CaseState::Pending,
                    now,
                    "session started, waiting for the partner",
                    "start",
                )
                .expect("new may always become pending");
        }
        if let (Some(customer), Some(expert)) = (case.customer, case.expert.clone()) {
            case.record
                .transition(
                    CaseState::InProgress,
                    now,
                    "both partners connected",
                    "start the session of",
                )
                .expect("pending may always become in progress");
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
            out.push(Effect::Pair {
                code,
                customer,
                expert: expert.party,
            });
            out.push(Effect::Notify {
                party: customer,
                event: Event::Paired {
                    code,
                    peer_role: Role::Expert,
                    peer_name: expert.name.clone(),
                },
            });
            let customer_name = case.record.customer.clone();
            out.push(Effect::Notify {
                party: expert.party,
                event: Event::Paired {
                    code,
                    peer_role: Role::Customer,
                    peer_name: customer_name,
                },
            });
        } else {
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
        }
        self.refresh_queue(code, now, out);
    }

    /// Puts a case in or out of the queue to match its state, and hands a newly waiting
    /// case to an expert who is already waiting for one.
    fn refresh_queue(&mut self, code: SessionCode, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(case) = self.cases.get(&code) else {
            self.queue.remove(code);
            return;
        };
        if !case.is_waiting() {
            self.queue.remove(code);
            return;
        }
        match self.idle_experts.pop_front() {
            Some(seat) => {
                self.queue.remove(code);
                self.seat_expert(now, code, seat, out);
            }
            None => self.queue.push(
                code,
                case.record.waiting_since.unwrap_or(case.record.created_at),
            ),
        }
    }

    /// Removes an open case from every live structure (the store keeps it).
    fn take_case(&mut self, code: SessionCode) -> Case {
        let case = self
            .cases
            .remove(&code)
            .expect("callers look the case up first");
        self.queue.forget(code);
        self.deadlines.clear(code);
        if let Some(party) = case.customer {
            self.parties.remove(&party);
        }
        if let Some(seat) = &case.expert {
            self.parties.remove(&seat.party);
        }
        case
    }

    /// Ends a removed case's relay and tells each attached party with `tell`.
    fn end_sessions(&self, case: &Case, out: &mut Vec<Effect>, tell: impl Fn(PartyId) -> Effect) {
        let expert = case.expert.as_ref().map(|seat| seat.party);
        if case.customer.is_some() && expert.is_some() {
            out.push(Effect::Unpair {
                code: case.record.code,
            });
        }
        for party in case.customer.into_iter().chain(expert) {
            out.push(tell(party));
        }
    }

    fn attached(&self, code: SessionCode, resume_secret: Option<String>) -> Attached {
        Attached {
            case: self.cases[&code].info(),
            resume_secret,
            position: self.queue.position(code),
        }
    }
}

fn checked_name(what: &str, name: &str) -> Result<String, BrokerError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(BrokerError::InvalidInput(format!("the {what} is empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(BrokerError::InvalidInput(format!(
            "the {what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(BrokerError::InvalidInput(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(name.to_string())
}

fn checked_description(description: &str) -> Result<String, BrokerError> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(BrokerError::InvalidInput(format!(
            "the description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(description.to_string())
}

/// "24h", "90s": a duration as people write it.
pub fn humanize(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
