//! Unit tests of the pure broker core.
//!
//! Time is injected (`now` is an argument everywhere), so a 24-hour case lifetime is
//! tested to the millisecond without sleeping, and codes come from a seeded CSPRNG (or a
//! scripted one, to force collisions), so every run is the same.
//!
//! The tests follow the lifecycle table of DESIGN.md: every legal transition, every
//! illegal one (refused, nothing pushed, nothing changed), expiry at exactly the case
//! lifetime, code uniqueness, queue order, who may do what, bulk delete and input
//! validation.

use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{CryptoRng, RngCore, SeedableRng};
use sosq::protocol::{
    self, close_code, ActorRole, CaseFilter, CaseInfo, CaseOrigin, CaseState, Event, HistoryEntry,
    HistoryKind, Priority, QueueEntry, Role, Timestamp,
};
use sosq::SessionCode;

use super::*;

// ----- fixtures ------------------------------------------------------------------------

/// An arbitrary "now" far from zero, so that subtracting from it is meaningful.
const T0: Timestamp = Timestamp(1_700_000_000_000);

/// What a pull of an expert of the `general` team searched.
fn general() -> Searched {
    Searched {
        teams: vec![GENERAL.to_string()],
    }
}
/// The default case lifetime.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

const C1: PartyId = PartyId(1);
const C2: PartyId = PartyId(2);
const C3: PartyId = PartyId(3);
const E1: PartyId = PartyId(11);
const E2: PartyId = PartyId(12);
const E3: PartyId = PartyId(13);

/// `ms` milliseconds after [`T0`].
fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

fn broker() -> Broker {
    broker_with(BrokerConfig::default())
}

fn broker_with(config: BrokerConfig) -> Broker {
    Broker::new(config, Box::new(StdRng::seed_from_u64(7)))
}

/// A customer presses SOS; returns the case code and the resume secret.
fn sos(b: &mut Broker, now: Timestamp, party: PartyId, customer: &str) -> (SessionCode, String) {
    let mut out = Vec::new();
    let attached = b
        .open_sos(
            now,
            party,
            SosRequest::general(customer, "printer on fire"),
            &mut out,
        )
        .expect("open_sos");
    let secret = attached
        .resume_secret
        .expect("an SOS customer gets a resume secret");
    (attached.case.code, secret)
}

/// An expert creates a case by hand.
fn create(b: &mut Broker, now: Timestamp, expert: &str, customer: &str) -> SessionCode {
    let mut out = Vec::new();
    b.create(now, expert, customer, "vpn is down", &mut out)
        .expect("create")
        .code
}

fn join(b: &mut Broker, now: Timestamp, party: PartyId, code: SessionCode) -> Attached {
    let mut out = Vec::new();
    b.join(now, party, &code.to_string(), "Bob", None, &mut out)
        .expect("join")
}

fn connect(b: &mut Broker, now: Timestamp, party: PartyId, expert: &str, code: SessionCode) {
    let mut out = Vec::new();
    b.connect(now, party, expert, &code.to_string(), false, &mut out)
        .expect("connect");
}

fn pull(b: &mut Broker, now: Timestamp, party: PartyId, expert: &str) -> SessionCode {
    let mut out = Vec::new();
    b.pull(now, party, PullRequest::general(expert, false), &mut out)
        .expect("pull")
        .expect("a case")
        .code
}

fn disconnect(b: &mut Broker, now: Timestamp, party: PartyId) -> Vec<Effect> {
    let mut out = Vec::new();
    b.disconnect(now, party, Departure::Lost, &mut out);
    out
}

/// A paired party left `code`: exactly the relay unpaired, `told` (the other party) hears
/// `PeerLeft`, and the case saved.
fn assert_peer_left(b: &Broker, out: &[Effect], code: SessionCode, told: PartyId) {
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0], Effect::Unpair { code, drain: false });
    assert!(
        matches!(&out[1], Effect::Notify { party, event: Event::PeerLeft { code: c, .. } }
            if *party == told && *c == code),
        "{:?}",
        out[1]
    );
    assert_eq!(out[2], saved(b, code));
}

fn info(b: &Broker, code: SessionCode) -> CaseInfo {
    b.case(code).expect("an open case").info()
}

fn state(b: &Broker, code: SessionCode) -> CaseState {
    info(b, code).state
}

fn record(b: &Broker, code: SessionCode) -> CaseRecord {
    b.case(code).expect("an open case").record.clone()
}

fn history_states(history: &[HistoryEntry]) -> Vec<CaseState> {
    history.iter().map(|entry| entry.state).collect()
}

/// The effect that saves the case as it is now.
fn saved(b: &Broker, code: SessionCode) -> Effect {
    Effect::Persist(Persist::Save(record(b, code)))
}

fn queue_codes(b: &Broker) -> Vec<SessionCode> {
    b.queue_view().into_iter().map(|entry| entry.code).collect()
}

/// The records saved by `out`, in order.
fn saved_records(out: &[Effect]) -> Vec<&CaseRecord> {
    out.iter()
        .filter_map(|effect| match effect {
            Effect::Persist(Persist::Save(record)) => Some(record),
            _ => None,
        })
        .collect()
}

/// `(party, close code)` of every `Disconnect` in `out`, in order.
fn disconnects(out: &[Effect]) -> Vec<(PartyId, u32)> {
    out.iter()
        .filter_map(|effect| match effect {
            Effect::Disconnect { party, code, .. } => Some((*party, *code)),
            _ => None,
        })
        .collect()
}

/// `(party, event)` of every `Notify` in `out`, in order.
fn notifies(out: &[Effect]) -> Vec<(PartyId, Event)> {
    out.iter()
        .filter_map(|effect| match effect {
            Effect::Notify { party, event } => Some((*party, event.clone())),
            _ => None,
        })
        .collect()
}

fn paired_effects(
    b: &Broker,
    code: SessionCode,
    customer: (PartyId, &str),
    expert: (PartyId, &str),
) -> Vec<Effect> {
    vec![
        saved(b, code),
        Effect::Pair {
            code,
            customer: customer.0,
            expert: expert.0,
        },
        Effect::Notify {
            party: customer.0,
            event: Event::Paired {
                code,
                peer_role: Role::Expert,
                peer_name: expert.1.to_string(),
            },
        },
        Effect::Notify {
            party: expert.0,
            event: Event::Paired {
                code,
                peer_role: Role::Customer,
                peer_name: customer.1.to_string(),
            },
        },
    ]
}

/// A record in `state`, for tests of the lifecycle rules alone.
fn record_in(state: CaseState, code: SessionCode) -> CaseRecord {
    CaseRecord {
        code,
        origin: CaseOrigin::Sos,
        customer: "Alice".into(),
        description: String::new(),
        state,
        created_at: T0,
        updated_at: T0,
        expires_at: T0.plus(DAY),
        waiting_since: Some(T0),
        group: GENERAL.to_string(),
        assigned_to: None,
        priority: Priority::Normal,
        response_due: Some(T0.plus(Duration::from_secs(15 * 60))),
        first_response_at: None,
        resume_secret_hash: None,
        history: vec![HistoryEntry {
            at: T0,
            state,
            kind: HistoryKind::Event,
            event: "restored".into(),
            actor: None,
            address: None,
        }],
    }
}

fn some_code(n: u64) -> SessionCode {
    SessionCode::from_number(n).expect("a code")
}

/// One open case as the broker holds it: record, live seats, and the client's view.
type CaseView = (CaseRecord, Option<PartyId>, Option<ExpertSeat>, CaseInfo);

/// Everything observable about a broker, for "a refused command changes nothing".
#[derive(Debug, PartialEq)]
struct Snapshot {
    cases: Vec<Option<CaseView>>,
    queue: Vec<QueueEntry>,
    next_deadline: Option<Timestamp>,
    open_cases: usize,
    codes_held: usize,
    attached: Vec<Option<SessionCode>>,
}

impl Snapshot {
    fn of(b: &Broker, codes: &[SessionCode]) -> Snapshot {
        Snapshot {
            cases: codes
                .iter()
                .map(|&code| {
                    b.case(code).map(|case| {
                        (
                            case.record.clone(),
                            case.customer,
                            case.expert.clone(),
                            case.info(),
                        )
                    })
                })
                .collect(),
            queue: b.queue_view(),
            next_deadline: b.next_deadline(),
            open_cases: b.open_cases(),
            codes_held: b.codes_held(),
            attached: (0..32).map(|id| b.attached_case(PartyId(id))).collect(),
        }
    }
}

/// Runs a command that must be refused; checks that it pushed nothing and changed
/// nothing about the cases `codes` (nor the queue, deadlines, codes or attachments), and
/// returns the refusal.
fn refused<T: Debug>(
    b: &mut Broker,
    codes: &[SessionCode],
    command: impl FnOnce(&mut Broker, &mut Vec<Effect>) -> Result<T, BrokerError>,
) -> BrokerError {
    let before = Snapshot::of(b, codes);
    let mut out = Vec::new();
    let error = command(b, &mut out).expect_err("the command should be refused");
    assert!(out.is_empty(), "a refused command pushed {out:?}");
    assert_eq!(
        Snapshot::of(b, codes),
        before,
        "a refused command changed the broker ({error})"
    );
    error
}

/// A deterministic, scripted "CSPRNG" that hands out exactly the given values, to force
/// code collisions. Test-only: it is of course not secure.
#[derive(Clone)]
struct ScriptedRng(Arc<Mutex<VecDeque<u64>>>);

impl ScriptedRng {
    fn new(values: &[u64]) -> Self {
        ScriptedRng(Arc::new(Mutex::new(values.iter().copied().collect())))
    }

    fn remaining(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl RngCore for ScriptedRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .pop_front()
            .expect("the scripted RNG ran out of values")
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::rand_core::impls::fill_bytes_via_next(self, dst)
    }
}

impl CryptoRng for ScriptedRng {}

/// Raw RNG outputs that map to three different codes with one draw each.
const DRAW_A: u64 = 0;
const DRAW_B: u64 = 1 << 63;
const DRAW_C: u64 = 1 << 62;

fn scripted_broker(values: &[u64]) -> (Broker, ScriptedRng) {
    let rng = ScriptedRng::new(values);
    let b = Broker::new(BrokerConfig::default(), Box::new(rng.clone()));
    (b, rng)
}

/// The code a fresh broker issues when its RNG yields `draw` first.
fn code_for_draw(draw: u64) -> SessionCode {
    let (mut b, _) = scripted_broker(&[draw]);
    create(&mut b, T0, "ana", "probe")
}

// ----- 1. legal transitions ------------------------------------------------------------

