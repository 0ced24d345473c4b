//! Property test of the broker core against a reference model.
//!
//! Random sequences of commands (SOS, create, join, pull, connect, close, status,
//! disconnect, time jumps followed by `expire_due`, bulk deletes followed by
//! `release_codes`) drive a real [`Broker`] and a deliberately simple [`Model`] side by
//! side. The model is written from the lifecycle rules of DESIGN.md and the doc comments of
//! the core, not from its implementation: plain `Vec`s, linear scans, the queue recomputed
//! from scratch on every look. After every step the two must agree on the answer (and the
//! kind of refusal), on every case's state, seats and deadline, on the queue order, on the
//! next deadline, on the open-case and held-code counts, and on the effects that matter
//! (pairs, unpairs, disconnects, peer-left and session-ended notices). A refused command
//! must push no effect. Invariants of the core (no party in two cases, `in_progress` has
//! both seats, a `Pair` only with both seats taken, codes never reissued while held, a
//! history that follows the lifecycle table) are checked on their own as well.
//!
//! The party pool is small on purpose (four customer connections, three expert
//! connections) so that collisions, double attaches and re-used connection ids happen
//! often; the case lifetime is one minute and the open-case limit small so that expiry and
//! `TooManyCases` are reached in short sequences.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::protocol::{close_code, CaseFilter, CaseInfo, CaseOrigin, CaseState, Event, Timestamp};
use sosq::SessionCode;

use super::*;

/// Case lifetime in the test, in milliseconds.
const TTL_MS: u64 = 60_000;
/// Open-case limit in the test.
const MAX_OPEN: usize = 6;
/// The first "now".
const T0: u64 = 1_700_000_000_000;
/// Customer connections.
const CUSTOMERS: [PartyId; 4] = [PartyId(1), PartyId(2), PartyId(3), PartyId(4)];
/// Expert connections.
const EXPERTS: [PartyId; 3] = [PartyId(11), PartyId(12), PartyId(13)];
/// A well-formed code that the model never hands out on purpose.
const STRANGE_CODE: u64 = 123_456_789;
/// A well-formed secret that is nobody's.
const WRONG_SECRET: &str = "00000000000000000000000000000000";

// ----- operations ----------------------------------------------------------------------

/// How a test types a code.
#[derive(Debug, Clone)]
enum CodeChoice {
    /// The n-th open case of the model (modulo how many), in one of the typed forms.
    Open(usize, u8),
    /// The n-th code the model has seen (modulo how many), in one of the typed forms.
    Known(usize, u8),
    /// A well-formed code, probably never issued.
    Strange,
    /// Not a code at all.
    Malformed,
}

/// Which resume secret a customer gives.
#[derive(Debug, Clone)]
enum SecretChoice {
    None,
    /// The secret of the case addressed (if it has one).
    Right,
    /// A well-formed secret of nobody.
    Wrong,
    /// The secret of the n-th bound case (modulo), usually another case.
    Other(usize),
}

/// A name as a person (or an attacker) types it.
#[derive(Debug, Clone)]
enum NameChoice {
    Plain(u8),
    Padded,
    Empty,
    Control,
    TooLong,
}

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Op {
    OpenSos {
        customer: usize,
        name: NameChoice,
    },
    Create {
        expert: usize,
        name: NameChoice,
    },
    Join {
        customer: usize,
        code: CodeChoice,
        secret: SecretChoice,
        name: NameChoice,
    },
    Pull {
        expert: usize,
        wait: bool,
    },
    Connect {
        expert: usize,
        code: CodeChoice,
    },
    Disconnect {
        party: usize,
    },
    CloseByExpert {
        expert: usize,
        code: CodeChoice,
    },
    CloseByCustomer {
        customer: usize,
        code: CodeChoice,
        secret: SecretChoice,
    },
    View {
        customer: usize,
        code: CodeChoice,
        secret: SecretChoice,
    },
    Tick {
        ms: u64,
    },
    DeleteCodes {
        codes: Vec<CodeChoice>,
    },
    DeleteWhere {
        state: Option<CaseState>,
        older_than_ms: Option<u64>,
    },
    DeleteNothing,
}

