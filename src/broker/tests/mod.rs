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
//!
//! One file per phase of a case's life, like the broker's own: `intake.rs`, `pairing.rs`,
//! `presence.rs`, `ending.rs`; plus `lifecycle.rs` (the transition table itself) and
//! `access.rs` (who may do what). This file holds the fixtures and builders they share.

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

mod access;
mod attachments;
mod ending;
mod intake;
mod lifecycle;
mod notes;
mod pairing;
mod presence;
mod selection;

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

// ----- builders: the setups tests start from ------------------------------------------

/// A fresh broker where expert `ana` created a case for `Bob` at [`T0`]: `new`, nobody
/// attached.
fn new_case() -> (Broker, SessionCode) {
    let mut b = broker();
    let code = create(&mut b, T0, "ana", "Bob");
    (b, code)
}

/// [`new_case`], joined by customer [`C1`] at 1 ms: `pending`; with the join's reply.
fn joined_case() -> (Broker, SessionCode, Attached) {
    let (mut b, code) = new_case();
    let attached = join(&mut b, at(1), C1, code);
    (b, code, attached)
}

/// A fresh broker where customer [`C1`] (`Alice`) pressed SOS at [`T0`]: `pending` and
/// queued; with the resume secret.
fn sos_case() -> (Broker, SessionCode, String) {
    let mut b = broker();
    let (code, secret) = sos(&mut b, T0, C1, "Alice");
    (b, code, secret)
}

/// [`sos_case`], pulled by expert [`E1`] (`ben`) at 1 ms: `in progress`, the two paired.
fn paired_sos_case() -> (Broker, SessionCode, String) {
    let (mut b, code, secret) = sos_case();
    pull(&mut b, at(1), E1, "ben");
    (b, code, secret)
}

/// A fresh broker where customers [`C1`] (`A`, at [`T0`]) and [`C2`] (`B`, 1 ms later)
/// pressed SOS: both waiting in that order; each case with its resume secret.
fn two_waiting() -> (Broker, (SessionCode, String), (SessionCode, String)) {
    let mut b = broker();
    let first = sos(&mut b, T0, C1, "A");
    let second = sos(&mut b, at(1), C2, "B");
    (b, first, second)
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
        last_message: None,
        attachments: 0,
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