#[test]
fn sos_case_is_pending_from_creation_with_customer_attached_and_queued() {
    let mut b = broker();
    let mut out = Vec::new();
    let attached = b
        .open_sos(
            T0,
            C1,
            SosRequest::general("  Alice ", "printer on fire"),
            &mut out,
        )
        .unwrap();
    let code = attached.case.code;
    let case = &attached.case;

    assert_eq!(case.state, CaseState::Pending);
    assert_eq!(case.origin, CaseOrigin::Sos);
    assert_eq!(case.customer, "Alice");
    assert_eq!(case.description, "printer on fire");
    assert!(case.customer_online);
    assert_eq!(case.expert, None);
    assert_eq!(case.created_at, T0);
    assert_eq!(case.updated_at, T0);
    assert_eq!(case.expires_at, T0.plus(DAY));
    assert_eq!(attached.position, Some(1));

    // The history shows the case was born `new` and became `pending` at once.
    let states = history_states(&record(&b, case.code).history);
    assert_eq!(states.first(), Some(&CaseState::New));
    assert_eq!(states.last(), Some(&CaseState::Pending));
    assert!(record(&b, case.code)
        .history
        .iter()
        .all(|entry| entry.at == T0));

    let secret = attached.resume_secret.unwrap();
    let record = record(&b, code);
    assert_eq!(record.waiting_since, Some(T0));
    assert_eq!(record.resume_secret_hash, Some(hash_secret(&secret)));

    assert_eq!(b.attached_case(C1), Some(code));
    assert_eq!(
        b.queue_view(),
        vec![QueueEntry {
            position: Some(1),
            code,
            customer: "Alice".into(),
            description: "printer on fire".into(),
            waiting_since: T0,
            priority: Priority::Normal,
            response_due: T0.plus(Duration::from_secs(15 * 60)),
            group: GENERAL.to_string(),
            assigned_to: None,
            online: true,
        }]
    );
    assert_eq!(out, vec![saved(&b, code)]);
    assert_eq!(b.open_cases(), 1);
    assert_eq!(b.next_deadline(), Some(T0.plus(DAY)));
}

#[test]
fn expert_created_case_starts_new_with_nobody_attached() {
    let mut b = broker();
    let mut out = Vec::new();
    let case = b.create(T0, "ana", "Bob", "vpn is down", &mut out).unwrap();

    assert_eq!(case.state, CaseState::New);
    assert_eq!(case.origin, CaseOrigin::CreatedByExpert("ana".into()));
    assert_eq!(case.customer, "Bob");
    assert!(!case.customer_online);
    assert_eq!(case.expert, None);
    assert_eq!(
        history_states(&record(&b, case.code).history),
        vec![CaseState::New]
    );
    assert_eq!(out, vec![saved(&b, case.code)]);
    assert!(b.queue_view().is_empty(), "only SOS cases are queued");
    assert_eq!(record(&b, case.code).resume_secret_hash, None);
    assert_eq!(b.next_deadline(), Some(T0.plus(DAY)));
}

#[test]
fn customer_join_moves_new_case_to_pending() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let mut out = Vec::new();
    let attached = b
        .join(at(5), C1, &code.to_string(), "Bob", None, &mut out)
        .unwrap();

    assert_eq!(attached.case.state, CaseState::Pending);
    assert!(attached.case.customer_online);
    assert_eq!(
        attached.position, None,
        "expert-created cases are not queued"
    );
    let secret = attached
        .resume_secret
        .expect("the first customer gets a secret");
    assert_eq!(
        record(&b, code).resume_secret_hash,
        Some(hash_secret(&secret))
    );
    assert_eq!(
        history_states(&record(&b, code).history).last(),
        Some(&CaseState::Pending)
    );
    assert_eq!(attached.case.updated_at, at(5));
    assert_eq!(out, vec![saved(&b, code)]);
    assert_eq!(b.attached_case(C1), Some(code));
    assert!(b.queue_view().is_empty());
}

#[test]
fn expert_connect_moves_new_case_to_pending() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let mut out = Vec::new();
    let case = b
        .connect(at(5), E1, "ben", &code.to_string(), false, &mut out)
        .unwrap();

    assert_eq!(case.state, CaseState::Pending);
    assert_eq!(case.expert.as_deref(), Some("ben"));
    assert!(!case.customer_online);
    assert_eq!(
        history_states(&record(&b, code).history).last(),
        Some(&CaseState::Pending)
    );
    assert_eq!(out, vec![saved(&b, code)]);
    assert_eq!(b.attached_case(E1), Some(code));
}

#[test]
fn customer_then_expert_pairs_the_case_in_progress() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    join(&mut b, at(1), C1, code);
    let mut out = Vec::new();
    let case = b
        .connect(at(2), E1, "ben", &code.to_string(), false, &mut out)
        .unwrap();

    assert_eq!(case.state, CaseState::InProgress);
    assert_eq!(case.updated_at, at(2));
    assert_eq!(
        history_states(&record(&b, code).history).last(),
        Some(&CaseState::InProgress)
    );
    // The customer's name in the Paired event is the case's, as the expert created it.
    assert_eq!(out, paired_effects(&b, code, (C1, "Bob"), (E1, "ben")));
}

#[test]
fn expert_then_customer_pairs_the_case_in_progress() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    connect(&mut b, at(1), E1, "ben", code);
    let mut out = Vec::new();
    let attached = b
        .join(at(2), C1, &code.to_string(), "Bob", None, &mut out)
        .unwrap();

    assert_eq!(attached.case.state, CaseState::InProgress);
    assert_eq!(
        history_states(&record(&b, attached.case.code).history),
        vec![
            CaseState::New,
            CaseState::New,
            CaseState::Pending,
            CaseState::Pending,
            CaseState::InProgress
        ]
    );
    assert_eq!(out, paired_effects(&b, code, (C1, "Bob"), (E1, "ben")));
}

#[test]
fn expert_disconnect_returns_paired_case_to_pending_with_unpair_and_peer_left() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1), E1, "ben");
    assert_eq!(state(&b, code), CaseState::InProgress);

    let out = disconnect(&mut b, at(5), E1);

    assert_peer_left(&b, &out, code, C1);

    let case = info(&b, code);
    assert_eq!(case.state, CaseState::Pending);
    assert_eq!(case.expert, None);
    assert!(case.customer_online);
    assert_eq!(case.updated_at, at(5));
    let history = record(&b, code).history;
    let last = history.last().unwrap();
    assert_eq!((last.at, last.state), (at(5), CaseState::Pending));
    assert_eq!(b.attached_case(E1), None);
    assert_eq!(b.attached_case(C1), Some(code));
    assert_eq!(queue_codes(&b), vec![code], "the customer waits again");
}

#[test]
fn a_vanished_customer_lets_its_pulling_expert_go_and_keeps_its_place_offline() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1), E1, "ben");

    let out = disconnect(&mut b, at(5), C1);

    // The relay is cut (the customer was lost), the expert is let go, the case saved.
    assert_eq!(out[0], Effect::Unpair { code, drain: false });
    assert!(
        matches!(&out[1], Effect::Notify { party, event: Event::Released { code: c, .. } }
            if *party == E1 && *c == code),
        "{:?}",
        out[1]
    );
    assert_eq!(out[2], saved(&b, code));
    let case = info(&b, code);
    assert_eq!(case.state, CaseState::Pending);
    assert!(!case.customer_online);
    assert_eq!(case.expert, None, "the expert is free for the next case");
    assert_eq!(b.attached_case(C1), None);
    assert_eq!(b.attached_case(E1), None);
    // The case keeps its place, shown offline, and nobody can pull it.
    let queue = b.queue_view();
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].code, queue[0].online, queue[0].position),
        (code, false, None)
    );
    let error = refused(&mut b, &[code], |b, out| {
        b.pull(at(6), E1, PullRequest::general("ben", false), out)
    });
    assert!(
        matches!(error, BrokerError::NobodyOnline(1, _)),
        "{error:?}"
    );

    // Back with its secret, it is the next case again.
    join_with(&mut b, at(7), C2, code, &secret);
    assert_eq!(pull(&mut b, at(8), E1, "ben"), code);
}

#[test]
fn a_customer_who_leaves_on_purpose_lets_the_relay_drain() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    join(&mut b, at(1), C1, code);
    connect(&mut b, at(2), E1, "ana", code);
    let mut out = Vec::new();
    b.disconnect(at(3), C1, Departure::Left, &mut out);
    assert_eq!(out[0], Effect::Unpair { code, drain: true });
    // An expert who came by code waits for the customer to come back.
    assert_peer_left_told(&out, E1, code);
    assert_eq!(b.attached_case(E1), Some(code));
    assert_eq!(info(&b, code).expert.as_deref(), Some("ana"));
}

fn join_with(b: &mut Broker, now: Timestamp, party: PartyId, code: SessionCode, secret: &str) {
    let mut out = Vec::new();
    b.join(
        now,
        party,
        &code.to_string(),
        "Alice",
        Some(secret),
        &mut out,
    )
    .expect("join with the secret");
}

fn assert_peer_left_told(out: &[Effect], told: PartyId, code: SessionCode) {
    assert!(
        out.iter().any(|effect| matches!(effect,
            Effect::Notify { party, event: Event::PeerLeft { code: c, .. } }
                if *party == told && *c == code)),
        "{out:?}"
    );
}

#[test]
fn customer_coming_back_with_secret_is_paired_again() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    connect(&mut b, at(1), E1, "ben", code);
    disconnect(&mut b, at(2), C1);

    let mut out = Vec::new();
    let attached = b
        .join(
            at(3),
            C2,
            &code.to_string(),
            "Alice",
            Some(&secret),
            &mut out,
        )
        .unwrap();

    assert_eq!(attached.case.state, CaseState::InProgress);
    assert_eq!(
        attached.resume_secret, None,
        "a returning customer keeps its secret"
    );
    assert_eq!(out, paired_effects(&b, code, (C2, "Alice"), (E1, "ben")));
    assert_eq!(
        history_states(&record(&b, code).history)
            .iter()
            .filter(|s| **s == CaseState::InProgress)
            .count(),
        3,
        "paired, first response within target, paired again"
    );
}

#[test]
fn close_from_new_by_expert() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let mut out = Vec::new();
    let case = b
        .close(at(7), Closer::Expert("ana"), &code.to_string(), &mut out)
        .unwrap();

    assert_eq!(case.state, CaseState::Closed);
    assert_eq!(case.updated_at, at(7));
    assert_eq!(
        history_states(&saved_records(&out)[0].history),
        vec![CaseState::New, CaseState::Closed]
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let records = saved_records(&out);
    assert_eq!(records[0].state, CaseState::Closed);
    assert_eq!(records[0].code, case.code);
    assert!(b.case(code).is_none());
    assert_eq!(b.open_cases(), 0);
    assert_eq!(b.next_deadline(), None);
    assert_eq!(b.codes_held(), 1, "a closed case keeps its code");
}

