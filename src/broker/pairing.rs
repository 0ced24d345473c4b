//! Putting an expert and a customer together: `pull` (the next waiting case of an expert's
//! queues, or waiting for one), `connect` by code, routing (`assign`, `transfer`), priority
//! (`escalate`), and what happens when someone sits down: `new` becomes `pending`, two
//! seats make the case `in progress` and pair the two, and the queue is brought up to date.

use sosq::protocol::{
    Assignee, CaseInfo, CaseState, Event, HistoryKind, Priority, Role, Timestamp,
};
use sosq::SessionCode;

use super::intake::checked_name;
use super::{
    humanize, priority_index, Broker, BrokerError, CaseRecord, Effect, ExpertSeat, PartyId,
    Persist, GENERAL, MAX_DESCRIPTION_CHARS,
};

/// The fields of a pull: who pulls, from which teams' queues, and whether to wait.
#[derive(Debug, Clone)]
pub struct PullRequest<'a> {
    /// The expert's user name.
    pub expert: &'a str,
    /// The teams whose queues the expert works (its own assigned cases always count).
    pub teams: Vec<String>,
    /// Wait for the next customer when nothing is waiting, instead of refusing.
    pub wait: bool,
}

impl<'a> PullRequest<'a> {
    /// A pull from the `general` team's queue (an expert in no other team).
    pub fn general(expert: &'a str, wait: bool) -> Self {
        Self {
            expert,
            teams: vec![GENERAL.to_string()],
            wait,
        }
    }
}

impl Broker {
    /// An expert takes the next waiting case from its teams' queues and its own. With
    /// `wait` and nothing waiting, the expert waits (`Ok(None)`) and is paired with the next
    /// customer who arrives in one of those queues.
    pub fn pull(
        &mut self,
        now: Timestamp,
        party: PartyId,
        request: PullRequest<'_>,
        out: &mut Vec<Effect>,
    ) -> Result<Option<CaseInfo>, BrokerError> {
        self.ensure_unattached(party)?;
        let PullRequest {
            expert,
            teams: groups,
            wait,
        } = request;
        let seat = ExpertSeat {
            party,
            name: expert.to_string(),
            groups: groups.clone(),
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
            None => {
                let searched = super::Searched { teams: groups };
                match self.queue.count_away(Some(&queues)) {
                    0 => Err(BrokerError::QueueEmpty(searched)),
                    offline => Err(BrokerError::NobodyOnline(offline, searched)),
                }
            }
        }
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
        case.record.note(
            now,
            HistoryKind::Assigned,
            format!("assigned to {to} by {who}"),
        );
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
                .transition(
                    CaseState::Pending,
                    now,
                    HistoryKind::Transferred,
                    event,
                    "transfer",
                )
                .expect("in progress may always go back to pending");
            out.push(Effect::Unpair { code, drain: true });
        } else {
            case.record.note(now, HistoryKind::Transferred, event);
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
            HistoryKind::Escalated,
            format!("priority {before} -> {priority} by {who}: {reason}"),
        );
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        let info = case.info();
        self.refresh_queue(code, now, out);
        Ok(info)
    }

    pub(super) fn seat_customer(
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
        case.record.note(now, HistoryKind::Attached, event);
        self.after_seating(now, code, out);
    }

    pub(super) fn seat_expert(
        &mut self,
        now: Timestamp,
        code: SessionCode,
        seat: ExpertSeat,
        out: &mut Vec<Effect>,
    ) {
        self.parties.insert(seat.party, code);
        let case = self.case_mut(code);
        let (before, after) = EXPERT_CONNECTED;
        case.record.note(
            now,
            HistoryKind::Attached,
            format!("{before}{}{after}", seat.name),
        );
        case.expert = Some(seat);
        self.after_seating(now, code, out);
    }

    /// After someone sat down: `new` becomes `pending`; both seats taken becomes
    /// `in_progress` and pairs the two; the queue is brought up to date.
    pub(super) fn after_seating(
        &mut self,
        now: Timestamp,
        code: SessionCode,
        out: &mut Vec<Effect>,
    ) {
        let case = self
            .cases
            .get_mut(&code)
            .expect("callers look the case up first");
        if case.record.state == CaseState::New {
            case.record
                .transition(
                    CaseState::Pending,
                    now,
                    HistoryKind::Started,
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
                    HistoryKind::Paired,
                    "both partners connected",
                    "start the session of",
                )
                .expect("pending may always become in progress");
            if case.record.first_response_at.is_none() {
                case.record.first_response_at = Some(now);
                let index = priority_index(case.record.priority);
                if let Some(since) = case.record.waiting_since {
                    let waited = now.since(since);
                    self.stats.first_response[index].observe(waited);
                    self.stats.observe_team_wait(&case.record.group, waited);
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
                    case.record.note(now, HistoryKind::FirstResponse, verdict);
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
    pub(super) fn refresh_queue(
        &mut self,
        code: SessionCode,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
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
}

/// The words around the expert's name in the history entry (kind `attached`) an expert
/// sitting down in a case writes: `expert NAME connected`. Reports find who took a case by
/// them (`store::reports`), not by the entry's actor: that is whoever's command seated the
/// expert, which for a waiting pull is the customer whose SOS woke it.
pub const EXPERT_CONNECTED: (&str, &str) = ("expert ", " connected");

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
