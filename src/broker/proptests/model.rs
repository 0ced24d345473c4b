//! The reference model: the lifecycle rules of DESIGN.md written plainly (`Vec`s, linear
//! scans, the queue recomputed on every look), and how an operation's choices become the
//! codes, secrets and names both sides are given.

use super::*;

// ----- the reference model -------------------------------------------------------------

/// A case as the model keeps it: the store's record and the live seats in one struct.
#[derive(Debug, Clone)]
pub(super) struct MCase {
    pub(super) code: SessionCode,
    pub(super) sos: bool,
    pub(super) customer_name: String,
    pub(super) state: CaseState,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Timestamp,
    pub(super) expires_at: Timestamp,
    pub(super) customer: Option<PartyId>,
    pub(super) expert: Option<(PartyId, String)>,
    /// Whether the seated expert came from the queue (let go if the customer vanishes).
    pub(super) pulled: bool,
    /// The customer's resume secret, once one was handed out.
    pub(super) secret: Option<String>,
    /// When this case first stood in line (for ties between same-millisecond arrivals).
    pub(super) arrival: Option<u64>,
}

impl MCase {
    pub(super) fn open(&self) -> bool {
        matches!(
            self.state,
            CaseState::New | CaseState::Pending | CaseState::InProgress
        )
    }

    /// An SOS case whose customer waits online for an expert.
    pub(super) fn waiting(&self) -> bool {
        self.unserved() && self.customer.is_some()
    }

    /// An SOS case whose customer is offline: in line, shown, never handed out.
    pub(super) fn waiting_offline(&self) -> bool {
        self.unserved() && self.customer.is_none()
    }

    pub(super) fn unserved(&self) -> bool {
        self.sos && self.state == CaseState::Pending && self.expert.is_none()
    }

    pub(super) fn set_state(&mut self, to: CaseState, now: Timestamp) {
        self.state = to;
        self.updated_at = now;
    }
}

/// A refusal as the model predicts it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MErr {
    BadCode,
    UnknownCode(SessionCode),
    AlreadyAttached(SessionCode),
    AlreadyWaiting,
    CustomerTaken(SessionCode),
    ExpertTaken(SessionCode),
    NotYours(SessionCode),
    QueueEmpty,
    NobodyOnline(usize),
    TooMany,
    InvalidInput,
}

impl MErr {
    pub(super) fn matches(&self, error: &BrokerError) -> bool {
        match (self, error) {
            (MErr::BadCode, BrokerError::BadCode(_)) => true,
            (MErr::UnknownCode(a), BrokerError::UnknownCode(b)) => a == b,
            (MErr::AlreadyAttached(a), BrokerError::AlreadyAttached(b)) => a == b,
            (MErr::AlreadyWaiting, BrokerError::AlreadyWaiting) => true,
            (MErr::CustomerTaken(a), BrokerError::CustomerAlreadyConnected(b)) => a == b,
            (MErr::ExpertTaken(a), BrokerError::ExpertAlreadyConnected(b)) => a == b,
            (MErr::NotYours(a), BrokerError::NotYourCase(b)) => a == b,
            (MErr::QueueEmpty, BrokerError::QueueEmpty(_)) => true,
            (MErr::NobodyOnline(a), BrokerError::NobodyOnline(b, _)) => a == b,
            (MErr::TooMany, BrokerError::TooManyCases(n)) => *n == MAX_OPEN,
            (MErr::InvalidInput, BrokerError::InvalidInput(_)) => true,
            _ => false,
        }
    }
}

/// The effects of one step that the model predicts (the ones with meaning beyond
/// persistence).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Fx {
    /// `(case, customer, expert)` in the order the pairs happen.
    pub(super) pairs: Vec<(SessionCode, PartyId, PartyId)>,
    /// Cases whose relay ends (sorted).
    pub(super) unpairs: Vec<SessionCode>,
    /// `(party, close code)` of connections to close (sorted).
    pub(super) disconnects: Vec<(PartyId, u32)>,
    /// Parties told that their partner left (sorted).
    pub(super) peer_left: Vec<PartyId>,
    /// Parties told that their session is over (sorted).
    pub(super) ended: Vec<PartyId>,
    /// Pulling experts let go because their customer vanished (sorted).
    pub(super) released: Vec<PartyId>,
}