#[test]
fn close_from_pending_by_its_attached_customer() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    let mut out = Vec::new();
    let case = b
        .close(
            at(7),
            Closer::Customer {
                party: C1,
                secret: None,
            },
            &code.to_string(),
            &mut out,
        )
        .unwrap();

    assert_eq!(case.state, CaseState::Closed);
    assert_eq!(
        history_states(&saved_records(&out)[0].history).last(),
        Some(&CaseState::Closed)
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(saved_records(&out)[0].state, CaseState::Closed);
    assert!(matches!(
        &out[1],
        Effect::Notify { party, event: Event::SessionEnded { code: c, .. } }
            if *party == C1 && *c == code
    ));
    assert_eq!(b.attached_case(C1), None);
    assert!(b.queue_view().is_empty());
    assert!(b.case(code).is_none());
}

#[test]
fn close_from_in_progress_ends_both_sessions() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1), E1, "ben");
    let mut out = Vec::new();
    let case = b
        .close(at(9), Closer::Expert("ben"), &code.to_string(), &mut out)
        .unwrap();

    assert_eq!(case.state, CaseState::Closed);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(saved_records(&out)[0].state, CaseState::Closed);
    assert_eq!(out[1], Effect::Unpair { code, drain: false });
    let told: Vec<PartyId> = notifies(&out)
        .into_iter()
        .map(|(party, event)| {
            assert!(matches!(event, Event::SessionEnded { code: c, .. } if c == code));
            party
        })
        .collect();
    assert_eq!(told, vec![C1, E1]);
    assert_eq!(b.attached_case(C1), None);
    assert_eq!(b.attached_case(E1), None);
}

#[test]
fn close_by_customer_with_resume_secret_from_another_connection() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    disconnect(&mut b, at(1), C1);
    let mut out = Vec::new();
    let case = b
        .close(
            at(2),
            Closer::Customer {
                party: C2,
                secret: Some(&secret),
            },
            &code.to_string(),
            &mut out,
        )
        .unwrap();
    assert_eq!(case.state, CaseState::Closed);
    assert_eq!(out.len(), 1, "nobody attached, nobody to tell: {out:?}");
    assert!(b.case(code).is_none());
}

#[test]
fn close_by_customer_with_secret_while_the_case_is_attached_elsewhere() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    let mut out = Vec::new();
    b.close(
        at(2),
        Closer::Customer {
            party: C2,
            secret: Some(&secret),
        },
        &code.to_string(),
        &mut out,
    )
    .unwrap();
    assert!(b.case(code).is_none());
    assert_eq!(b.attached_case(C1), None);
    assert_eq!(
        notifies(&out)
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        vec![C1]
    );
}

#[test]
fn open_cases_expire_from_new_pending_and_in_progress() {
    let mut b = broker();
    let new = create(&mut b, T0, "ana", "Bob");
    let (pending, _) = sos(&mut b, T0, C1, "Alice");
    let (in_progress, _) = sos(&mut b, T0, C2, "Carol");
    connect(&mut b, T0, E1, "ben", in_progress);
    assert_eq!(state(&b, new), CaseState::New);
    assert_eq!(state(&b, pending), CaseState::Pending);
    assert_eq!(state(&b, in_progress), CaseState::InProgress);

    let mut out = Vec::new();
    let expired = b.expire_due(T0.plus(DAY), &mut out);

    assert_eq!(
        expired.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([new, pending, in_progress])
    );
    let records = saved_records(&out);
    assert_eq!(records.len(), 3);
    for record in records {
        assert_eq!(record.state, CaseState::Expired);
        assert_eq!(record.updated_at, T0.plus(DAY));
        let from = record.history[record.history.len() - 2].state;
        assert!(from.is_open(), "expired from {from}");
        assert_eq!(record.history.last().unwrap().state, CaseState::Expired);
    }
    assert_eq!(b.open_cases(), 0);
    assert!(b.queue_view().is_empty());
}

#[test]
fn may_become_allows_exactly_the_lifecycle_table() {
    use CaseState::*;
    let legal = [
        (New, Pending),
        (New, Closed),
        (New, Expired),
        (Pending, InProgress),
        (Pending, Closed),
        (Pending, Expired),
        (InProgress, Pending),
        (InProgress, Closed),
        (InProgress, Expired),
    ];
    let code = some_code(123_456_789);
    for from in CaseState::ALL {
        for to in CaseState::ALL {
            let mut record = record_in(from, code);
            let allowed = legal.contains(&(from, to));
            assert_eq!(record.may_become(to), allowed, "{from} -> {to}");
            let result = record.transition(to, at(10), HistoryKind::Event, "step", "test");
            if allowed {
                assert_eq!(result, Ok(()), "{from} -> {to}");
                assert_eq!(record.state, to);
                assert_eq!(record.updated_at, at(10));
                assert_eq!(
                    record.history.last(),
                    Some(&HistoryEntry {
                        at: at(10),
                        state: to,
                        kind: HistoryKind::Event,
                        event: "step".into(),
                        actor: None,
                        address: None,
                    })
                );
                assert_eq!(record.history.len(), 2);
            }
        }
    }
}

// ----- 2. illegal transitions ----------------------------------------------------------

#[test]
fn every_illegal_record_transition_is_refused_and_changes_nothing() {
    let code = some_code(42);
    let mut refusals = 0;
    for from in CaseState::ALL {
        for to in CaseState::ALL {
            let mut record = record_in(from, code);
            if record.may_become(to) {
                continue;
            }
            let before = record.clone();
            assert_eq!(
                record.transition(to, at(10), HistoryKind::Event, "step", "test"),
                Err(BrokerError::IllegalTransition {
                    code,
                    from,
                    action: "test"
                }),
                "{from} -> {to}"
            );
            assert_eq!(record, before, "{from} -> {to} changed the record");
            refusals += 1;
        }
    }
    // 25 pairs, 9 legal.
    assert_eq!(refusals, 16);
}

#[test]
fn closed_and_expired_records_refuse_every_transition() {
    let code = some_code(7);
    for from in [CaseState::Closed, CaseState::Expired] {
        for to in CaseState::ALL {
            let mut record = record_in(from, code);
            let before = record.clone();
            let error = record
                .transition(to, at(1), HistoryKind::Event, "step", "reopen")
                .unwrap_err();
            assert_eq!(
                error,
                BrokerError::IllegalTransition {
                    code,
                    from,
                    action: "reopen"
                }
            );
            assert_eq!(record, before);
            assert_eq!(
                error.to_string(),
                format!("cannot reopen case {code}: it is {from}")
            );
        }
    }
}

#[test]
fn a_new_case_cannot_jump_to_in_progress() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let mut record = record(&b, code);
    let before = record.clone();
    assert_eq!(
        record.transition(
            CaseState::InProgress,
            at(1),
            HistoryKind::Paired,
            "skip",
            "start the session of"
        ),
        Err(BrokerError::IllegalTransition {
            code,
            from: CaseState::New,
            action: "start the session of"
        })
    );
    assert_eq!(record, before);
    assert_eq!(b.case(code).unwrap().record, before);
}