fn code_choice() -> impl Strategy<Value = CodeChoice> {
    prop_oneof![
        10 => (any::<usize>(), 0u8..4).prop_map(|(i, form)| CodeChoice::Open(i, form)),
        5 => (any::<usize>(), 0u8..4).prop_map(|(i, form)| CodeChoice::Known(i, form)),
        1 => Just(CodeChoice::Strange),
        1 => Just(CodeChoice::Malformed),
    ]
}

fn secret_choice() -> impl Strategy<Value = SecretChoice> {
    prop_oneof![
        3 => Just(SecretChoice::None),
        4 => Just(SecretChoice::Right),
        1 => Just(SecretChoice::Wrong),
        1 => any::<usize>().prop_map(SecretChoice::Other),
    ]
}

fn name_choice() -> impl Strategy<Value = NameChoice> {
    prop_oneof![
        20 => (0u8..3).prop_map(NameChoice::Plain),
        2 => Just(NameChoice::Padded),
        1 => Just(NameChoice::Empty),
        1 => Just(NameChoice::Control),
        1 => Just(NameChoice::TooLong),
    ]
}

fn state_choice() -> impl Strategy<Value = Option<CaseState>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(CaseState::ALL.to_vec()).prop_map(Some),
    ]
}

fn tick_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..3_000,
        1 => Just(TTL_MS - 1),
        1 => Just(TTL_MS),
        1 => TTL_MS..3 * TTL_MS,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let customer = 0..CUSTOMERS.len();
    let expert = 0..EXPERTS.len();
    prop_oneof![
        6 => (customer.clone(), name_choice())
            .prop_map(|(customer, name)| Op::OpenSos { customer, name }),
        4 => (expert.clone(), name_choice()).prop_map(|(expert, name)| Op::Create { expert, name }),
        7 => (customer.clone(), code_choice(), secret_choice(), name_choice()).prop_map(
            |(customer, code, secret, name)| Op::Join { customer, code, secret, name }
        ),
        5 => (expert.clone(), any::<bool>()).prop_map(|(expert, wait)| Op::Pull { expert, wait }),
        4 => (expert.clone(), code_choice()).prop_map(|(expert, code)| Op::Connect { expert, code }),
        7 => (0..CUSTOMERS.len() + EXPERTS.len()).prop_map(|party| Op::Disconnect { party }),
        2 => (expert.clone(), code_choice())
            .prop_map(|(expert, code)| Op::CloseByExpert { expert, code }),
        3 => (customer.clone(), code_choice(), secret_choice()).prop_map(
            |(customer, code, secret)| Op::CloseByCustomer { customer, code, secret }
        ),
        2 => (customer, code_choice(), secret_choice())
            .prop_map(|(customer, code, secret)| Op::View { customer, code, secret }),
        4 => tick_ms().prop_map(|ms| Op::Tick { ms }),
        1 => proptest::collection::vec(code_choice(), 0..4)
            .prop_map(|codes| Op::DeleteCodes { codes }),
        1 => (
            state_choice(),
            proptest::option::of(proptest::sample::select(vec![0u64, 1_000, 30_000, TTL_MS])),
        )
            .prop_map(|(state, older_than_ms)| Op::DeleteWhere { state, older_than_ms }),
        1 => Just(Op::DeleteNothing),
    ]
}

// ----- the reference model -------------------------------------------------------------

/// A case as the model keeps it: the store's record and the live seats in one struct.
#[derive(Debug, Clone)]
struct MCase {
    code: SessionCode,
    sos: bool,
    customer_name: String,
    state: CaseState,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Timestamp,
    customer: Option<PartyId>,
    expert: Option<(PartyId, String)>,
    /// Whether the seated expert came from the queue (let go if the customer vanishes).
    pulled: bool,
    /// The customer's resume secret, once one was handed out.
    secret: Option<String>,
    /// When this case first stood in line (for ties between same-millisecond arrivals).
    arrival: Option<u64>,
}

impl MCase {
    fn open(&self) -> bool {
        matches!(
            self.state,
            CaseState::New | CaseState::Pending | CaseState::InProgress
        )
    }

    /// An SOS case whose customer waits online for an expert.
    fn waiting(&self) -> bool {
        self.unserved() && self.customer.is_some()
    }

    /// An SOS case whose customer is offline: in line, shown, never handed out.
    fn waiting_offline(&self) -> bool {
        self.unserved() && self.customer.is_none()
    }