impl Fx {
    pub(super) fn of(out: &[Effect]) -> Fx {
        let mut fx = Fx::default();
        for effect in out {
            match effect {
                Effect::Pair {
                    code,
                    customer,
                    expert,
                } => fx.pairs.push((*code, *customer, *expert)),
                Effect::Unpair { code, .. } => fx.unpairs.push(*code),
                Effect::Disconnect { party, code, .. } => fx.disconnects.push((*party, *code)),
                Effect::Notify {
                    party,
                    event: Event::PeerLeft { .. },
                } => fx.peer_left.push(*party),
                Effect::Notify {
                    party,
                    event: Event::SessionEnded { .. },
                } => fx.ended.push(*party),
                Effect::Notify {
                    party,
                    event: Event::Released { .. },
                } => fx.released.push(*party),
                _ => {}
            }
        }
        fx.sorted()
    }

    pub(super) fn sorted(mut self) -> Fx {
        self.unpairs.sort();
        self.disconnects.sort();
        self.peer_left.sort();
        self.ended.sort();
        self.released.sort();
        self
    }
}

/// The reference model: every case the store holds, the experts waiting for a case, and
/// every code ever seen (so that tests can type stale codes).
#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) cases: Vec<MCase>,
    pub(super) idle: VecDeque<(PartyId, String)>,
    pub(super) arrivals: u64,
    pub(super) seen: Vec<SessionCode>,
}

/// What a successful model step answers.
#[derive(Debug, PartialEq)]
pub(super) enum Answer {
    /// A party attached: the case, whether a new secret was handed out, queue position.
    Attached(SessionCode, bool, Option<u32>),
    /// A case (created, pulled, connected, closed or viewed).
    Case(SessionCode),
    /// A pull that waits.
    Waiting,
    /// Nothing to say (delete).
    Done,
}

pub(super) fn name_ok(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control)
}

impl Model {
    pub(super) fn open_count(&self) -> usize {
        self.cases.iter().filter(|c| c.open()).count()
    }

    pub(super) fn find_open(&self, code: SessionCode) -> Option<usize> {
        self.cases.iter().position(|c| c.code == code && c.open())
    }

    pub(super) fn attached_of(&self, party: PartyId) -> Option<SessionCode> {
        self.cases
            .iter()
            .filter(|c| c.open())
            .find(|c| c.customer == Some(party) || c.expert.as_ref().map(|e| e.0) == Some(party))
            .map(|c| c.code)
    }

    pub(super) fn unattached(&self, party: PartyId) -> Result<(), MErr> {
        if let Some(code) = self.attached_of(party) {
            return Err(MErr::AlreadyAttached(code));
        }
        if self.idle.iter().any(|(p, _)| *p == party) {
            return Err(MErr::AlreadyWaiting);
        }
        Ok(())
    }

    /// The queue: waiting cases, oldest customer first, ties by first arrival in line.
    pub(super) fn queue(&self) -> Vec<SessionCode> {
        let mut waiting: Vec<&MCase> = self.cases.iter().filter(|c| c.waiting()).collect();
        waiting.sort_by_key(|c| (c.created_at, c.arrival));
        waiting.into_iter().map(|c| c.code).collect()
    }

    /// The queue as experts see it: online and offline customers in one order.
    pub(super) fn view(&self) -> Vec<(SessionCode, bool)> {
        let mut shown: Vec<&MCase> = self
            .cases
            .iter()
            .filter(|c| c.waiting() || c.waiting_offline())
            .collect();
        shown.sort_by_key(|c| (c.created_at, c.arrival));
        shown
            .into_iter()
            .map(|c| (c.code, c.customer.is_some()))
            .collect()
    }