#[test]
fn closing_a_closed_case_is_unknown_code_and_changes_nothing() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let other = create(&mut b, T0, "ana", "Dan");
    let mut out = Vec::new();
    b.close(at(1), Closer::Expert("ana"), &code.to_string(), &mut out)
        .unwrap();

    let error = refused(&mut b, &[code, other], |b, out| {
        b.close(at(2), Closer::Expert("ana"), &code.to_string(), out)
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
    assert_eq!(error.kind(), sosq::protocol::ErrorKind::UnknownCode);
}

#[test]
fn an_expired_case_cannot_be_joined_connected_viewed_or_closed() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    let other = create(&mut b, at(1), "ana", "Dan");
    let mut out = Vec::new();
    assert_eq!(b.expire_due(T0.plus(DAY), &mut out), vec![code]);
    let typed = code.to_string();
    let codes = [code, other];

    let error = refused(&mut b, &codes, |b, out| {
        b.join(
            at(DAY.as_millis() as u64 + 1),
            C2,
            &typed,
            "Alice",
            Some(&secret),
            out,
        )
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
    let error = refused(&mut b, &codes, |b, out| {
        b.connect(at(0), E1, "ben", &typed, false, out)
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
    let error = refused(&mut b, &codes, |b, out| {
        b.close(at(0), Closer::Expert("ben"), &typed, out)
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
    let error = refused(&mut b, &codes, |b, _| {
        b.customer_view(C2, &typed, Some(&secret))
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
}

#[test]
fn a_code_that_was_never_issued_is_unknown_everywhere() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let ghost = SessionCode::from_number((code.number() + 1) % sosq::code::CODE_SPACE).unwrap();
    let typed = ghost.to_string();
    let codes = [code, ghost];

    for error in [
        refused(&mut b, &codes, |b, out| {
            b.join(at(1), C1, &typed, "Bob", None, out)
        }),
        refused(&mut b, &codes, |b, out| {
            b.connect(at(1), E1, "ben", &typed, false, out)
        }),
        refused(&mut b, &codes, |b, out| {
            b.close(at(1), Closer::Expert("ben"), &typed, out)
        }),
        refused(&mut b, &codes, |b, _| b.customer_view(C1, &typed, None)),
    ] {
        assert_eq!(error, BrokerError::UnknownCode(ghost));
    }
}

#[test]
fn a_closed_case_cannot_be_joined_or_connected() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    join(&mut b, at(1), C1, code);
    let mut out = Vec::new();
    b.close(at(2), Closer::Expert("ana"), &code.to_string(), &mut out)
        .unwrap();
    let typed = code.to_string();

    let error = refused(&mut b, &[code], |b, out| {
        b.join(at(3), C2, &typed, "Bob", None, out)
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
    let error = refused(&mut b, &[code], |b, out| {
        b.connect(at(3), E1, "ben", &typed, false, out)
    });
    assert_eq!(error, BrokerError::UnknownCode(code));
}

#[test]
fn disconnect_of_an_unknown_party_changes_nothing() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    let before = Snapshot::of(&b, &[code]);
    assert!(disconnect(&mut b, at(1), PartyId(99)).is_empty());
    assert_eq!(Snapshot::of(&b, &[code]), before);
    // A party whose case was closed is gone too.
    let mut out = Vec::new();
    b.close(at(2), Closer::Expert("ana"), &code.to_string(), &mut out)
        .unwrap();
    let before = Snapshot::of(&b, &[code]);
    assert!(disconnect(&mut b, at(3), C1).is_empty());
    assert_eq!(Snapshot::of(&b, &[code]), before);
}

// ----- 3. expiry -----------------------------------------------------------------------

#[test]
fn a_case_expires_exactly_at_its_ttl_and_not_a_millisecond_before() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1_000), E1, "ben");
    let deadline = T0.plus(DAY);
    assert_eq!(info(&b, code).expires_at, deadline);
    assert_eq!(b.next_deadline(), Some(deadline));

    // One millisecond early: nothing happens.
    let before = Snapshot::of(&b, &[code]);
    let mut out = Vec::new();
    assert!(b.expire_due(Timestamp(deadline.0 - 1), &mut out).is_empty());
    assert!(out.is_empty());
    assert_eq!(Snapshot::of(&b, &[code]), before);
    assert_eq!(state(&b, code), CaseState::InProgress);

    // Exactly at the deadline: expired, both parties dropped with EXPIRED.
    assert_eq!(b.expire_due(deadline, &mut out), vec![code]);
    assert_eq!(out.len(), 4, "{out:?}");
    let records = saved_records(&out);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, CaseState::Expired);
    assert_eq!(records[0].updated_at, deadline);
    let last = records[0].history.last().unwrap();
    assert_eq!((last.at, last.state), (deadline, CaseState::Expired));
    assert!(last.event.contains(&humanize(DAY)), "{}", last.event);
    assert!(matches!(out[0], Effect::Persist(Persist::Save(_))));
    assert_eq!(out[1], Effect::Unpair { code, drain: false });
    assert_eq!(
        disconnects(&out),
        vec![(C1, close_code::EXPIRED), (E1, close_code::EXPIRED)]
    );

    // The code stops working.
    assert!(b.case(code).is_none());
    assert_eq!(b.attached_case(C1), None);
    assert_eq!(b.attached_case(E1), None);
    assert_eq!(b.next_deadline(), None);
    let mut out = Vec::new();
    assert_eq!(
        b.join(
            deadline,
            C2,
            &code.to_string(),
            "Alice",
            Some(&secret),
            &mut out
        ),
        Err(BrokerError::UnknownCode(code))
    );
    assert_eq!(
        b.connect(deadline, E2, "cid", &code.to_string(), false, &mut out),
        Err(BrokerError::UnknownCode(code))
    );
    assert!(out.is_empty());
    // And it does not expire twice.
    assert!(b.expire_due(deadline.plus(DAY), &mut out).is_empty());
    assert!(out.is_empty());
}

#[test]
fn next_deadline_reports_the_earliest_and_moves_on() {
    let mut b = broker();
    assert_eq!(b.next_deadline(), None);
    let first = create(&mut b, T0, "ana", "A");
    let second = create(&mut b, at(10), "ana", "B");
    let third = create(&mut b, at(20), "ana", "C");
    assert_eq!(b.next_deadline(), Some(T0.plus(DAY)));

    let mut out = Vec::new();
    assert_eq!(b.expire_due(T0.plus(DAY), &mut out), vec![first]);
    assert_eq!(b.next_deadline(), Some(at(10).plus(DAY)));

    // Closing a case forgets its deadline.
    b.close(at(30), Closer::Expert("ana"), &second.to_string(), &mut out)
        .unwrap();
    assert_eq!(b.next_deadline(), Some(at(20).plus(DAY)));

    // Attaching does not move the deadline: it counts from creation.
    join(&mut b, at(40), C1, third);
    assert_eq!(b.next_deadline(), Some(at(20).plus(DAY)));

    out.clear();
    assert!(b
        .expire_due(Timestamp(at(20).plus(DAY).0 - 1), &mut out)
        .is_empty());
    assert_eq!(b.expire_due(at(20).plus(DAY), &mut out), vec![third]);
    assert_eq!(disconnects(&out), vec![(C1, close_code::EXPIRED)]);
    assert_eq!(b.next_deadline(), None);
}

#[test]
fn expire_due_takes_every_overdue_case_earliest_first() {
    let mut b = broker();
    let first = create(&mut b, T0, "ana", "A");
    let second = create(&mut b, at(5), "ana", "B");
    let later = create(&mut b, at(DAY.as_millis() as u64), "ana", "C");
    let mut out = Vec::new();
    assert_eq!(
        b.expire_due(at(DAY.as_millis() as u64 + 5), &mut out),
        vec![first, second]
    );
    assert_eq!(saved_records(&out).len(), 2);
    assert!(disconnects(&out).is_empty(), "nobody was attached");
    assert_eq!(state(&b, later), CaseState::New);
}

#[test]
fn a_custom_ttl_is_honoured_to_the_millisecond() {
    let ttl = Duration::from_secs(90);
    let mut b = broker_with(BrokerConfig {
        case_ttl: ttl,
        ..BrokerConfig::default()
    });
    assert_eq!(b.config().case_ttl, ttl);
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    assert_eq!(info(&b, code).expires_at, at(90_000));
    let mut out = Vec::new();
    assert!(b.expire_due(at(89_999), &mut out).is_empty());
    assert_eq!(b.expire_due(at(90_000), &mut out), vec![code]);
    assert_eq!(disconnects(&out), vec![(C1, close_code::EXPIRED)]);
    assert!(
        b.queue_view().is_empty(),
        "an expired case leaves the queue"
    );
    let record = saved_records(&out)[0];
    assert!(
        record
            .history
            .last()
            .unwrap()
            .event
            .contains(&humanize(ttl)),
        "{:?}",
        record.history.last()
    );
}

#[test]
fn a_restored_overdue_case_expires_on_the_next_expire_due() {
    let mut b = broker();
    let code = some_code(555_000_111);
    let mut overdue = record_in(CaseState::Pending, code);
    overdue.expires_at = at(100);
    b.restore(overdue.clone());
    assert_eq!(b.open_cases(), 1);
    assert_eq!(b.codes_held(), 1);
    assert!(
        !info(&b, code).customer_online,
        "nobody is attached after a restart"
    );
    assert!(b.queue_view().is_empty());
    assert_eq!(b.next_deadline(), Some(at(100)));

    let mut out = Vec::new();
    assert_eq!(b.expire_due(at(1_000), &mut out), vec![code]);
    assert_eq!(out.len(), 1);
    assert_eq!(saved_records(&out)[0].state, CaseState::Expired);
    assert_eq!(b.open_cases(), 0);
}

// ----- 4. code uniqueness --------------------------------------------------------------

#[test]
fn twenty_thousand_cases_get_distinct_codes() {
    const N: usize = 20_000;
    let mut b = broker_with(BrokerConfig {
        max_open_cases: N,
        ..BrokerConfig::default()
    });
    let mut codes = HashSet::new();
    for i in 0..N {
        let code = create(&mut b, at(i as u64), "ana", "Bob");
        assert!(codes.insert(code), "code {code} issued twice");
    }
    assert_eq!(codes.len(), N);
    assert_eq!(b.open_cases(), N);
    assert_eq!(b.codes_held(), N);

    // The limit holds, and refusing changes nothing.
    let sample: Vec<SessionCode> = codes.iter().copied().take(3).collect();
    let error = refused(&mut b, &sample, |b, out| {
        b.create(at(0), "ana", "Bob", "", out)
    });
    assert_eq!(error, BrokerError::TooManyCases(N));
}

#[test]
fn a_colliding_draw_is_retried_and_the_next_draw_used() {
    let code_a = code_for_draw(DRAW_A);
    let code_b = code_for_draw(DRAW_B);
    assert_ne!(code_a, code_b);

    let (mut b, rng) = scripted_broker(&[DRAW_A, DRAW_A, DRAW_B]);
    assert_eq!(create(&mut b, T0, "ana", "first"), code_a);
    assert_eq!(create(&mut b, T0, "ana", "second"), code_b);
    assert_eq!(rng.remaining(), 0, "the colliding draw was thrown away");
}

#[test]
fn codes_of_restored_closed_or_expired_cases_are_never_issued_again() {
    let code_a = code_for_draw(DRAW_A);
    let code_b = code_for_draw(DRAW_B);
    let code_c = code_for_draw(DRAW_C);

    let (mut b, rng) = scripted_broker(&[DRAW_A, DRAW_B, DRAW_C]);
    b.restore(record_in(CaseState::Closed, code_a));
    b.restore(record_in(CaseState::Expired, code_b));
    assert_eq!(b.open_cases(), 0, "closed cases are not loaded as open");
    assert_eq!(b.codes_held(), 2);
    assert_eq!(b.next_deadline(), None);
    assert!(b.case(code_a).is_none());

    assert_eq!(create(&mut b, T0, "ana", "Bob"), code_c);
    assert_eq!(rng.remaining(), 0);
    assert_eq!(b.codes_held(), 3);
}

#[test]
fn a_code_released_by_the_store_may_be_issued_again() {
    let code_a = code_for_draw(DRAW_A);
    let (mut b, rng) = scripted_broker(&[DRAW_A]);
    b.restore(record_in(CaseState::Closed, code_a));
    b.release_codes(&[code_a]);
    assert_eq!(b.codes_held(), 0);
    assert_eq!(create(&mut b, T0, "ana", "Bob"), code_a);
    assert_eq!(rng.remaining(), 0);
}

#[test]
fn release_codes_never_frees_the_code_of_an_open_case() {
    let code_a = code_for_draw(DRAW_A);
    let code_b = code_for_draw(DRAW_B);
    let (mut b, rng) = scripted_broker(&[DRAW_A, DRAW_A, DRAW_B]);
    assert_eq!(create(&mut b, T0, "ana", "Bob"), code_a);
    b.release_codes(&[code_a]);
    assert_eq!(b.codes_held(), 1);
    assert_eq!(create(&mut b, T0, "ana", "Dan"), code_b);
    assert_eq!(rng.remaining(), 0);
}

#[test]
fn closed_and_expired_cases_keep_their_codes_until_released() {
    let mut b = broker();
    let closed = create(&mut b, T0, "ana", "A");
    let expired = create(&mut b, at(1), "ana", "B");
    let mut out = Vec::new();
    b.close(at(2), Closer::Expert("ana"), &closed.to_string(), &mut out)
        .unwrap();
    b.expire_due(at(1).plus(DAY), &mut out);
    assert_eq!(b.open_cases(), 0);
    assert_eq!(b.codes_held(), 2);
    b.release_codes(&[closed, expired]);
    assert_eq!(b.codes_held(), 0);
}

#[test]
fn too_many_open_cases_are_refused_until_one_closes() {
    let mut b = broker_with(BrokerConfig {
        max_open_cases: 2,
        ..BrokerConfig::default()
    });
    let first = create(&mut b, T0, "ana", "A");
    let (second, _) = sos(&mut b, T0, C1, "B");
    let codes = [first, second];
    assert_eq!(
        refused(&mut b, &codes, |b, out| b.create(
            at(1),
            "ana",
            "C",
            "",
            out
        )),
        BrokerError::TooManyCases(2)
    );
    assert_eq!(
        refused(&mut b, &codes, |b, out| b.open_sos(
            at(1),
            C2,
            SosRequest::general("C", ""),
            out
        )),
        BrokerError::TooManyCases(2)
    );
    let mut out = Vec::new();
    b.close(at(2), Closer::Expert("ana"), &first.to_string(), &mut out)
        .unwrap();
    create(&mut b, at(3), "ana", "C");
    assert_eq!(b.open_cases(), 2);
}

#[test]
fn resume_secrets_are_random_hex_and_only_their_hash_is_kept() {
    let mut b = broker();
    let (first, secret_1) = sos(&mut b, T0, C1, "Alice");
    let (_, secret_2) = sos(&mut b, T0, C2, "Carol");
    assert_ne!(secret_1, secret_2);
    for secret in [&secret_1, &secret_2] {
        assert_eq!(secret.len(), 32);
        assert!(secret
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
    let hash = record(&b, first).resume_secret_hash.unwrap();
    assert_ne!(hash, secret_1);
    assert_eq!(hash.len(), 64);
    assert!(secret_matches(&secret_1, &hash));
    assert!(secret_matches(&format!("  {secret_1}\n"), &hash));
    assert!(!secret_matches(&secret_2, &hash));
    assert!(!secret_matches("", &hash));
}

// ----- 5. the queue --------------------------------------------------------------------

#[test]
fn the_queue_serves_the_oldest_waiting_case_first() {
    let mut b = broker();
    let (a, _) = sos(&mut b, T0, C1, "A");
    let (bb, _) = sos(&mut b, at(1), C2, "B");
    let mut out = Vec::new();
    let third = b
        .open_sos(at(2), C3, SosRequest::general("C", ""), &mut out)
        .unwrap();
    let c = third.case.code;
    assert_eq!(third.position, Some(3));
    assert_eq!(queue_codes(&b), vec![a, bb, c]);
    assert_eq!(
        b.queue_view()
            .iter()
            .map(|entry| entry.position)
            .collect::<Vec<_>>(),
        vec![Some(1), Some(2), Some(3)]
    );

    assert_eq!(pull(&mut b, at(3), E1, "ben"), a);
    assert_eq!(pull(&mut b, at(4), E2, "cid"), bb);
    assert_eq!(queue_codes(&b), vec![c]);
    assert_eq!(b.queue_view()[0].position, Some(1));
}

#[test]
fn pull_takes_the_front_and_pairs_it() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    sos(&mut b, at(1), C2, "Bob");
    let mut out = Vec::new();
    let case = b
        .pull(at(2), E1, PullRequest::general("ben", false), &mut out)
        .unwrap()
        .unwrap();

    assert_eq!(case.code, code);
    assert_eq!(case.state, CaseState::InProgress);
    assert_eq!(case.expert.as_deref(), Some("ben"));
    assert_eq!(out, paired_effects(&b, code, (C1, "Alice"), (E1, "ben")));
    assert_eq!(b.attached_case(E1), Some(code));
    assert_eq!(queue_codes(&b).len(), 1);
    assert!(!queue_codes(&b).contains(&code));
}

#[test]
fn a_case_whose_expert_disconnects_goes_back_to_its_original_place() {
    let mut b = broker();
    let (a, _) = sos(&mut b, T0, C1, "A");
    let (bb, _) = sos(&mut b, at(1), C2, "B");
    assert_eq!(pull(&mut b, at(2), E1, "ben"), a);
    let (c, _) = sos(&mut b, at(3), C3, "C");
    assert_eq!(queue_codes(&b), vec![bb, c]);

    disconnect(&mut b, at(4), E1);

    assert_eq!(queue_codes(&b), vec![a, bb, c]);
    assert_eq!(b.queue_view()[0].waiting_since, T0);
    assert_eq!(pull(&mut b, at(5), E2, "cid"), a);
}

#[test]
fn a_case_whose_expert_disconnects_keeps_its_place_among_same_millisecond_arrivals() {
    let mut b = broker();
    let (a, _) = sos(&mut b, T0, C1, "A");
    let (bb, _) = sos(&mut b, T0, C2, "B");
    let (c, _) = sos(&mut b, T0, C3, "C");
    assert_eq!(queue_codes(&b), vec![a, bb, c]);
    assert_eq!(pull(&mut b, T0, E1, "ben"), a);

    disconnect(&mut b, T0, E1);

    assert_eq!(queue_codes(&b), vec![a, bb, c], "A lost its turn");
}

#[test]
fn a_customer_who_disconnects_waits_offline_in_its_place() {
    let mut b = broker();
    let (a, secret) = sos(&mut b, T0, C1, "A");
    let (bb, _) = sos(&mut b, at(1), C2, "B");

    let out = disconnect(&mut b, at(2), C1);

    assert_eq!(
        out,
        vec![saved(&b, a)],
        "no pairing, so no unpair or peer-left"
    );
    assert_eq!(queue_codes(&b), vec![a, bb], "shown in its place, offline");
    let queue = b.queue_view();
    assert_eq!((queue[0].online, queue[0].position), (false, None));
    assert_eq!((queue[1].online, queue[1].position), (true, Some(1)));
    assert_eq!(
        state(&b, a),
        CaseState::Pending,
        "still waiting for a partner"
    );
    assert!(!info(&b, a).customer_online);
    assert_eq!(pull(&mut b, at(3), E1, "ben"), bb);
    assert_eq!(
        refused(&mut b, &[a, bb], |b, out| b.pull(
            at(4),
            E2,
            PullRequest::general("cid", false),
            out
        )),
        BrokerError::NobodyOnline(1, general())
    );

    // Coming back with the secret puts the case back in line, online.
    let mut out = Vec::new();
    let back = b
        .join(at(5), C3, &a.to_string(), "A", Some(&secret), &mut out)
        .unwrap();
    assert_eq!(back.position, Some(1));
    assert_eq!(queue_codes(&b), vec![a]);
}

#[test]
fn pull_with_an_empty_queue_is_refused() {
    let mut b = broker();
    assert_eq!(
        refused(&mut b, &[], |b, out| b.pull(
            T0,
            E1,
            PullRequest::general("ben", false),
            out
        )),
        BrokerError::QueueEmpty(general())
    );
    // Neither expert-created cases nor offline customers are pullable.
    let created = create(&mut b, T0, "ana", "Bob");
    join(&mut b, at(1), C1, created);
    let (offline, _) = sos(&mut b, at(2), C2, "Carol");
    disconnect(&mut b, at(3), C2);
    let error = refused(&mut b, &[created, offline], |b, out| {
        b.pull(at(4), E1, PullRequest::general("ben", false), out)
    });
    assert!(
        matches!(error, BrokerError::NobodyOnline(1, _)),
        "{error:?}"
    );
    assert_eq!(error.kind(), sosq::protocol::ErrorKind::QueueEmpty);
}

#[test]
fn pull_with_wait_pairs_the_next_sos_case_immediately() {
    let mut b = broker();
    let mut out = Vec::new();
    assert_eq!(
        b.pull(T0, E1, PullRequest::general("ben", true), &mut out),
        Ok(None)
    );
    assert!(out.is_empty());
    assert_eq!(b.attached_case(E1), None);

    let attached = b
        .open_sos(at(1), C1, SosRequest::general("Alice", "help"), &mut out)
        .unwrap();
    let code = attached.case.code;

    assert_eq!(attached.case.state, CaseState::InProgress);
    assert_eq!(attached.case.expert.as_deref(), Some("ben"));
    assert_eq!(attached.position, None);
    assert!(attached.resume_secret.is_some());
    assert_eq!(b.attached_case(E1), Some(code));
    assert!(b.queue_view().is_empty());
    assert_eq!(
        history_states(&record(&b, attached.case.code).history),
        vec![
            CaseState::New,
            CaseState::New,
            CaseState::Pending,
            CaseState::Pending,
            CaseState::InProgress,
            CaseState::InProgress
        ]
    );
    // The last thing saved is the paired case; then Pair and the two Paired events.
    assert_eq!(
        saved_records(&out).last().unwrap().state,
        CaseState::InProgress
    );
    let tail = &out[out.len() - 4..];
    assert_eq!(
        tail,
        &paired_effects(&b, code, (C1, "Alice"), (E1, "ben"))[..]
    );

    // The waiting expert was used up.
    let (next, _) = sos(&mut b, at(2), C2, "Bob");
    assert_eq!(state(&b, next), CaseState::Pending);
    assert_eq!(queue_codes(&b), vec![next]);
}

#[test]
fn waiting_experts_are_served_first_come_first_served() {
    let mut b = broker();
    let mut out = Vec::new();
    assert_eq!(
        b.pull(T0, E1, PullRequest::general("ben", true), &mut out),
        Ok(None)
    );
    assert_eq!(
        b.pull(T0, E2, PullRequest::general("cid", true), &mut out),
        Ok(None)
    );
    let (a, _) = sos(&mut b, at(1), C1, "A");
    let (bb, _) = sos(&mut b, at(2), C2, "B");
    let (c, _) = sos(&mut b, at(3), C3, "C");
    assert_eq!(b.attached_case(E1), Some(a));
    assert_eq!(b.attached_case(E2), Some(bb));
    assert_eq!(state(&b, c), CaseState::Pending);
    assert_eq!(queue_codes(&b), vec![c]);
}

#[test]
fn a_waiting_expert_who_disconnects_is_not_handed_a_case() {
    let mut b = broker();
    let mut out = Vec::new();
    b.pull(T0, E1, PullRequest::general("ben", true), &mut out)
        .unwrap();
    assert!(disconnect(&mut b, at(1), E1).is_empty());
    let (code, _) = sos(&mut b, at(2), C1, "Alice");
    assert_eq!(state(&b, code), CaseState::Pending);
    assert_eq!(queue_codes(&b), vec![code]);
    assert_eq!(b.attached_case(E1), None);
}

#[test]
fn a_waiting_expert_cannot_wait_twice() {
    let mut b = broker();
    let mut out = Vec::new();
    b.pull(T0, E1, PullRequest::general("ben", true), &mut out)
        .unwrap();
    let error = refused(&mut b, &[], |b, out| {
        b.pull(at(1), E1, PullRequest::general("ben", true), out)
    });
    assert!(matches!(error, BrokerError::AlreadyWaiting), "{error:?}");
    // Still exactly one waiting seat: one SOS case is paired, the next one waits.
    let (a, _) = sos(&mut b, at(2), C1, "A");
    let (bb, _) = sos(&mut b, at(3), C2, "B");
    assert_eq!(state(&b, a), CaseState::InProgress);
    assert_eq!(state(&b, bb), CaseState::Pending);
}

#[test]
fn a_waiting_expert_who_connects_by_code_is_not_seated_twice() {
    let mut b = broker();
    let created = create(&mut b, T0, "ana", "Bob");
    let mut out = Vec::new();
    b.pull(at(1), E1, PullRequest::general("ben", true), &mut out)
        .unwrap();
    // Either refusing the connect or giving up the wait is fine; seating E1 twice is not.
    let connected = b
        .connect(at(2), E1, "ben", &created.to_string(), false, &mut out)
        .is_ok();

    let (sos_case, _) = sos(&mut b, at(3), C1, "Alice");

    if connected {
        // Seated by code: no longer waiting, so the SOS case stays in the queue.
        assert_eq!(
            state(&b, sos_case),
            CaseState::Pending,
            "E1 was seated twice"
        );
        assert_eq!(queue_codes(&b), vec![sos_case]);
        assert_eq!(b.attached_case(E1), Some(created));
    } else {
        // Refused: E1 still waits, takes the SOS case, and the created case has no expert.
        assert_eq!(state(&b, sos_case), CaseState::InProgress);
        assert_eq!(b.attached_case(E1), Some(sos_case));
        assert_eq!(info(&b, created).expert, None);
    }
}

#[test]
fn an_expert_who_leaves_a_paired_case_hands_it_to_a_waiting_expert() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1), E1, "ben");
    let mut out = Vec::new();
    assert_eq!(
        b.pull(at(2), E2, PullRequest::general("cid", true), &mut out),
        Ok(None)
    );

    let out = disconnect(&mut b, at(3), E1);

    assert_eq!(out[0], Effect::Unpair { code, drain: false });
    assert!(out.contains(&Effect::Pair {
        code,
        customer: C1,
        expert: E2
    }));
    assert_eq!(state(&b, code), CaseState::InProgress);
    assert_eq!(info(&b, code).expert.as_deref(), Some("cid"));
    assert_eq!(b.attached_case(E2), Some(code));
    assert!(b.queue_view().is_empty());
}

#[test]
fn many_pulls_never_hand_out_the_same_case_twice() {
    let mut b = broker();
    let mut arrivals = Vec::new();
    let mut now = 0;
    let mut customer_ids = 100..;
    let mut expert_ids = 1_000..;
    let mut handed_out = Vec::new();
    let mut refusals = 0;

    let mut arrive = |b: &mut Broker, now: u64, arrivals: &mut Vec<SessionCode>| {
        let party = PartyId(customer_ids.next().unwrap());
        arrivals.push(sos(b, at(now), party, "customer").0);
    };
    let mut try_pull = |b: &mut Broker, now: u64| {
        let mut out = Vec::new();
        let party = PartyId(expert_ids.next().unwrap());
        b.pull(
            at(now),
            party,
            PullRequest::general("expert", false),
            &mut out,
        )
    };

    // 30 arrive, 20 pulls, 10 more arrive, then 30 pulls: 40 cases for 50 experts.
    for _ in 0..30 {
        now += 1;
        arrive(&mut b, now, &mut arrivals);
    }
    for _ in 0..20 {
        now += 1;
        handed_out.push(try_pull(&mut b, now).unwrap().unwrap().code);
    }
    for _ in 0..10 {
        now += 1;
        arrive(&mut b, now, &mut arrivals);
    }
    for _ in 0..30 {
        now += 1;
        match try_pull(&mut b, now) {
            Ok(Some(case)) => handed_out.push(case.code),
            Ok(None) => panic!("pull without wait returned no case"),
            Err(BrokerError::QueueEmpty(_)) => refusals += 1,
            Err(error) => panic!("unexpected {error:?}"),
        }
    }

    assert_eq!(handed_out, arrivals, "each case once, oldest first");
    assert_eq!(handed_out.iter().collect::<HashSet<_>>().len(), 40);
    assert_eq!(refusals, 10);
    assert!(b.queue_view().is_empty());
    assert!(arrivals
        .iter()
        .all(|&code| state(&b, code) == CaseState::InProgress));
}

// ----- 6. who may do what --------------------------------------------------------------

#[test]
fn a_customer_cannot_see_or_close_another_customers_case() {
    let mut b = broker();
    let (mine, my_secret) = sos(&mut b, T0, C1, "Alice");
    let (theirs, _) = sos(&mut b, at(1), C2, "Carol");
    let codes = [mine, theirs];
    let typed = theirs.to_string();

    for secret in [None, Some(my_secret.as_str()), Some("not-a-secret")] {
        let error = refused(&mut b, &codes, |b, out| {
            b.close(at(2), Closer::Customer { party: C1, secret }, &typed, out)
        });
        assert_eq!(error, BrokerError::NotYourCase(theirs));
        assert_eq!(error.kind(), sosq::protocol::ErrorKind::Forbidden);
        let error = refused(&mut b, &codes, |b, _| b.customer_view(C1, &typed, secret));
        assert_eq!(error, BrokerError::NotYourCase(theirs));
    }

    // Its own case, it may see: attached, or from elsewhere with the secret.
    assert_eq!(
        b.customer_view(C1, &mine.to_string(), None).unwrap().code,
        mine
    );
    assert_eq!(
        b.customer_view(C3, &mine.to_string(), Some(&my_secret))
            .unwrap()
            .code,
        mine
    );
    assert_eq!(
        b.customer_view(C3, &mine.to_string(), None),
        Err(BrokerError::NotYourCase(mine))
    );
}

#[test]
fn a_customer_cannot_close_an_unbound_expert_case_it_is_not_attached_to() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let error = refused(&mut b, &[code], |b, out| {
        b.close(
            at(1),
            Closer::Customer {
                party: C1,
                secret: Some("guess"),
            },
            &code.to_string(),
            out,
        )
    });
    assert_eq!(error, BrokerError::NotYourCase(code));
}