    fn unserved(&self) -> bool {
        self.sos && self.state == CaseState::Pending && self.expert.is_none()
    }

    fn set_state(&mut self, to: CaseState, now: Timestamp) {
        self.state = to;
        self.updated_at = now;
    }
}

/// A refusal as the model predicts it.
#[derive(Debug, Clone, PartialEq)]
enum MErr {
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
    fn matches(&self, error: &BrokerError) -> bool {
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
struct Fx {
    /// `(case, customer, expert)` in the order the pairs happen.
    pairs: Vec<(SessionCode, PartyId, PartyId)>,
    /// Cases whose relay ends (sorted).
    unpairs: Vec<SessionCode>,
    /// `(party, close code)` of connections to close (sorted).
    disconnects: Vec<(PartyId, u32)>,
    /// Parties told that their partner left (sorted).
    peer_left: Vec<PartyId>,
    /// Parties told that their session is over (sorted).
    ended: Vec<PartyId>,
    /// Pulling experts let go because their customer vanished (sorted).
    released: Vec<PartyId>,
}

impl Fx {
    fn of(out: &[Effect]) -> Fx {
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

    fn sorted(mut self) -> Fx {
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
struct Model {
    cases: Vec<MCase>,
    idle: VecDeque<(PartyId, String)>,
    arrivals: u64,
    seen: Vec<SessionCode>,
}

/// What a successful model step answers.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A party attached: the case, whether a new secret was handed out, queue position.
    Attached(SessionCode, bool, Option<u32>),
    /// A case (created, pulled, connected, closed or viewed).
    Case(SessionCode),
    /// A pull that waits.
    Waiting,
    /// Nothing to say (delete).
    Done,
}

fn name_ok(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control)
}

impl Model {
    fn open_count(&self) -> usize {
        self.cases.iter().filter(|c| c.open()).count()
    }

    fn find_open(&self, code: SessionCode) -> Option<usize> {
        self.cases.iter().position(|c| c.code == code && c.open())
    }

    fn attached_of(&self, party: PartyId) -> Option<SessionCode> {
        self.cases
            .iter()
            .filter(|c| c.open())
            .find(|c| c.customer == Some(party) || c.expert.as_ref().map(|e| e.0) == Some(party))
            .map(|c| c.code)
    }

    fn unattached(&self, party: PartyId) -> Result<(), MErr> {
        if let Some(code) = self.attached_of(party) {
            return Err(MErr::AlreadyAttached(code));
        }
        if self.idle.iter().any(|(p, _)| *p == party) {
            return Err(MErr::AlreadyWaiting);
        }
        Ok(())
    }

    /// The queue: waiting cases, oldest customer first, ties by first arrival in line.
    fn queue(&self) -> Vec<SessionCode> {
        let mut waiting: Vec<&MCase> = self.cases.iter().filter(|c| c.waiting()).collect();
        waiting.sort_by_key(|c| (c.created_at, c.arrival));
        waiting.into_iter().map(|c| c.code).collect()
    }

    /// The queue as experts see it: online and offline customers in one order.
    fn view(&self) -> Vec<(SessionCode, bool)> {
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

    fn offline_count(&self) -> usize {
        self.cases.iter().filter(|c| c.waiting_offline()).count()
    }

    /// A new connection takes over a seat of case `i` that `old` still holds: the old one is
    /// closed as replaced, and a session it was in ends (cut).
    fn replace(&mut self, i: usize, old: PartyId, now: Timestamp, fx: &mut Fx) {
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

    fn position(&self, code: SessionCode) -> Option<u32> {
        self.queue()
            .iter()
            .position(|c| *c == code)
            .map(|i| i as u32 + 1)
    }

    fn lookup(&self, typed: &Typed) -> Result<usize, MErr> {
        let code = typed.code.ok_or(MErr::BadCode)?;
        self.find_open(code).ok_or(MErr::UnknownCode(code))
    }

    /// Someone just sat down in case `i`: new becomes pending, two seats make it in
    /// progress (and pair), and a newly waiting SOS case goes to a waiting expert or in
    /// line.
    fn after_seat(&mut self, i: usize, now: Timestamp, fx: &mut Fx) {
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

    fn refresh(&mut self, i: usize, now: Timestamp, fx: &mut Fx) {
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
    fn end(&mut self, i: usize, to: CaseState, now: Timestamp, fx: &mut Fx) {
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
    fn delete(&mut self, doomed: impl Fn(&MCase) -> bool, fx: &mut Fx) -> Vec<SessionCode> {
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
    fn owns(&self, i: usize, party: PartyId, given: &Option<String>) -> Result<(), MErr> {
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

    fn new_case(&mut self, code: SessionCode, sos: bool, name: &str, now: Timestamp) -> usize {
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
struct Typed {
    text: String,
    code: Option<SessionCode>,
}

fn typed(model: &Model, choice: &CodeChoice) -> Typed {
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

fn secret(model: &Model, typed: &Typed, choice: &SecretChoice) -> Option<String> {
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

fn name(choice: &NameChoice) -> String {
    match choice {
        NameChoice::Plain(n) => ["Ana", "Bob", "Chloé"][*n as usize % 3].to_string(),
        NameChoice::Padded => "  Dora ".to_string(),
        NameChoice::Empty => "   ".to_string(),
        NameChoice::Control => "Eve\u{7}".to_string(),
        NameChoice::TooLong => "x".repeat(MAX_NAME_CHARS + 1),
    }
}

fn expert_name(party: PartyId) -> String {
    // Two connections share a name, as one expert on two machines would.
    format!("expert{}", party.0 % 2)
}

// ----- the harness ---------------------------------------------------------------------

/// A broker and the model, stepped together.
struct Harness {
    broker: Broker,
    model: Model,
    now: Timestamp,
}

/// Everything observable about the core, for "a refused command changes nothing": every
/// case record (history included) with its seats, the queue, the deadline, the codes held
/// and every party's attachment.
#[derive(Debug, PartialEq)]
struct Snapshot {
    cases: Vec<(CaseRecord, Option<PartyId>, Option<ExpertSeat>)>,
    queue: Vec<sosq::protocol::QueueEntry>,
    next_deadline: Option<Timestamp>,
    codes_held: usize,
    attached: Vec<Option<SessionCode>>,
}

/// What a step of the core answered, reduced to what the model predicts.
fn core_answer_attached(attached: &Attached) -> Answer {
    Answer::Attached(
        attached.case.code,
        attached.resume_secret.is_some(),
        attached.position,
    )
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let config = BrokerConfig {
            case_ttl: Duration::from_millis(TTL_MS),
            max_open_cases: MAX_OPEN,
            ..BrokerConfig::default()
        };
        Harness {
            broker: Broker::new(config, Box::new(StdRng::seed_from_u64(seed))),
            model: Model::default(),
            now: Timestamp(T0),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            cases: self
                .model
                .seen
                .iter()
                .filter_map(|code| self.broker.case(*code))
                .map(|case| (case.record.clone(), case.customer, case.expert.clone()))
                .collect(),
            queue: self.broker.queue_view(),
            next_deadline: self.broker.next_deadline(),
            codes_held: self.broker.codes_held(),
            attached: CUSTOMERS
                .iter()
                .chain(EXPERTS.iter())
                .map(|party| self.broker.attached_case(*party))
                .collect(),
        }
    }

    /// Runs one operation on both sides and compares everything.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let before = self.snapshot();
        let now = self.now;
        let mut out = Vec::new();
        let mut fx = Fx::default();
        let (core, model): (Result<Answer, BrokerError>, Result<Answer, MErr>) = match op {
            Op::OpenSos { customer, name: n } => {
                let party = CUSTOMERS[*customer];
                let name = name(n);
                let core = self.broker.open_sos(
                    now,
                    party,
                    SosRequest::general(&name, "printer on fire"),
                    &mut out,
                );
                let model = self.model.unattached(party).and_then(|()| {
                    if !name_ok(&name) {
                        return Err(MErr::InvalidInput);
                    }
                    if self.model.open_count() >= MAX_OPEN {
                        return Err(MErr::TooMany);
                    }
                    Ok(())
                });
                let model = match (&core, model) {
                    (Ok(attached), Ok(())) => {
                        let code = attached.case.code;
                        prop_assert!(
                            !self.model.cases.iter().any(|c| c.code == code),
                            "code {code} issued while still held"
                        );
                        let i = self.model.new_case(code, true, &name, now);
                        self.model.cases[i].customer = Some(party);
                        self.model.cases[i].secret = attached.resume_secret.clone();
                        self.model.after_seat(i, now, &mut fx);
                        Ok(Answer::Attached(code, true, self.model.position(code)))
                    }
                    (_, Ok(())) => Ok(Answer::Done),
                    (_, Err(e)) => Err(e),
                };
                if let Ok(attached) = &core {
                    self.check_info(&attached.case)?;
                }
                (core.map(|a| core_answer_attached(&a)), model)
            }
            Op::Create { expert, name: n } => {
                let expert = expert_name(EXPERTS[*expert]);
                let name = name(n);
                let core = self
                    .broker
                    .create(now, &expert, &name, "vpn is down", &mut out);
                let model = if !name_ok(&name) {
                    Err(MErr::InvalidInput)
                } else if self.model.open_count() >= MAX_OPEN {
                    Err(MErr::TooMany)
                } else {
                    Ok(())
                };
                let model = match (&core, model) {
                    (Ok(info), Ok(())) => {
                        prop_assert!(
                            !self.model.cases.iter().any(|c| c.code == info.code),
                            "code {} issued while still held",
                            info.code
                        );
                        self.model.new_case(info.code, false, &name, now);
                        Ok(Answer::Case(info.code))
                    }
                    (_, Ok(())) => Ok(Answer::Done),
                    (_, Err(e)) => Err(e),
                };
                if let Ok(info) = &core {
                    self.check_info(info)?;
                }
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::Join {
                customer,
                code,
                secret: s,
                name: n,
            } => {
                let party = CUSTOMERS[*customer];
                let typed = typed(&self.model, code);
                let given = secret(&self.model, &typed, s);
                let name = name(n);
                let core =
                    self.broker
                        .join(now, party, &typed.text, &name, given.as_deref(), &mut out);
                let model = (|| {
                    self.model.unattached(party)?;
                    if !name_ok(&name) {
                        return Err(MErr::InvalidInput);
                    }
                    let i = self.model.lookup(&typed)?;
                    let case = &self.model.cases[i];
                    // Ownership first: a stranger learns nothing, not even whether the
                    // customer is online.
                    let fresh = match (&case.secret, &given) {
                        (Some(theirs), Some(given)) if theirs.trim() == given.trim() => false,
                        (Some(_), _) => return Err(MErr::NotYours(case.code)),
                        (None, _) => true,
                    };
                    match case.customer {
                        Some(old) if !fresh => Ok((i, fresh, Some(old))),
                        Some(_) => Err(MErr::CustomerTaken(case.code)),
                        None => Ok((i, fresh, None)),
                    }
                })();
                let model = match model {
                    Ok((i, fresh, old)) => {
                        if let Some(old) = old {
                            self.model.replace(i, old, now, &mut fx);
                        }
                        if fresh {
                            self.model.cases[i].secret =
                                core.as_ref().ok().and_then(|a| a.resume_secret.clone());
                        }
                        self.model.cases[i].customer = Some(party);
                        self.model.after_seat(i, now, &mut fx);
                        let code = self.model.cases[i].code;
                        Ok(Answer::Attached(code, fresh, self.model.position(code)))
                    }
                    Err(e) => Err(e),
                };
                if let Ok(attached) = &core {
                    self.check_info(&attached.case)?;
                }
                (core.map(|a| core_answer_attached(&a)), model)
            }
            Op::Pull { expert, wait } => {
                let party = EXPERTS[*expert];
                let expert = expert_name(party);
                let core =
                    self.broker
                        .pull(now, party, PullRequest::general(&expert, *wait), &mut out);
                let model = self.model.unattached(party).and_then(|()| {
                    match self.model.queue().first().copied() {
                        Some(code) => {
                            let i = self.model.find_open(code).expect("queued cases are open");
                            self.model.cases[i].expert = Some((party, expert.clone()));
                            self.model.cases[i].pulled = true;
                            self.model.after_seat(i, now, &mut fx);
                            Ok(Answer::Case(code))
                        }
                        None if *wait => {
                            self.model.idle.push_back((party, expert.clone()));
                            Ok(Answer::Waiting)
                        }
                        None => match self.model.offline_count() {
                            0 => Err(MErr::QueueEmpty),
                            offline => Err(MErr::NobodyOnline(offline)),
                        },
                    }
                });
                if let Ok(Some(info)) = &core {
                    self.check_info(info)?;
                }
                let core = core.map(|case| match case {
                    Some(info) => Answer::Case(info.code),
                    None => Answer::Waiting,
                });
                (core, model)
            }
            Op::Connect { expert, code } => {
                let party = EXPERTS[*expert];
                let expert = expert_name(party);
                let typed = typed(&self.model, code);
                let core = self
                    .broker
                    .connect(now, party, &expert, &typed.text, false, &mut out);
                let model = (|| {
                    self.model.unattached(party)?;
                    let i = self.model.lookup(&typed)?;
                    let pulled = match self.model.cases[i].expert.clone() {
                        // The same expert again takes over, keeping how it came.
                        Some((old, name)) if name == expert => {
                            let pulled = self.model.cases[i].pulled;
                            self.model.replace(i, old, now, &mut fx);
                            pulled
                        }
                        Some(_) => return Err(MErr::ExpertTaken(self.model.cases[i].code)),
                        None => false,
                    };
                    self.model.cases[i].expert = Some((party, expert.clone()));
                    self.model.cases[i].pulled = pulled;
                    self.model.after_seat(i, now, &mut fx);
                    Ok(Answer::Case(self.model.cases[i].code))
                })();
                if let Ok(info) = &core {
                    self.check_info(info)?;
                }
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::Disconnect { party } => {
                let party = CUSTOMERS
                    .iter()
                    .chain(EXPERTS.iter())
                    .nth(*party)
                    .copied()
                    .expect("a party of the pool");
                self.broker
                    .disconnect(now, party, Departure::Lost, &mut out);
                self.model.idle.retain(|(p, _)| *p != party);
                if let Some(code) = self.model.attached_of(party) {
                    let i = self
                        .model
                        .find_open(code)
                        .expect("attached to an open case");
                    let case = &mut self.model.cases[i];
                    let was_paired = case.state == CaseState::InProgress;
                    let mut released = None;
                    let peer = if case.customer == Some(party) {
                        case.customer = None;
                        match case.expert.clone() {
                            // A pulling expert is let go for the next case.
                            Some((expert, _)) if case.pulled => {
                                case.expert = None;
                                released = Some(expert);
                                None
                            }
                            seat => seat.map(|e| e.0),
                        }
                    } else {
                        case.expert = None;
                        case.customer
                    };
                    if was_paired {
                        case.set_state(CaseState::Pending, now);
                        fx.unpairs.push(code);
                        fx.peer_left.extend(peer);
                    }
                    fx.released.extend(released);
                    self.model.refresh(i, now, &mut fx);
                }
                (Ok(Answer::Done), Ok(Answer::Done))
            }
            Op::CloseByExpert { expert, code } => {
                let expert = expert_name(EXPERTS[*expert]);
                let typed = typed(&self.model, code);
                let core = self
                    .broker
                    .close(now, Closer::Expert(&expert), &typed.text, &mut out);
                let model = self.model.lookup(&typed).map(|i| {
                    self.model.end(i, CaseState::Closed, now, &mut fx);
                    Answer::Case(self.model.cases[i].code)
                });
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::CloseByCustomer {
                customer,
                code,
                secret: s,
            } => {
                let party = CUSTOMERS[*customer];
                let typed = typed(&self.model, code);
                let given = secret(&self.model, &typed, s);
                let closer = Closer::Customer {
                    party,
                    secret: given.as_deref(),
                };
                let core = self.broker.close(now, closer, &typed.text, &mut out);
                let model = self.model.lookup(&typed).and_then(|i| {
                    self.model.owns(i, party, &given)?;
                    self.model.end(i, CaseState::Closed, now, &mut fx);
                    Ok(Answer::Case(self.model.cases[i].code))
                });
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::View {
                customer,
                code,
                secret: s,
            } => {
                let party = CUSTOMERS[*customer];
                let typed = typed(&self.model, code);
                let given = secret(&self.model, &typed, s);
                let core = self
                    .broker
                    .customer_view(party, &typed.text, given.as_deref());
                let model = self.model.lookup(&typed).and_then(|i| {
                    self.model.owns(i, party, &given)?;
                    Ok(Answer::Case(self.model.cases[i].code))
                });
                if let Ok(info) = &core {
                    self.check_info(info)?;
                }
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::Tick { ms } => {
                self.now = Timestamp(self.now.0 + ms);
                let now = self.now;
                let expired = self.broker.expire_due(now, &mut out);
                let mut due: Vec<(Timestamp, SessionCode, usize)> = self
                    .model
                    .cases
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.open() && c.expires_at <= now)
                    .map(|(i, c)| (c.expires_at, c.code, i))
                    .collect();
                due.sort();
                for &(_, _, i) in &due {
                    self.model.end(i, CaseState::Expired, now, &mut fx);
                }
                let due: Vec<SessionCode> = due.iter().map(|d| d.1).collect();
                prop_assert_eq!(expired, due, "expire_due returned other codes");
                (Ok(Answer::Done), Ok(Answer::Done))
            }
            Op::DeleteCodes { codes } => {
                let typed: Vec<SessionCode> = codes
                    .iter()
                    .filter_map(|choice| typed(&self.model, choice).code)
                    .collect();
                let selection = Persist::Delete(typed.clone());
                let core = self.broker.delete(now, "root", selection.clone(), &mut out);
                prop_assert_eq!(out.first(), Some(&Effect::Persist(selection)));
                let deleted = self.model.delete(|c| typed.contains(&c.code), &mut fx);
                self.broker.release_codes(&deleted);
                (core.map(|()| Answer::Done), Ok(Answer::Done))
            }
            Op::DeleteWhere {
                state,
                older_than_ms,
            } => {
                let filter = CaseFilter {
                    state: *state,
                    older_than_ms: *older_than_ms,
                };
                let selection = CaseSelection::resolve(&filter, now);
                let persist = Persist::DeleteWhere(selection.clone());
                let core = self.broker.delete(now, "root", persist.clone(), &mut out);
                prop_assert_eq!(out.first(), Some(&Effect::Persist(persist)));
                let before = older_than_ms.map(|ms| now.0.saturating_sub(ms));
                let state = *state;
                let deleted = self.model.delete(
                    |c| {
                        state.is_none_or(|s| c.state == s)
                            && before.is_none_or(|b| c.created_at.0 < b)
                    },
                    &mut fx,
                );
                self.broker.release_codes(&deleted);
                (core.map(|()| Answer::Done), Ok(Answer::Done))
            }
            Op::DeleteNothing => {
                let some = self.model.seen.first().copied();
                let record_of =
                    some.and_then(|code| self.broker.case(code).map(|c| c.record.clone()));
                match record_of {
                    Some(record) => {
                        let core = self
                            .broker
                            .delete(now, "root", Persist::Save(record), &mut out);
                        (core.map(|()| Answer::Done), Err(MErr::InvalidInput))
                    }
                    None => (Ok(Answer::Done), Ok(Answer::Done)),
                }
            }
        };

        match (&core, &model) {
            (Ok(core), Ok(model)) => prop_assert_eq!(core, model, "answers differ"),
            (Err(core), Err(model)) => {
                prop_assert!(
                    model.matches(core),
                    "refusals differ: core {core:?}, model {model:?}"
                );
                prop_assert!(out.is_empty(), "a refused command pushed {out:?}");
                prop_assert!(
                    self.snapshot() == before,
                    "a refused command changed the core"
                );
            }
            _ => prop_assert!(false, "core {core:?} but model {model:?}"),
        }
        prop_assert_eq!(Fx::of(&out), fx.sorted(), "effects differ");
        self.check_pairs(&out)?;
        self.compare()
    }

    /// A returned view must match the model's case.
    fn check_info(&self, info: &CaseInfo) -> Result<(), TestCaseError> {
        let case = self
            .model
            .cases
            .iter()
            .find(|c| c.code == info.code)
            .ok_or_else(|| TestCaseError::fail(format!("unknown case {} returned", info.code)))?;
        prop_assert_eq!(info.state, case.state);
        prop_assert_eq!(info.customer_online, case.customer.is_some());
        prop_assert_eq!(&info.expert, &case.expert.as_ref().map(|e| e.1.clone()));
        prop_assert_eq!(&info.customer, &case.customer_name);
        Ok(())
    }

    /// Every `Pair` effect names a case that now has exactly those two seats taken.
    fn check_pairs(&self, out: &[Effect]) -> Result<(), TestCaseError> {
        for effect in out {
            if let Effect::Pair {
                code,
                customer,
                expert,
            } = effect
            {
                let case = self
                    .broker
                    .case(*code)
                    .ok_or_else(|| TestCaseError::fail(format!("paired a closed case {code}")))?;
                prop_assert_eq!(case.customer, Some(*customer));
                prop_assert_eq!(case.expert.as_ref().map(|e| e.party), Some(*expert));
                prop_assert_eq!(case.record.state, CaseState::InProgress);
            }
        }
        Ok(())
    }

    /// The whole observable state of the core against the model, plus the core's own
    /// invariants.
    fn compare(&self) -> Result<(), TestCaseError> {
        let b = &self.broker;
        let m = &self.model;
        prop_assert_eq!(b.open_cases(), m.open_count(), "open-case count");
        prop_assert_eq!(b.codes_held(), m.cases.len(), "codes held");
        let mut seated = Vec::new();
        for case in &m.cases {
            let Some(core) = b.case(case.code) else {
                prop_assert!(!case.open(), "case {} is open in the model only", case.code);
                continue;
            };
            prop_assert!(case.open(), "case {} is open in the core only", case.code);
            let r = &core.record;
            prop_assert_eq!(r.state, case.state, "state of {}", case.code);
            prop_assert_eq!(r.created_at, case.created_at);
            prop_assert_eq!(r.updated_at, case.updated_at, "updated_at of {}", case.code);
            prop_assert_eq!(r.expires_at, case.expires_at);
            prop_assert_eq!(matches!(r.origin, CaseOrigin::Sos), case.sos);
            prop_assert_eq!(&r.customer, &case.customer_name);
            prop_assert_eq!(
                core.customer,
                case.customer,
                "customer seat of {}",
                case.code
            );
            prop_assert_eq!(
                core.expert.as_ref().map(|e| (e.party, e.name.clone())),
                case.expert.clone(),
                "expert seat of {}",
                case.code
            );
            match (&r.resume_secret_hash, &case.secret) {
                (None, None) => {}
                (Some(hash), Some(secret)) => prop_assert!(secret_matches(secret, hash)),
                (hash, secret) => prop_assert!(false, "secret {secret:?} vs hash {hash:?}"),
            }
            // Invariants of the core on its own.
            if r.state == CaseState::InProgress {
                prop_assert!(core.customer.is_some() && core.expert.is_some());
            }
            let last = r.history.last().map(|h| h.state);
            prop_assert_eq!(last, Some(r.state), "history ends in the state");
            for pair in r.history.windows(2) {
                let (a, b) = (pair[0].state, pair[1].state);
                let probe = CaseRecord {
                    state: a,
                    ..r.clone()
                };
                prop_assert!(a == b || probe.may_become(b), "history {a} -> {b}");
            }
            seated.extend(core.customer);
            seated.extend(core.expert.as_ref().map(|e| e.party));
        }
        let before = seated.len();
        seated.sort();
        seated.dedup();
        prop_assert_eq!(seated.len(), before, "a party sits in two cases");
        for party in CUSTOMERS.iter().chain(EXPERTS.iter()) {
            prop_assert_eq!(
                b.attached_case(*party),
                m.attached_of(*party),
                "attachment of {:?}",
                party
            );
        }
        let queue = b.queue_view();
        let expected = m.queue();
        prop_assert_eq!(
            queue.iter().map(|e| (e.code, e.online)).collect::<Vec<_>>(),
            m.view(),
            "queue order, offline customers in their place"
        );
        let mut position = 0;
        for entry in &queue {
            if entry.online {
                position += 1;
                prop_assert_eq!(entry.position, Some(position));
            } else {
                prop_assert_eq!(entry.position, None);
            }
            let case = m.cases.iter().find(|c| c.code == entry.code);
            prop_assert_eq!(Some(entry.waiting_since), case.map(|c| c.created_at));
        }
        prop_assert_eq!(position as usize, expected.len());
        if !m.idle.is_empty() {
            prop_assert!(expected.is_empty(), "experts wait while customers wait");
        }
        let next = m
            .cases
            .iter()
            .filter(|c| c.open())
            .map(|c| c.expires_at)
            .min();
        prop_assert_eq!(b.next_deadline(), next, "next deadline");
        Ok(())
    }
}

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(seed);
    for op in ops {
        harness.step(op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// The core and the model agree after every step of every sequence.
    #[test]
    fn broker_core_follows_the_reference_model(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(seed, &ops)?;
    }
}