    pub(super) fn offline_count(&self) -> usize {
        self.cases.iter().filter(|c| c.waiting_offline()).count()
    }

    /// A new connection takes over a seat of case `i` that `old` still holds: the old one is
    /// closed as replaced, and a session it was in ends (cut).
    pub(super) fn replace(&mut self, i: usize, old: PartyId, now: Timestamp, fx: &mut Fx) {
        let case = &mut self.cases[i];
        if case.customer == Some(old) {
            case.customer = None;
        } else {
            case.expert = None;
        }
        if case.state == CaseState::InProgress {
            case.set_state(CaseState::Pending, now);
            fx.unpairs.push(case.code);
        }
        fx.disconnects.push((old, close_code::REPLACED));
    }

    pub(super) fn position(&self, code: SessionCode) -> Option<u32> {
        self.queue()
            .iter()
            .position(|c| *c == code)
            .map(|i| i as u32 + 1)
    }

    pub(super) fn lookup(&self, typed: &Typed) -> Result<usize, MErr> {
        let code = typed.code.ok_or(MErr::BadCode)?;
        self.find_open(code).ok_or(MErr::UnknownCode(code))
    }

    /// Someone just sat down in case `i`: new becomes pending, two seats make it in
    /// progress (and pair), and a newly waiting SOS case goes to a waiting expert or in
    /// line.
    pub(super) fn after_seat(&mut self, i: usize, now: Timestamp, fx: &mut Fx) {
        let case = &mut self.cases[i];
        if case.state == CaseState::New {
            case.set_state(CaseState::Pending, now);
        }
        if let (Some(customer), Some((expert, _))) = (case.customer, case.expert.clone()) {
            case.set_state(CaseState::InProgress, now);
            fx.pairs.push((case.code, customer, expert));
        }
        self.refresh(i, now, fx);
    }

    pub(super) fn refresh(&mut self, i: usize, now: Timestamp, fx: &mut Fx) {
        if self.cases[i].waiting_offline() {
            if self.cases[i].arrival.is_none() {
                self.arrivals += 1;
                self.cases[i].arrival = Some(self.arrivals);
            }
            return;
        }
        if !self.cases[i].waiting() {
            return;
        }
        match self.idle.pop_front() {
            Some(seat) => {
                self.cases[i].expert = Some(seat);
                self.cases[i].pulled = true;
                self.after_seat(i, now, fx);
            }
            None => {
                if self.cases[i].arrival.is_none() {
                    self.arrivals += 1;
                    self.cases[i].arrival = Some(self.arrivals);
                }
            }
        }
    }

    /// Takes case `i` out of service (closed or expired): seats freed, sessions ended.
    pub(super) fn end(&mut self, i: usize, to: CaseState, now: Timestamp, fx: &mut Fx) {
        let case = &mut self.cases[i];
        case.set_state(to, now);
        let customer = case.customer.take();
        let expert = case.expert.take().map(|e| e.0);
        if customer.is_some() && expert.is_some() {
            fx.unpairs.push(case.code);
        }
        for party in customer.into_iter().chain(expert) {
            match to {
                CaseState::Closed => fx.ended.push(party),
                _ => fx.disconnects.push((party, close_code::EXPIRED)),
            }
        }
    }

    /// Removes the cases at `doomed` from the store, disconnecting the open ones.
    pub(super) fn delete(
        &mut self,
        doomed: impl Fn(&MCase) -> bool,
        fx: &mut Fx,
    ) -> Vec<SessionCode> {
        let mut deleted = Vec::new();
        self.cases.retain(|case| {
            if !doomed(case) {
                return true;
            }
            if case.open() {
                if case.customer.is_some() && case.expert.is_some() {
                    fx.unpairs.push(case.code);
                }
                for party in case
                    .customer
                    .into_iter()
                    .chain(case.expert.as_ref().map(|e| e.0))
                {
                    fx.disconnects.push((party, close_code::DELETED));
                }
            }
            deleted.push(case.code);
            false
        });
        deleted
    }

