//! The broker core: cases, session codes, the queue, the lifecycle and expiry, as a pure
//! state machine.
//!
//! Nothing in here touches a socket, a disk or a clock. Every command takes the current
//! time as an argument and pushes onto an `out` list the [`Effect`]s the async shell must
//! carry out (persist, notify, pair, disconnect), in order. A refused command returns an
//! error and pushes nothing, so "an illegal transition changes nothing" holds by
//! construction: every method checks first and mutates after.

mod actor;
mod case;
mod codes;
mod deadlines;
mod error;
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

use sosq::protocol::{
    close_code, Assignee, CaseInfo, CaseOrigin, CaseState, Event, Priority, Role, Timestamp,
};
use sosq::SessionCode;

pub use actor::{Actor, AuditEntry};
pub use case::{Case, CaseRecord, ExpertSeat, PartyId, FOLD_MARK, MAX_HISTORY_ENTRIES};
pub use codes::{hash_secret, secret_matches, CodeBook, SecureRandom};
pub use deadlines::Deadlines;
pub use error::BrokerError;
pub use presence::Departure;
pub use queue::{Queue, QueueId, GENERAL};
pub use selection::CaseSelection;
pub use stats::{priority_index, Histogram, Stats, RESPONSE_BUCKETS};
pub use traffic::SessionTraffic;
pub use views::QueueViewer;

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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            case_ttl: Duration::from_secs(24 * 60 * 60),
            max_open_cases: 200_000,
            response_targets: ResponseTargets::default(),
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
        /// QUIC application close code (see [`close_code`]).
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
            if let Effect::Persist(Persist::Save(record)) = effect {
                actor.stamp(&mut record.history);
                if let Some(case) = self.cases.get_mut(&record.code) {
                    actor.stamp(&mut case.record.history);
                }
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

    /// The open case with this code, if any.
    pub fn case(&self, code: SessionCode) -> Option<&Case> {
        self.cases.get(&code)
    }

    /// The case a party is attached to.
    pub fn attached_case(&self, party: PartyId) -> Option<SessionCode> {
        self.parties.get(&party).copied()
    }

    /// The customer's SOS button at `normal` priority; see [`Broker::open_sos_with`].
    pub fn open_sos(
        &mut self,
        now: Timestamp,
        party: PartyId,
        customer: &str,
        description: &str,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        self.open_sos_with(now, party, customer, description, Priority::Normal, out)
    }

    /// The customer's SOS button in the `general` queue; see [`Broker::open_sos_in`].
    pub fn open_sos_with(
        &mut self,
        now: Timestamp,
        party: PartyId,
        customer: &str,
        description: &str,
        priority: Priority,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        let request = SosRequest {
            customer,
            description,
            priority,
            group: GENERAL,
        };
        self.open_sos_in(now, party, request, out)
    }

    /// The customer's SOS button: a new case, customer attached, `pending`, in its team's
    /// queue by priority and response deadline (or straight to an expert waiting for one).
    pub fn open_sos_in(
        &mut self,
        now: Timestamp,
        party: PartyId,
        request: SosRequest<'_>,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        self.ensure_unattached(party)?;
        let customer = checked_name("customer name", request.customer)?;
        let description = checked_description(request.description)?;
        let group = checked_name("group", request.group)?;
        let priority = request.priority;
        let code = self.new_case(now, CaseOrigin::Sos, customer, description)?;
        let secret = self.codes.resume_secret();
        let response_due = now.plus(self.config.response_targets.of(priority));
        let case = self.case_mut(code);
        case.record.group = group;
        case.record.resume_secret_hash = Some(hash_secret(&secret));
        case.record.waiting_since = Some(now);
        case.record.priority = priority;
        case.record.response_due = Some(response_due);
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
        // Ownership first: a stranger learns nothing, not even whether the customer is online.
        let bound = match (&case.record.resume_secret_hash, secret) {
            (Some(hash), Some(given)) if secret_matches(given, hash) => true,
            (Some(_), _) => return Err(BrokerError::NotYourCase(code)),
            (None, _) => false,
        };
        match case.customer {
            // Proven by its secret: the new connection takes over at once from the old
            // one (half-alive, or a window the customer forgot).
            Some(old) if bound => self.replace_party(now, code, old, out),
            Some(_) => return Err(BrokerError::CustomerAlreadyConnected(code)),
            None => {}
        }
        let new_secret = (!bound).then(|| self.codes.resume_secret());
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

    /// An expert of the `general` team takes the next case; see [`Broker::pull_from`].
    pub fn pull(
        &mut self,
        now: Timestamp,
        party: PartyId,
        expert: &str,
        wait: bool,
        out: &mut Vec<Effect>,
    ) -> Result<Option<CaseInfo>, BrokerError> {
        self.pull_from(now, party, expert, &[GENERAL.to_string()], wait, out)
    }

    /// An expert takes the next waiting case from its teams' queues and its own. With
    /// `wait` and nothing waiting, the expert waits (`Ok(None)`) and is paired with the next
    /// customer who arrives in one of those queues.
    pub fn pull_from(
        &mut self,
        now: Timestamp,
        party: PartyId,
        expert: &str,
        groups: &[String],
        wait: bool,
        out: &mut Vec<Effect>,
    ) -> Result<Option<CaseInfo>, BrokerError> {
        self.ensure_unattached(party)?;
        let seat = ExpertSeat {
            party,
            name: expert.to_string(),
            groups: groups.to_vec(),
            pulled: true,
        };
        let queues = seat.queues();
        match self.queue.front_among(&queues) {
            Some(code) => {
                self.seat_expert(now, code, seat, out);
                Ok(Some(self.cases[&code].info()))
            }
            None if wait => {
                self.idle_experts.push_back(seat);
                Ok(None)
            }
            None => match self.queue.count_away(Some(&queues)) {
                0 => Err(BrokerError::QueueEmpty),
                offline => Err(BrokerError::NobodyOnline(offline)),
            },
        }
    }

    /// Staff route a case: to one expert (offered only to them) or to a team's queue.
    pub fn assign(
        &mut self,
        now: Timestamp,
        who: &str,
        code: &str,
        to: &Assignee,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(code)?;
        let to = checked_assignee(to)?;
        let case = self.case_mut(code);
        route(&mut case.record, &to);
        case.record.note(now, format!("assigned to {to} by {who}"));
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        let info = case.info();
        self.refresh_queue(code, now, out);
        Ok(info)
    }

    /// The expert in a session (by user name, from any of its connections) hands its case
    /// to another expert or team: the expert's session ends, the customer stays connected, is told who takes over, and waits in the new
    /// queue (or is paired at once with a waiting expert there).
    pub fn transfer(
        &mut self,
        now: Timestamp,
        expert: &str,
        code: &str,
        to: &Assignee,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let to = checked_assignee(to)?;
        let code = self.open_code(code)?;
        let case = &self.cases[&code];
        let Some(seat) = case.expert.clone().filter(|seat| seat.name == expert) else {
            return Err(BrokerError::InvalidInput(format!(
                "you are not the expert in a session on case {code}; only that expert can transfer it"
            )));
        };
        let party = seat.party;
        if to == Assignee::Expert(seat.name.clone()) {
            return Err(BrokerError::InvalidInput(
                "the case is already yours; transfer it to another expert or a group".into(),
            ));
        }
        self.parties.remove(&party);
        let case = self.case_mut(code);
        case.expert = None;
        route(&mut case.record, &to);
        let event = format!("expert {} transferred the case to {to}", seat.name);
        if case.record.state == CaseState::InProgress {
            case.record
                .transition(CaseState::Pending, now, event, "transfer")
                .expect("in progress may always go back to pending");
            out.push(Effect::Unpair { code, drain: true });
        } else {
            case.record.note(now, event);
        }
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        if let Some(customer) = case.customer {
            out.push(Effect::Notify {
                party: customer,
                event: Event::PeerLeft {
                    code,
                    reason: format!(
                        "expert {} handed your case to {to}; please stay connected",
                        seat.name
                    ),
                },
            });
        }
        out.push(Effect::Notify {
            party,
            event: Event::SessionEnded {
                code,
                reason: format!("you handed case {code} to {to}"),
            },
        });
        let info = case.info();
        self.refresh_queue(code, now, out);
        Ok(info)
    }

    /// An expert attaches to a case by its code. The same expert connecting again (its old
    /// connection half-alive or gone) takes over at once. `working_queue`: the expert works
    /// the queue (a `pull` coming back on a new connection) and is let go for the next case
    /// if the customer vanishes, as after a pull.
    pub fn connect(
        &mut self,
        now: Timestamp,
        party: PartyId,
        expert: &str,
        code: &str,
        working_queue: bool,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        self.ensure_unattached(party)?;
        let code = self.open_code(code)?;
        let seat = match &self.cases[&code].expert {
            // The same expert again: its new connection takes over at once (its old one
            // is half-alive or gone), keeping how it came to the case.
            Some(seat) if seat.name == expert => {
                let old = seat.clone();
                self.replace_party(now, code, old.party, out);
                ExpertSeat {
                    party,
                    pulled: old.pulled || working_queue,
                    ..old
                }
            }
            Some(_) => return Err(BrokerError::ExpertAlreadyConnected(code)),
            None => ExpertSeat {
                party,
                name: expert.to_string(),
                groups: Vec::new(),
                pulled: working_queue,
            },
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
        self.stats.closed += 1;
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

    /// Staff change a case's priority with a reason; a waiting case moves in the queue
    /// (its response deadline follows the new priority's target).
    pub fn escalate(
        &mut self,
        now: Timestamp,
        who: &str,
        code: &str,
        priority: Priority,
        reason: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(code)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(BrokerError::InvalidInput(
                "say why the priority changes (--reason)".into(),
            ));
        }
        if reason.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(BrokerError::InvalidInput(format!(
                "the reason is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        let target = self.config.response_targets.of(priority);
        let case = self.case_mut(code);
        let before = case.record.priority;
        case.record.priority = priority;
        if case.record.first_response_at.is_none() {
            if let Some(since) = case.record.waiting_since {
                case.record.response_due = Some(since.plus(target));
            }
        }
        case.record.note(
            now,
            format!("priority {before} -> {priority} by {who}: {reason}"),
        );
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        let info = case.info();
        self.refresh_queue(code, now, out);
        Ok(info)
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

    /// The open cases `selection` matches (a bulk delete by filter ends their sessions).
    pub fn open_matching(&self, selection: &CaseSelection) -> Vec<SessionCode> {
        self.cases
            .values()
            .filter(|case| selection.matches(&case.record))
            .map(|case| case.record.code)
            .collect()
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
            Persist::Save(_) | Persist::Audit(_) => {
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
            self.stats.expired += 1;
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
            group: GENERAL.to_string(),
            assigned_to: None,
            priority: Priority::Normal,
            response_due: None,
            first_response_at: None,
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
        let case = self
            .cases
            .get_mut(&code)
            .expect("callers look the case up first");
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
            if case.record.first_response_at.is_none() {
                case.record.first_response_at = Some(now);
                let index = priority_index(case.record.priority);
                if let Some(since) = case.record.waiting_since {
                    self.stats.first_response[index].observe(now.since(since));
                }
                if case.record.response_due.is_some_and(|due| now > due) {
                    self.stats.targets_missed[index] += 1;
                }
                if let Some(due) = case.record.response_due {
                    let verdict = if now <= due {
                        "first response within its target".to_string()
                    } else {
                        format!(
                            "first response {} after its target",
                            humanize(now.since(due))
                        )
                    };
                    case.record.note(now, verdict);
                }
            }
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
            self.stats.pairings += 1;
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
        if case.is_waiting_offline() {
            let record = &case.record;
            let waiting_since = record.waiting_since.unwrap_or(record.created_at);
            let due = record.response_due.unwrap_or(record.expires_at);
            self.queue
                .push_away(code, record.queue_id(), record.priority, due, waiting_since);
            return;
        }
        if !case.is_waiting() {
            self.queue.remove(code);
            return;
        }
        let id = case.record.queue_id();
        let idle = self
            .idle_experts
            .iter()
            .position(|seat| seat.queues().contains(&id));
        match idle.and_then(|i| self.idle_experts.remove(i)) {
            Some(seat) => {
                self.queue.remove(code);
                self.seat_expert(now, code, seat, out);
            }
            None => {
                let record = &case.record;
                let waiting_since = record.waiting_since.unwrap_or(record.created_at);
                let due = record.response_due.unwrap_or(record.expires_at);
                self.queue
                    .push(code, id, record.priority, due, waiting_since);
            }
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
                drain: false,
            });
        }
        for party in case.customer.into_iter().chain(expert) {
            out.push(tell(party));
        }
    }

    /// The reply to a customer that opened or joined `code`; its position is in it, so the
    /// live updates need not repeat it.
    fn attached(&mut self, code: SessionCode, resume_secret: Option<String>) -> Attached {
        let position = self.queue.position(code);
        if position.is_some() {
            self.queue.told(code);
        }
        Attached {
            case: self.cases[&code].info(),
            resume_secret,
            position,
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

/// The fields of an SOS request.
#[derive(Debug, Clone, Copy)]
pub struct SosRequest<'a> {
    /// The customer's name.
    pub customer: &'a str,
    /// What the customer needs help with.
    pub description: &'a str,
    /// How urgent.
    pub priority: Priority,
    /// The team queue to wait in.
    pub group: &'a str,
}

fn checked_assignee(to: &Assignee) -> Result<Assignee, BrokerError> {
    Ok(match to {
        Assignee::Expert(name) => Assignee::Expert(checked_name("expert name", name)?),
        Assignee::Group(name) => Assignee::Group(checked_name("group", name)?),
    })
}

/// Points a record at its new queue: an expert keeps the team, a team clears the expert.
fn route(record: &mut CaseRecord, to: &Assignee) {
    match to {
        Assignee::Expert(name) => record.assigned_to = Some(name.clone()),
        Assignee::Group(group) => {
            record.group = group.clone();
            record.assigned_to = None;
        }
    }
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