#[test]
fn the_first_customer_binds_an_expert_created_case() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let first = join(&mut b, at(1), C1, code);
    let secret = first
        .resume_secret
        .expect("the binding customer gets a secret");
    disconnect(&mut b, at(2), C1);
    assert_eq!(state(&b, code), CaseState::Pending);

    // A second customer without the secret (or with a wrong one) is refused.
    let typed = code.to_string();
    for given in [None, Some("0123456789abcdef0123456789abcdef")] {
        let error = refused(&mut b, &[code], |b, out| {
            b.join(at(3), C2, &typed, "Mallory", given, out)
        });
        assert_eq!(error, BrokerError::NotYourCase(code));
    }

    // The first customer comes back, on a new connection, with its secret.
    let mut out = Vec::new();
    let back = b
        .join(at(4), C3, &typed, "Bob", Some(&secret), &mut out)
        .unwrap();
    assert_eq!(back.resume_secret, None, "the secret is not replaced");
    assert_eq!(
        record(&b, code).resume_secret_hash,
        Some(hash_secret(&secret))
    );
    assert!(back.case.customer_online);
    assert_eq!(b.attached_case(C3), Some(code));
    assert!(record(&b, code)
        .history
        .last()
        .unwrap()
        .event
        .contains("came back"));
}