    /// Whether `party` (with `given`) may close or see case `i`: attached as its customer,
    /// or holding its resume secret.
    pub(super) fn owns(
        &self,
        i: usize,
        party: PartyId,
        given: &Option<String>,
    ) -> Result<(), MErr> {
        let case = &self.cases[i];
        let proves = match (&case.secret, given) {
            (Some(theirs), Some(given)) => theirs.trim() == given.trim(),
            _ => false,
        };
        if case.customer == Some(party) || proves {
            Ok(())
        } else {
            Err(MErr::NotYours(case.code))
        }
    }

    pub(super) fn new_case(
        &mut self,
        code: SessionCode,
        sos: bool,
        name: &str,
        now: Timestamp,
    ) -> usize {
        self.seen.push(code);
        self.cases.push(MCase {
            code,
            sos,
            customer_name: name.trim().to_string(),
            state: CaseState::New,
            created_at: now,
            updated_at: now,
            expires_at: Timestamp(now.0 + TTL_MS),
            customer: None,
            expert: None,
            pulled: false,
            secret: None,
            arrival: None,
        });
        self.cases.len() - 1
    }
}

/// A code as typed, and the code it means (`None`: not a code).
#[derive(Debug, Clone)]
pub(super) struct Typed {
    pub(super) text: String,
    pub(super) code: Option<SessionCode>,
}

pub(super) fn typed(model: &Model, choice: &CodeChoice) -> Typed {
    let open: Vec<SessionCode> = model
        .cases
        .iter()
        .filter(|c| c.open())
        .map(|c| c.code)
        .collect();
    let known = match choice {
        CodeChoice::Open(i, form) if !open.is_empty() => Some((open[i % open.len()], *form)),
        CodeChoice::Known(i, form) | CodeChoice::Open(i, form) if !model.seen.is_empty() => {
            Some((model.seen[i % model.seen.len()], *form))
        }
        CodeChoice::Malformed => {
            return Typed {
                text: "s12-34".into(),
                code: None,
            }
        }
        _ => None,
    };
    let (code, form) = known.unwrap_or_else(|| {
        (
            SessionCode::from_number(STRANGE_CODE).expect("nine digits"),
            0,
        )
    });
    let n = code.number();
    let text = match form {
        0 => code.to_string(),
        1 => format!("{n:09}"),
        2 => code.to_string().to_uppercase(),
        _ => format!(
            " {:03} {:03} {:03} ",
            n / 1_000_000,
            (n / 1_000) % 1_000,
            n % 1_000
        ),
    };
    Typed {
        text,
        code: Some(code),
    }
}

pub(super) fn secret(model: &Model, typed: &Typed, choice: &SecretChoice) -> Option<String> {
    match choice {
        SecretChoice::None => None,
        SecretChoice::Right => typed
            .code
            .and_then(|code| model.cases.iter().find(|c| c.code == code))
            .and_then(|c| c.secret.clone()),
        SecretChoice::Wrong => Some(WRONG_SECRET.to_string()),
        SecretChoice::Other(i) => {
            let bound: Vec<&String> = model
                .cases
                .iter()
                .filter_map(|c| c.secret.as_ref())
                .collect();
            if bound.is_empty() {
                None
            } else {
                Some(bound[i % bound.len()].clone())
            }
        }
    }
}

pub(super) fn name(choice: &NameChoice) -> String {
    match choice {
        NameChoice::Plain(n) => ["Ana", "Bob", "Chloé"][*n as usize % 3].to_string(),
        NameChoice::Padded => "  Dora ".to_string(),
        NameChoice::Empty => "   ".to_string(),
        NameChoice::Control => "Eve\u{7}".to_string(),
        NameChoice::TooLong => "x".repeat(MAX_NAME_CHARS + 1),
    }
}

pub(super) fn expert_name(party: PartyId) -> String {
    // Two connections share a name, as one expert on two machines would.
    format!("expert{}", party.0 % 2)
}