#[test]
fn a_second_customer_cannot_take_an_occupied_customer_seat() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    join(&mut b, at(1), C1, code);
    let typed = code.to_string();
    let error = refused(&mut b, &[code], |b, out| {
        b.join(at(2), C2, &typed, "Mallory", None, out)
    });
    assert_eq!(error, BrokerError::NotYourCase(code));
}

#[test]
fn a_customer_proving_its_secret_takes_over_from_its_old_connection_at_once() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let secret = join(&mut b, at(1), C1, code).resume_secret.unwrap();
    connect(&mut b, at(2), E1, "ana", code);
    let mut out = Vec::new();
    b.join(at(3), C2, &code.to_string(), "Bob", Some(&secret), &mut out)
        .unwrap();

    // The old connection's session is cut and it is told why; the new one is paired.
    assert_eq!(out[0], Effect::Unpair { code, drain: false });
    assert!(out.iter().any(|effect| matches!(effect,
        Effect::Disconnect { party, code: close, .. }
            if *party == C1 && *close == sosq::protocol::close_code::REPLACED)));
    assert!(out.contains(&Effect::Pair {
        code,
        customer: C2,
        expert: E1
    }));
    assert_eq!(state(&b, code), CaseState::InProgress);
    assert_eq!(b.attached_case(C2), Some(code));
    assert_eq!(b.attached_case(C1), None);

    // The old connection's cleanup, arriving later, cannot detach the new one.
    let late = disconnect(&mut b, at(4), C1);
    assert!(late.is_empty(), "{late:?}");
    assert_eq!(state(&b, code), CaseState::InProgress);
    assert!(info(&b, code).customer_online);
}

#[test]
fn the_same_expert_connecting_again_takes_over_and_keeps_how_it_came() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1), E1, "ben");
    let mut out = Vec::new();
    b.connect(at(2), E2, "ben", &code.to_string(), false, &mut out)
        .unwrap();
    assert!(out.iter().any(|effect| matches!(effect,
        Effect::Disconnect { party, code: close, .. }
            if *party == E1 && *close == sosq::protocol::close_code::REPLACED)));
    assert_eq!(b.attached_case(E2), Some(code));
    assert!(disconnect(&mut b, at(3), E1).is_empty());
    // Another expert is still refused.
    let error = refused(&mut b, &[code], |b, out| {
        b.connect(at(4), E3, "cid", &code.to_string(), false, out)
    });
    assert_eq!(error, BrokerError::ExpertAlreadyConnected(code));
    // It came by pull: when the customer vanishes, the new connection is let go.
    let out = disconnect(&mut b, at(5), C1);
    assert!(out.iter().any(|effect| matches!(effect,
        Effect::Notify { party, event: Event::Released { .. } } if *party == E2)));
}

#[test]
fn an_sos_case_is_bound_to_the_customer_who_opened_it() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    disconnect(&mut b, at(1), C1);
    let typed = code.to_string();
    let error = refused(&mut b, &[code], |b, out| {
        b.join(at(2), C2, &typed, "Mallory", None, out)
    });
    assert_eq!(error, BrokerError::NotYourCase(code));
    let mut out = Vec::new();
    b.join(at(3), C2, &typed, "Alice", Some(&secret), &mut out)
        .unwrap();
    assert_eq!(b.attached_case(C2), Some(code));
}

#[test]
fn a_party_already_attached_cannot_attach_again() {
    let mut b = broker();
    let (sos_case, _) = sos(&mut b, T0, C1, "Alice");
    let created = create(&mut b, at(1), "ana", "Bob");
    sos(&mut b, at(2), C2, "Carol");
    connect(&mut b, at(3), E1, "ben", created);
    let codes = [sos_case, created];
    let sos_typed = sos_case.to_string();
    let created_typed = created.to_string();

    // The customer C1, in the SOS case.
    let error = refused(&mut b, &codes, |b, out| {
        b.open_sos(at(4), C1, SosRequest::general("Alice", "again"), out)
    });
    assert_eq!(error, BrokerError::AlreadyAttached(sos_case));
    assert_eq!(error.kind(), sosq::protocol::ErrorKind::Conflict);
    let error = refused(&mut b, &codes, |b, out| {
        b.join(at(4), C1, &created_typed, "Alice", None, out)
    });
    assert_eq!(error, BrokerError::AlreadyAttached(sos_case));

    // The expert E1, in the created case (the queue is not empty).
    let error = refused(&mut b, &codes, |b, out| {
        b.pull(at(4), E1, PullRequest::general("ben", false), out)
    });
    assert_eq!(error, BrokerError::AlreadyAttached(created));
    let error = refused(&mut b, &codes, |b, out| {
        b.pull(at(4), E1, PullRequest::general("ben", true), out)
    });
    assert_eq!(error, BrokerError::AlreadyAttached(created));
    let error = refused(&mut b, &codes, |b, out| {
        b.connect(at(4), E1, "ben", &sos_typed, false, out)
    });
    assert_eq!(error, BrokerError::AlreadyAttached(created));
    let error = refused(&mut b, &codes, |b, out| {
        b.connect(at(4), E1, "ben", &created_typed, false, out)
    });
    assert_eq!(error, BrokerError::AlreadyAttached(created));
}

#[test]
fn a_second_expert_cannot_connect() {
    let mut b = broker();
    let created = create(&mut b, T0, "ana", "Bob");
    connect(&mut b, at(1), E1, "ben", created);
    let (paired, _) = sos(&mut b, at(2), C1, "Alice");
    pull(&mut b, at(3), E2, "cid");
    let codes = [created, paired];

    for code in codes {
        let typed = code.to_string();
        let error = refused(&mut b, &codes, |b, out| {
            b.connect(at(4), E3, "dee", &typed, false, out)
        });
        assert_eq!(error, BrokerError::ExpertAlreadyConnected(code));
    }
}

#[test]
fn any_expert_may_connect_to_a_waiting_sos_case_by_code() {
    let mut b = broker();
    let (first, _) = sos(&mut b, T0, C1, "A");
    let (second, _) = sos(&mut b, at(1), C2, "B");
    connect(&mut b, at(2), E1, "ben", second);
    assert_eq!(state(&b, second), CaseState::InProgress);
    assert_eq!(queue_codes(&b), vec![first]);
}

// ----- 7. bulk delete ------------------------------------------------------------------

#[test]
fn delete_by_codes_asks_the_store_first_then_ends_the_sessions() {
    let mut b = broker();
    let (paired, _) = sos(&mut b, T0, C1, "Alice");
    pull(&mut b, at(1), E1, "ben");
    let (waiting, _) = sos(&mut b, at(2), C2, "Carol");
    let kept = create(&mut b, at(3), "ana", "Bob");
    let stored_only = some_code(999_999_999);
    let selection = Persist::Delete(vec![paired, waiting, stored_only]);

    let mut out = Vec::new();
    b.delete(at(4), "root", selection.clone(), &mut out)
        .unwrap();

    assert_eq!(out[0], Effect::Persist(selection));
    assert_eq!(
        out[1],
        Effect::Unpair {
            code: paired,
            drain: false
        }
    );
    assert_eq!(
        disconnects(&out),
        vec![
            (C1, close_code::DELETED),
            (E1, close_code::DELETED),
            (C2, close_code::DELETED)
        ]
    );
    assert_eq!(out.len(), 5, "{out:?}");

    assert!(b.case(paired).is_none());
    assert!(b.case(waiting).is_none());
    assert_eq!(state(&b, kept), CaseState::New);
    assert!(b.queue_view().is_empty());
    for party in [C1, C2, E1] {
        assert_eq!(b.attached_case(party), None);
    }
    assert_eq!(b.next_deadline(), Some(at(3).plus(DAY)));
    let error = refused(&mut b, &[paired, waiting, kept], |b, out| {
        b.connect(at(5), E2, "cid", &waiting.to_string(), false, out)
    });
    assert_eq!(error, BrokerError::UnknownCode(waiting));

    // The codes stay held until the store says the cases are gone.
    assert_eq!(b.codes_held(), 3);
    b.release_codes(&[paired, waiting, stored_only]);
    assert_eq!(b.codes_held(), 1);
}

#[test]
fn delete_of_closed_or_unknown_codes_only_asks_the_store() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let mut out = Vec::new();
    b.close(at(1), Closer::Expert("ana"), &code.to_string(), &mut out)
        .unwrap();
    out.clear();
    let selection = Persist::Delete(vec![code, some_code(1)]);
    b.delete(at(2), "root", selection.clone(), &mut out)
        .unwrap();
    assert_eq!(out, vec![Effect::Persist(selection)]);
}

#[test]
fn delete_with_a_repeated_code_does_not_panic() {
    let mut b = broker();
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    let selection = Persist::Delete(vec![code, code]);
    let mut out = Vec::new();
    b.delete(at(1), "root", selection.clone(), &mut out)
        .unwrap();
    assert_eq!(out[0], Effect::Persist(selection));
    assert_eq!(disconnects(&out), vec![(C1, close_code::DELETED)]);
    assert!(b.case(code).is_none());
}

#[test]
fn delete_where_state_ends_only_matching_open_cases() {
    let mut b = broker();
    let (pending, _) = sos(&mut b, T0, C1, "Alice");
    let (in_progress, _) = sos(&mut b, T0, C2, "Carol");
    connect(&mut b, at(1), E1, "ben", in_progress);
    let new = create(&mut b, T0, "ana", "Bob");
    let selection = Persist::DeleteWhere(CaseSelection {
        state: Some(CaseState::Pending),
        created_before: None,
    });

    let mut out = Vec::new();
    b.delete(at(2), "root", selection.clone(), &mut out)
        .unwrap();

    assert_eq!(
        out,
        vec![
            Effect::Persist(selection),
            Effect::Disconnect {
                party: C1,
                code: close_code::DELETED,
                reason: format!("case {pending} was deleted by an administrator"),
            }
        ]
    );
    assert!(b.case(pending).is_none());
    assert_eq!(state(&b, in_progress), CaseState::InProgress);
    assert_eq!(state(&b, new), CaseState::New);
    assert!(b.queue_view().is_empty());
}

#[test]
fn delete_where_created_before_selects_by_age() {
    let mut b = broker();
    let (old, _) = sos(&mut b, T0, C1, "Old");
    let (boundary, _) = sos(&mut b, at(1_000), C2, "Boundary");
    let young = create(&mut b, at(2_000), "ana", "Young");
    let selection = CaseSelection::resolve(
        &CaseFilter {
            state: None,
            older_than_ms: Some(1_000),
        },
        at(2_000),
    );
    assert_eq!(selection.created_before, Some(at(1_000)));

    let mut out = Vec::new();
    b.delete(at(2_000), "root", Persist::DeleteWhere(selection), &mut out)
        .unwrap();

    assert!(matches!(out[0], Effect::Persist(Persist::DeleteWhere(_))));
    assert_eq!(disconnects(&out), vec![(C1, close_code::DELETED)]);
    assert!(b.case(old).is_none());
    assert!(b.case(boundary).is_some(), "created_before is strict");
    assert!(b.case(young).is_some());
    assert_eq!(queue_codes(&b), vec![boundary]);
}

#[test]
fn delete_where_with_both_fields_needs_both_to_match() {
    let mut b = broker();
    let (old_pending, _) = sos(&mut b, T0, C1, "A");
    let old_new = create(&mut b, T0, "ana", "B");
    let (young_pending, _) = sos(&mut b, at(5_000), C2, "C");
    let selection = CaseSelection {
        state: Some(CaseState::Pending),
        created_before: Some(at(1)),
    };
    let mut out = Vec::new();
    b.delete(at(6_000), "root", Persist::DeleteWhere(selection), &mut out)
        .unwrap();
    assert!(b.case(old_pending).is_none());
    assert!(b.case(old_new).is_some());
    assert!(b.case(young_pending).is_some());
    assert_eq!(disconnects(&out), vec![(C1, close_code::DELETED)]);
}

#[test]
fn delete_needs_codes_or_a_filter() {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    let save = Persist::Save(record(&b, code));
    let error = refused(&mut b, &[code], |b, out| b.delete(at(1), "root", save, out));
    assert!(matches!(error, BrokerError::InvalidInput(_)), "{error:?}");
    assert_eq!(error.kind(), sosq::protocol::ErrorKind::InvalidInput);
}

#[test]
fn case_selection_resolves_against_now_and_matches_every_given_field() {
    let everything = CaseSelection::resolve(&CaseFilter::default(), at(10));
    assert_eq!(everything, CaseSelection::default());

    let resolved = CaseSelection::resolve(
        &CaseFilter {
            state: Some(CaseState::Closed),
            older_than_ms: Some(60_000),
        },
        at(100_000),
    );
    assert_eq!(
        resolved,
        CaseSelection {
            state: Some(CaseState::Closed),
            created_before: Some(at(40_000)),
        }
    );
    // "Older than" more than the epoch saturates instead of wrapping around.
    let saturated = CaseSelection::resolve(
        &CaseFilter {
            state: None,
            older_than_ms: Some(u64::MAX),
        },
        at(0),
    );
    assert_eq!(saturated.created_before, Some(Timestamp(0)));

    let code = some_code(1);
    let mut record = record_in(CaseState::Closed, code);
    for (created_at, state, expected) in [
        (at(39_999), CaseState::Closed, true),
        (at(40_000), CaseState::Closed, false),
        (at(0), CaseState::Expired, false),
        (at(0), CaseState::Closed, true),
    ] {
        record.created_at = created_at;
        record.state = state;
        assert_eq!(
            resolved.matches(&record),
            expected,
            "{created_at:?} {state}"
        );
        assert!(everything.matches(&record));
        assert!(!saturated.matches(&record));
    }
    let by_state = CaseSelection {
        state: Some(CaseState::Expired),
        created_before: None,
    };
    record.state = CaseState::Expired;
    assert!(by_state.matches(&record));
    record.state = CaseState::New;
    assert!(!by_state.matches(&record));
}

// ----- 8. input validation -------------------------------------------------------------

const BAD_NAMES: [&str; 5] = ["", "   ", "tab\there", "line\nbreak", "bell\u{7}"];

fn too_long_name() -> String {
    "x".repeat(MAX_NAME_CHARS + 1)
}

#[test]
fn bad_customer_names_are_refused_and_change_nothing() {
    let mut b = broker();
    let created = create(&mut b, T0, "ana", "Bob");
    let typed = created.to_string();
    let long = too_long_name();
    for name in BAD_NAMES.iter().copied().chain([long.as_str()]) {
        let error = refused(&mut b, &[created], |b, out| {
            b.open_sos(at(1), C1, SosRequest::general(name, "help"), out)
        });
        assert!(
            matches!(error, BrokerError::InvalidInput(_)),
            "{name:?}: {error:?}"
        );
        let error = refused(&mut b, &[created], |b, out| {
            b.create(at(1), "ana", name, "help", out)
        });
        assert!(
            matches!(error, BrokerError::InvalidInput(_)),
            "{name:?}: {error:?}"
        );
        let error = refused(&mut b, &[created], |b, out| {
            b.join(at(1), C1, &typed, name, None, out)
        });
        assert!(
            matches!(error, BrokerError::InvalidInput(_)),
            "{name:?}: {error:?}"
        );
    }
    assert_eq!(b.open_cases(), 1);
    assert_eq!(b.codes_held(), 1);
}

#[test]
fn a_name_at_the_limit_is_accepted_and_trimmed() {
    let mut b = broker();
    // Characters, not bytes: 100 two-byte characters are fine.
    let name = "é".repeat(MAX_NAME_CHARS);
    let mut out = Vec::new();
    let attached = b
        .open_sos(
            T0,
            C1,
            SosRequest::general(&format!("  {name}\t"), ""),
            &mut out,
        )
        .unwrap();
    assert_eq!(attached.case.customer, name);
    let error = refused(&mut b, &[attached.case.code], |b, out| {
        b.open_sos(
            T0,
            C2,
            SosRequest::general(&"é".repeat(MAX_NAME_CHARS + 1), ""),
            out,
        )
    });
    assert!(matches!(error, BrokerError::InvalidInput(_)));
}

#[test]
fn descriptions_may_be_empty_but_not_too_long() {
    let mut b = broker();
    let mut out = Vec::new();
    let empty = b.create(T0, "ana", "Bob", "   ", &mut out).unwrap();
    assert_eq!(empty.description, "");
    let longest = "d".repeat(MAX_DESCRIPTION_CHARS);
    let full = b.create(T0, "ana", "Bob", &longest, &mut out).unwrap();
    assert_eq!(full.description, longest);

    let too_long = "d".repeat(MAX_DESCRIPTION_CHARS + 1);
    let codes = [empty.code, full.code];
    let error = refused(&mut b, &codes, |b, out| {
        b.create(at(1), "ana", "Bob", &too_long, out)
    });
    assert!(matches!(error, BrokerError::InvalidInput(_)));
    let error = refused(&mut b, &codes, |b, out| {
        b.open_sos(at(1), C1, SosRequest::general("Bob", &too_long), out)
    });
    assert!(matches!(error, BrokerError::InvalidInput(_)));
}

#[test]
fn bad_code_strings_are_refused_and_change_nothing() {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    let codes = [code];
    for typed in [
        "",
        "s",
        "12345678",
        "1234567890",
        "abc-def-ghi",
        "x123456789",
        "s12-345-678",
    ] {
        let expect_bad = |error: BrokerError| {
            assert!(
                matches!(error, BrokerError::BadCode(_)),
                "{typed:?}: {error:?}"
            );
            assert_eq!(error.kind(), sosq::protocol::ErrorKind::UnknownCode);
        };
        expect_bad(refused(&mut b, &codes, |b, out| {
            b.join(at(1), C2, typed, "Alice", Some(&secret), out)
        }));
        expect_bad(refused(&mut b, &codes, |b, out| {
            b.connect(at(1), E1, "ben", typed, false, out)
        }));
        expect_bad(refused(&mut b, &codes, |b, out| {
            b.close(at(1), Closer::Expert("ben"), typed, out)
        }));
        expect_bad(refused(&mut b, &codes, |b, _| {
            b.customer_view(C1, typed, None)
        }));
    }
}

#[test]
fn typed_codes_are_accepted_in_any_usual_form() {
    let mut b = broker();
    let first = create(&mut b, T0, "ana", "Bob");
    let second = create(&mut b, T0, "ana", "Dan");
    let mut out = Vec::new();
    let digits = format!("{:09}", first.number());
    b.join(at(1), C1, &digits, "Bob", None, &mut out).unwrap();
    assert_eq!(b.attached_case(C1), Some(first));
    let spaced = second.to_string().to_uppercase().replace('-', " ");
    b.connect(at(1), E1, "ben", &spaced, false, &mut out)
        .unwrap();
    assert_eq!(b.attached_case(E1), Some(second));
}

// ----- restart and attribution ---------------------------------------------------------

#[test]
fn reserved_codes_are_never_issued_again() {
    let code_a = code_for_draw(DRAW_A);
    let code_b = code_for_draw(DRAW_B);
    let (mut b, rng) = scripted_broker(&[DRAW_A, DRAW_B]);
    b.reserve_code(code_a);
    assert_eq!(b.open_cases(), 0);
    assert_eq!(create(&mut b, T0, "ana", "Bob"), code_b);
    assert_eq!(
        rng.remaining(),
        0,
        "the reserved code was drawn and thrown away"
    );
}

#[test]
fn a_case_in_progress_at_a_restart_is_pending_until_its_partners_reconnect() {
    let mut b = broker();
    let busy = some_code(555_000_222);
    let waiting = some_code(555_000_333);
    b.restore(record_in(CaseState::InProgress, busy));
    b.restore(record_in(CaseState::Pending, waiting));
    let mut out = Vec::new();
    b.resume_after_restart(at(5), &mut out);
    let saved = saved_records(&out);
    assert_eq!(saved.len(), 1, "only the case in progress changes");
    assert_eq!(saved[0].code, busy);
    assert_eq!(saved[0].state, CaseState::Pending);
    assert_eq!(info(&b, busy).state, CaseState::Pending);

    // Both partners come back: the session starts again (no illegal step on the way).
    let mut out = Vec::new();
    b.connect(at(6), E1, "ana", &busy.to_string(), false, &mut out)
        .expect("expert reconnects by code");
    assert_eq!(info(&b, busy).state, CaseState::Pending);
}

#[test]
fn attribution_names_the_actor_on_the_entries_a_command_wrote_only() {
    let mut b = broker();
    let actor = Actor {
        who: protocol::Actor::new(ActorRole::Expert, "ana"),
        address: Some("192.0.2.1:9".into()),
    };
    let mut out = Vec::new();
    let case = b.create(at(0), "ana", "Bob", "", &mut out).unwrap();
    b.attribute(&actor, &mut out);
    let mut out = Vec::new();
    b.connect(at(1), E1, "ana", &case.code.to_string(), false, &mut out)
        .unwrap();
    b.attribute(&Actor::daemon(), &mut out);
    let saved = saved_records(&out);
    let history = &saved.last().unwrap().history;
    assert_eq!(
        history[0].actor,
        Some(protocol::Actor::new(ActorRole::Expert, "ana"))
    );
    assert_eq!(history[0].address.as_deref(), Some("192.0.2.1:9"));
    assert!(history[1..]
        .iter()
        .all(|entry| entry.actor == Some(protocol::Actor::daemon()) && entry.address.is_none()));
    assert_eq!(
        &record(&b, case.code).history,
        history,
        "the core's copy too"
    );
}

#[test]
fn every_history_entry_says_its_kind_and_a_customer_is_named_after_its_case() {
    let mut b = broker();
    let customer = Actor {
        who: protocol::Actor {
            role: ActorRole::Customer,
            name: None,
        },
        address: Some("192.0.2.7:5".into()),
    };
    let expert = Actor {
        who: protocol::Actor::new(ActorRole::Expert, "ana"),
        address: None,
    };
    let mut out = Vec::new();
    let code = b
        .open_sos(at(0), C1, SosRequest::general("Alice", ""), &mut out)
        .unwrap()
        .case
        .code;
    b.attribute(&customer, &mut out);
    let mut out = Vec::new();
    b.escalate(
        at(1),
        "expert ana",
        &code.to_string(),
        Priority::High,
        "down",
        &mut out,
    )
    .unwrap();
    b.pull(at(2), E1, PullRequest::general("ana", false), &mut out)
        .unwrap();
    b.close(at(3), Closer::Expert("ana"), &code.to_string(), &mut out)
        .unwrap();
    b.attribute(&expert, &mut out);
    let history = &saved_records(&out).last().unwrap().history;
    let kinds: Vec<HistoryKind> = history.iter().map(|entry| entry.kind).collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Created,
            HistoryKind::Attached,
            HistoryKind::Started,
            HistoryKind::Escalated,
            HistoryKind::Attached,
            HistoryKind::Paired,
            HistoryKind::FirstResponse,
            HistoryKind::Closed,
        ]
    );
    assert_eq!(
        history[0].actor,
        Some(protocol::Actor::new(ActorRole::Customer, "Alice"))
    );
    assert_eq!(history[0].address.as_deref(), Some("192.0.2.7:5"));
    assert_eq!(history[7].actor, Some(expert.who.clone()));
}

#[test]
fn customers_coming_back_after_a_restart_get_their_original_places_in_the_queue() {
    let mut b = broker();
    let first = some_code(555_000_444);
    let second = some_code(555_000_555);
    for (code, waiting) in [(first, at(1)), (second, at(2))] {
        let mut record = record_in(CaseState::Pending, code);
        record.origin = CaseOrigin::Sos;
        record.waiting_since = Some(waiting);
        b.restore(record);
    }
    let mut out = Vec::new();
    b.join(at(10), C2, &second.to_string(), "Second", None, &mut out)
        .unwrap();
    b.join(at(11), C1, &first.to_string(), "First", None, &mut out)
        .unwrap();
    let order: Vec<SessionCode> = b.queue_view().iter().map(|entry| entry.code).collect();
    assert_eq!(order, vec![first, second], "by when they started waiting");
}
