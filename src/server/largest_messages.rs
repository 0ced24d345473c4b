//! Every reply and every event the daemon sends, at the largest content the validators let
//! through, fits one frame (`codec::encode` succeeds: at most `MAX_FRAME_LEN` bytes of
//! payload behind the 4-byte length).
//!
//! "Largest" is taken from the validators, not guessed: customer names of
//! [`MAX_NAME_CHARS`], descriptions and escalation reasons of [`MAX_DESCRIPTION_CHARS`],
//! team and assignee names of [`MAX_NAME_CHARS`] (the core's bound; the users file's,
//! 1 to 64 ASCII characters, is smaller still), staff names of 64 ASCII characters (the
//! users file's `check_name`: they come from an account, the core takes them on trust).
//! Characters are drawn from 1- to 4-byte UTF-8, mostly 4-byte, and
//! `the_widest_of_everything_fits` takes 4-byte characters only, so the byte length is
//! the largest there is. Content goes through the real core (a [`Broker`] that opens,
//! routes, escalates, pairs, transfers and closes cases with it) and the real page
//! builders (`Broker::queue_page`, [`pages::cases_page`], [`pages::history_page`]) over
//! more items than a page holds. Error replies echo what a peer typed at most up to the
//! name limit: the refusals that repeat input get inputs as long as a request frame. Every
//! frame is also decoded back, as the receiver would (`pages` checks the other end: pages
//! of the smallest items, which claim the most while decoding).

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::codec::{self, MAX_FRAME_LEN};
use sosq::protocol::{
    Assignee, CaseFilter, CaseInfo, CaseOrigin, CaseState, DeleteSelector, ErrorKind, Event,
    HistoryEntry, Priority, QueueCursor, Reply, Request, Role, ServerMessage, Timestamp,
    MAX_PAGE_BYTES, MAX_PAGE_ITEMS,
};
use sosq::SessionCode;

use super::dispatch::{authorize, no_such_assignee, no_such_team};
use super::{pages, ServerError};
use crate::broker::{
    Actor, Broker, BrokerConfig, BrokerError, Closer, Effect, PartyId, QueueViewer, SosRequest,
    FOLD_MARK, MAX_DESCRIPTION_CHARS, MAX_HISTORY_ENTRIES, MAX_NAME_CHARS,
};

/// The longest staff (user) name the users file accepts.
const MAX_STAFF_NAME: usize = 64;
/// The most items any page is asked for.
const MAX_ITEMS: usize = MAX_PAGE_ITEMS as usize;
/// The first "now"; a realistic time takes as many bytes as any later one.
const T0: u64 = 1_764_528_000_000;
/// The highest session code.
const LAST_CODE: u64 = 999_999_999;

/// The widest content of one run.
#[derive(Debug, Clone)]
struct Widest {
    /// Customer names, one per waiting case.
    customers: Vec<String>,
    /// Descriptions, used in turn.
    descriptions: Vec<String>,
    /// An escalation reason.
    reason: String,
    /// A team name.
    team: String,
    /// An expert a case is assigned or transferred to.
    assignee: String,
    /// The expert at work (a staff name).
    expert: String,
    /// What a peer typed into a field a refusal repeats, as long as a request frame allows.
    typed: String,
}

/// A character of 1 to 4 bytes in UTF-8, mostly 4. None is a control character (names may
/// not have them) nor a 1- or 2-byte space (names are trimmed).
fn wide_char() -> impl Strategy<Value = char> {
    prop_oneof![
        1 => prop::char::range('a', 'z'),
        1 => prop::char::range('\u{c0}', '\u{7ff}'),
        1 => prop::char::range('\u{800}', '\u{d7ff}'),
        5 => prop::char::range('\u{10000}', '\u{10ffff}'),
    ]
}

/// Exactly `chars` characters of [`wide_char`].
fn wide_text(chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(wide_char(), chars).prop_map(String::from_iter)
}

/// What a hostile peer types: control characters (which `{:?}` escapes to up to 6 bytes
/// each) and wide characters, filling a request frame.
fn typed_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![prop::char::range('\u{0}', '\u{1f}'), wide_char()];
    prop::collection::vec(char, MAX_FRAME_LEN / 4).prop_map(String::from_iter)
}

fn widest(cases: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Widest> {
    (
        prop::collection::vec(wide_text(MAX_NAME_CHARS), cases),
        prop::collection::vec(wide_text(MAX_DESCRIPTION_CHARS), 1..=3),
        wide_text(MAX_DESCRIPTION_CHARS),
        wide_text(MAX_NAME_CHARS),
        wide_text(MAX_NAME_CHARS),
        "[a-zA-Z0-9._-]{64}",
        typed_text(),
    )
        .prop_map(
            |(customers, descriptions, reason, team, assignee, expert, typed)| Widest {
                customers,
                descriptions,
                reason,
                team,
                assignee,
                expert,
                typed,
            },
        )
}

/// The widest of everything: 4-byte characters only, the most cases a test run uses.
fn all_four_byte() -> Widest {
    let text = |chars: usize| "\u{10ffff}".repeat(chars);
    Widest {
        customers: vec![text(MAX_NAME_CHARS); 14],
        descriptions: vec![text(MAX_DESCRIPTION_CHARS)],
        reason: text(MAX_DESCRIPTION_CHARS),
        team: text(MAX_NAME_CHARS),
        assignee: text(MAX_NAME_CHARS),
        expert: "x".repeat(MAX_STAFF_NAME),
        typed: "\u{1}".repeat(MAX_FRAME_LEN),
    }
}

/// Encodes `message` as the daemon would; fails unless it fits one frame and the
/// receiver's decoder (which has limits of its own) reads it back whole.
fn fits(message: ServerMessage) -> Result<usize, TestCaseError> {
    let what = || format!("{message:?}").chars().take(120).collect::<String>();
    let frame =
        codec::encode(&message).map_err(|e| TestCaseError::fail(format!("{}…: {e}", what())))?;
    prop_assert!(frame.len() <= MAX_FRAME_LEN + 4);
    let back: ServerMessage = codec::decode(&frame[4..])
        .map_err(|e| TestCaseError::fail(format!("{}… does not decode: {e}", what())))?;
    prop_assert!(back == message, "{}… changed on the way", what());
    Ok(frame.len())
}

fn reply(reply: Reply) -> Result<usize, TestCaseError> {
    fits(ServerMessage::Reply(reply))
}

fn event(event: Event) -> Result<usize, TestCaseError> {
    fits(ServerMessage::Event(event))
}

/// The core at work on the widest content, as the shell drives it: every command's history
/// entries stamped with the longest actor and address.
struct Scene {
    broker: Broker,
    now: Timestamp,
    /// Everything the core pushed to a party.
    events: Vec<Event>,
    actor: Actor,
    /// "expert NAME", as the shell names staff in escalations and assignments.
    who: String,
    w: Widest,
}

impl Scene {
    fn new(w: Widest) -> Scene {
        let longest = SocketAddrV6::new(Ipv6Addr::from([0xffff; 8]), 65_535, 0, u32::MAX);
        Scene {
            broker: Broker::new(BrokerConfig::default(), Box::new(StdRng::seed_from_u64(9))),
            now: Timestamp(T0),
            events: Vec::new(),
            actor: Actor {
                who: format!("expert {}", w.expert),
                address: Some(SocketAddr::V6(longest).to_string()),
            },
            who: format!("expert {}", w.expert),
            w,
        }
    }

    /// Runs one core command at the next millisecond, as `Shared::execute` does.
    fn run<T>(
        &mut self,
        command: impl FnOnce(&mut Broker, Timestamp, &mut Vec<Effect>) -> Result<T, BrokerError>,
    ) -> Result<T, TestCaseError> {
        self.now = Timestamp(self.now.0 + 1);
        let mut out = Vec::new();
        let value = command(&mut self.broker, self.now, &mut out)
            .map_err(|e| TestCaseError::fail(format!("the core refused: {e}")))?;
        self.broker.attribute(&self.actor, &mut out);
        for effect in out {
            if let Effect::Notify { event, .. } = effect {
                self.events.push(event);
            }
        }
        Ok(value)
    }

    fn description(&self, n: usize) -> String {
        self.w.descriptions[n % self.w.descriptions.len()].clone()
    }

    /// Every customer waits; every other one is assigned to the widest expert name.
    fn fill_the_queue(&mut self) -> Result<Vec<SessionCode>, TestCaseError> {
        let mut codes = Vec::new();
        for (n, customer) in self.w.customers.clone().iter().enumerate() {
            let description = self.description(n);
            let team = self.w.team.clone();
            let attached = self.run(|b, now, out| {
                let request = SosRequest {
                    customer,
                    description: &description,
                    priority: Priority::ALL[n % 4],
                    group: &team,
                };
                b.open_sos_in(now, PartyId(n as u64 + 1), request, out)
            })?;
            reply(Reply::Attached {
                case: attached.case,
                resume_secret: attached.resume_secret,
                position: Some(u32::MAX),
            })?;
            let code = attached_code(&self.broker, PartyId(n as u64 + 1))?;
            if n % 2 == 1 {
                let (who, to) = (self.who.clone(), Assignee::Expert(self.w.assignee.clone()));
                let case =
                    self.run(|b, now, out| b.assign(now, &who, &code.to_string(), &to, out))?;
                reply(Reply::Case(case))?;
            }
            codes.push(code);
        }
        Ok(codes)
    }

    /// A history as long as a case keeps, its widest entries escalations with the longest
    /// reason, the last one folding the escalations after the cap.
    fn fill_a_history(&mut self, code: SessionCode) -> Result<(), TestCaseError> {
        let typed = code.to_string();
        let (who, reason) = (self.who.clone(), self.w.reason.clone());
        let escalate = |scene: &mut Scene, n: usize, reason: &str| {
            let priority = Priority::ALL[n % 4];
            scene.run(|b, now, out| b.escalate(now, &who, &typed, priority, reason, out))
        };
        for n in 0..12 {
            reply(Reply::Case(escalate(self, n, &reason)?))?;
        }
        // Short entries up to the cap cost little to copy; the widest come last.
        let mut n = 0;
        while self
            .broker
            .case(code)
            .map_or(0, |case| case.record.history.len())
            < MAX_HISTORY_ENTRIES - 1
        {
            escalate(self, n, "x")?;
            n += 1;
        }
        for n in 0..3 {
            escalate(self, n, &reason)?;
        }
        let history = history(&self.broker, code)?;
        prop_assert_eq!(history.len(), MAX_HISTORY_ENTRIES);
        let last = &history[MAX_HISTORY_ENTRIES - 1].event;
        prop_assert!(last.contains(FOLD_MARK) && last.ends_with(self.w.reason.trim()));
        Ok(())
    }
}

fn attached_code(broker: &Broker, party: PartyId) -> Result<SessionCode, TestCaseError> {
    broker
        .attached_case(party)
        .ok_or_else(|| TestCaseError::fail("the customer is not attached"))
}

fn history(broker: &Broker, code: SessionCode) -> Result<Vec<HistoryEntry>, TestCaseError> {
    Ok(broker
        .case(code)
        .ok_or_else(|| TestCaseError::fail("the case is gone"))?
        .record
        .history
        .clone())
}

/// A case with every field at its widest at once (the core never fills all of them on one
/// case: an expert-created case has no response target, say).
fn widest_case(w: &Widest, description: &str) -> CaseInfo {
    CaseInfo {
        code: SessionCode::from_number(LAST_CODE).expect("a code"),
        state: CaseState::InProgress,
        origin: CaseOrigin::CreatedByExpert(w.expert.clone()),
        customer: w.customers[0].clone(),
        description: description.to_string(),
        created_at: Timestamp(u64::MAX),
        updated_at: Timestamp(u64::MAX),
        expires_at: Timestamp(u64::MAX),
        group: w.team.clone(),
        assigned_to: Some(w.assignee.clone()),
        priority: Priority::Critical,
        response_due: Some(Timestamp(u64::MAX)),
        first_response_at: Some(Timestamp(u64::MAX)),
        response_target_met: Some(false),
        customer_online: true,
        expert: Some(w.expert.clone()),
    }
}

/// Every queue page `viewer` pages through fits, and together they hold `expected` once.
fn queue_pages_fit(
    broker: &Broker,
    viewer: QueueViewer<'_>,
    expected: usize,
) -> Result<(), TestCaseError> {
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..=expected {
        let page = broker.queue_page(viewer, after.as_ref(), MAX_ITEMS);
        prop_assert!(!page.entries.is_empty() || expected == 0);
        seen.extend(page.entries.iter().map(|entry| entry.code));
        after = page.next;
        reply(Reply::Queue(page.clone()))?;
        event(Event::QueueChanged(page))?;
        if after.is_none() {
            break;
        }
    }
    prop_assert!(after.is_none(), "the pages never ended");
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    prop_assert_eq!((seen.len(), unique.len()), (expected, expected));
    Ok(())
}

/// The whole check, for one set of widest content.
fn everything_fits(w: Widest) -> Result<(), TestCaseError> {
    let mut scene = Scene::new(w.clone());
    let waiting = scene.fill_the_queue()?;

    // Queue pages, for admins and for the expert the odd cases are assigned to.
    queue_pages_fit(&scene.broker, QueueViewer::Everyone, waiting.len())?;
    let teams = [w.team.clone()];
    let expert = QueueViewer::Expert {
        name: &w.assignee,
        teams: &teams,
    };
    queue_pages_fit(&scene.broker, expert, waiting.len())?;
    let widest_cursor = QueueCursor {
        priority: Priority::Low,
        response_due: Timestamp(u64::MAX),
        waiting_since: Timestamp(u64::MAX),
        arrival: u64::MAX,
        position: u32::MAX,
    };
    let past_the_end = scene
        .broker
        .queue_page(expert, Some(&widest_cursor), MAX_ITEMS);
    reply(Reply::Queue(past_the_end))?;
    event(Event::QueuePosition {
        code: waiting[0],
        position: u32::MAX,
    })?;

    // A history as long as a case keeps, paged through.
    let code = waiting[0];
    scene.fill_a_history(code)?;
    let entries = history(&scene.broker, code)?;
    let (mut from, mut pages, mut seen) = (0, 0, Vec::new());
    loop {
        let page = pages::history_page(code, CaseState::Pending, &entries, from, MAX_ITEMS);
        seen.extend(page.entries.iter().cloned());
        pages += 1;
        let next = page.next;
        reply(Reply::History(page))?;
        match next {
            Some(next) if pages <= MAX_HISTORY_ENTRIES => from = next,
            _ => break,
        }
    }
    prop_assert_eq!(&seen, &entries);
    prop_assert!(pages > 1, "the widest history takes more than one page");

    // The session side: a pull, a transfer to another expert who pulls, a close, an
    // expert-created case; the events they push, and the replies.
    let (name, teams) = (w.expert.clone(), vec![w.team.clone()]);
    let expert_party = PartyId(1_000);
    let pulled =
        scene.run(|b, now, out| b.pull_from(now, expert_party, &name, &teams, false, out))?;
    let pulled = pulled.ok_or_else(|| TestCaseError::fail("nobody to pull"))?;
    reply(Reply::Attached {
        case: pulled.clone(),
        resume_secret: None,
        position: None,
    })?;
    let to = Assignee::Expert(w.assignee.clone());
    let typed = pulled.code.to_string();
    reply(Reply::Case(scene.run(|b, now, out| {
        b.transfer(now, &name, &typed, &to, out)
    })?))?;
    let second = PartyId(1_001);
    let assignee = w.assignee.clone();
    scene.run(|b, now, out| b.pull_from(now, second, &assignee, &[], false, out))?;
    reply(Reply::Case(scene.run(|b, now, out| {
        b.close(now, Closer::Expert(&assignee), &typed, out)
    })?))?;
    let description = scene.description(0);
    let created =
        scene.run(|b, now, out| b.create(now, &name, &w.customers[0], &description, out))?;
    reply(Reply::Created(created))?;
    let pushed = |kind: fn(&Event) -> bool| scene.events.iter().any(kind);
    prop_assert!(
        pushed(|e| matches!(e, Event::Paired { .. }))
            && pushed(|e| matches!(e, Event::PeerLeft { .. }))
            && pushed(|e| matches!(e, Event::SessionEnded { .. })),
        "the session side pushed no pairing, departure or end"
    );
    for pushed in scene.events.clone() {
        event(pushed)?;
    }

    // Case pages over more cases than a page holds: the core's and the widest possible.
    let mut infos: Vec<CaseInfo> = waiting
        .iter()
        .filter_map(|code| scene.broker.case(*code).map(|case| case.info()))
        .collect();
    infos.extend(w.descriptions.iter().map(|d| widest_case(&w, d)));
    for info in &infos {
        reply(Reply::Case(info.clone()))?;
    }
    let candidates = infos.iter().cloned().cycle().take(MAX_ITEMS + 1);
    let page = pages::cases_page(candidates, MAX_ITEMS);
    prop_assert!(page.next.is_some() && page.cases.len() < MAX_ITEMS);
    let bytes: usize = page.cases.iter().map(codec::encoded_len).sum();
    prop_assert!(bytes <= MAX_PAGE_BYTES);
    reply(Reply::Cases(page))?;

    // The replies without a list.
    let widest = widest_case(&w, &w.descriptions[0]);
    reply(Reply::Welcome {
        role: Role::Admin,
        name: w.expert.clone(),
        server: format!("sosqd {}", env!("CARGO_PKG_VERSION")),
        keep_alive_ms: u64::MAX,
        idle_timeout_ms: u64::MAX,
    })?;
    reply(Reply::Attached {
        case: widest.clone(),
        resume_secret: Some("f".repeat(32)),
        position: Some(u32::MAX),
    })?;
    reply(Reply::Created(widest.clone()))?;
    reply(Reply::Case(widest))?;
    reply(Reply::Waiting)?;
    reply(Reply::Deleted { count: u64::MAX })?;
    event(Event::Paired {
        code: waiting[0],
        peer_role: Role::Customer,
        peer_name: w.customers[0].clone(),
    })?;
    // A pulling expert let go: the core's own sentence, for its longest departure.
    let mut core = Broker::new(
        crate::broker::BrokerConfig::default(),
        Box::new(rand::rngs::StdRng::seed_from_u64(5)),
    );
    let mut out = Vec::new();
    let (gone, pulling) = (PartyId(1), PartyId(2));
    let customer = w.customers[0].clone();
    let case = core
        .open_sos(Timestamp(1), gone, &customer, "", &mut out)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    core.pull(Timestamp(2), pulling, &w.expert, false, &mut out)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    out.clear();
    core.disconnect(Timestamp(3), gone, crate::broker::Departure::Lost, &mut out);
    let released = out.into_iter().find_map(|effect| match effect {
        crate::broker::Effect::Notify {
            event: event @ Event::Released { .. },
            ..
        } => Some(event),
        _ => None,
    });
    prop_assert!(released.is_some(), "no release for case {}", case.case.code);
    event(released.expect("checked"))?;
    for refusal in refusals(&mut scene)? {
        reply(Reply::Error(refusal.to_reply()))?;
    }
    Ok(())
}

/// Every refusal the daemon sends, each with the widest input that reaches it.
fn refusals(scene: &mut Scene) -> Result<Vec<ServerError>, TestCaseError> {
    let w = scene.w.clone();
    let code = SessionCode::from_number(LAST_CODE).expect("a code");
    let bad_code = w.typed.parse::<SessionCode>().expect_err("no session code");
    let mut errors: Vec<ServerError> = vec![
        BrokerError::from(bad_code).into(),
        BrokerError::UnknownCode(code).into(),
        BrokerError::AlreadyAttached(code).into(),
        BrokerError::AlreadyWaiting.into(),
        BrokerError::CustomerAlreadyConnected(code).into(),
        BrokerError::ExpertAlreadyConnected(code).into(),
        BrokerError::NotYourCase(code).into(),
        BrokerError::IllegalTransition {
            code,
            from: CaseState::InProgress,
            action: "move to pending",
        }
        .into(),
        BrokerError::QueueEmpty.into(),
        BrokerError::NobodyOnline(usize::MAX).into(),
        BrokerError::TooManyCases(usize::MAX).into(),
        no_such_team(&w.typed).into(),
        no_such_assignee(&Assignee::Expert(w.typed.clone())).into(),
        no_such_assignee(&Assignee::Group(w.typed.clone())).into(),
        ServerError::Throttled(Duration::from_secs(u64::from(u32::MAX))),
        ServerError::Store(crate::store::StoreError::Backend(w.typed.clone())),
    ];
    // The core's own refusals of input past its limits.
    let long_name = "\u{10ffff}".repeat(MAX_NAME_CHARS + 1);
    let long_text = "\u{10ffff}".repeat(MAX_DESCRIPTION_CHARS + 1);
    let (now, broker, mut out) = (scene.now, &mut scene.broker, Vec::new());
    let past_limits = [
        (long_name.as_str(), "", "general"),
        ("Alice", long_text.as_str(), "general"),
        ("Alice", "", long_name.as_str()),
        ("\u{1}", "", "general"),
    ];
    for (customer, description, group) in past_limits {
        let request = SosRequest {
            customer,
            description,
            priority: Priority::Normal,
            group,
        };
        match broker.open_sos_in(now, PartyId(9_999), request, &mut out) {
            Err(e) => errors.push(e.into()),
            Ok(_) => return Err(TestCaseError::fail("the core took input past its limits")),
        }
    }
    match broker.join(now, PartyId(9_998), &w.typed, &long_name, None, &mut out) {
        Err(e) => errors.push(e.into()),
        Ok(_) => return Err(TestCaseError::fail("the core took a bad join")),
    }
    // Every request a role may not make.
    let requests = [
        Request::OpenSos {
            customer: w.typed.clone(),
            description: w.typed.clone(),
            priority: Priority::Normal,
            group: Some(w.typed.clone()),
        },
        Request::Queue {
            after: None,
            limit: 0,
        },
        Request::WatchQueue { limit: 0 },
        Request::Pull { wait: true },
        Request::Connect {
            code: w.typed.clone(),
            working_queue: true,
        },
        Request::Create {
            customer: w.typed.clone(),
            description: w.typed.clone(),
        },
        Request::Close {
            code: w.typed.clone(),
            resume_secret: None,
        },
        Request::Escalate {
            code: w.typed.clone(),
            priority: Priority::Critical,
            reason: w.typed.clone(),
        },
        Request::Assign {
            code: w.typed.clone(),
            to: Assignee::Group(w.typed.clone()),
        },
        Request::Transfer {
            code: w.typed.clone(),
            to: Assignee::Group(w.typed.clone()),
        },
        Request::Cases {
            state: None,
            after: None,
            limit: 0,
        },
        Request::Delete(DeleteSelector::Filter(CaseFilter::default())),
        Request::History {
            code: w.typed.clone(),
            from: 0,
            limit: 0,
        },
    ];
    for role in [Role::Customer, Role::Expert, Role::Admin] {
        errors.extend(
            requests
                .iter()
                .filter_map(|request| authorize(role, request).err()),
        );
    }
    Ok(errors)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    })]

    /// Replies and events at the widest content the validators allow each fit one frame,
    /// lists in pages that cover every item once.
    #[test]
    fn every_reply_and_event_at_its_largest_fits_one_frame(w in widest(1..=14)) {
        everything_fits(w)?;
    }
}

/// The same with 4-byte characters only: the byte length is the largest there is.
#[test]
fn the_widest_of_everything_fits() {
    everything_fits(all_four_byte()).unwrap();
}

/// A refusal repeats at most a name's worth of what the peer typed.
#[test]
fn refusals_repeat_a_name_at_most() {
    let typed = "\u{1}".repeat(MAX_FRAME_LEN);
    let BrokerError::InvalidInput(message) = no_such_team(&typed) else {
        panic!("not an input refusal");
    };
    assert!(
        message.len() < MAX_NAME_CHARS * 10,
        "{} bytes",
        message.len()
    );
    assert_eq!(
        ServerError::from(no_such_assignee(&Assignee::Expert("ana".into())))
            .to_reply()
            .kind,
        ErrorKind::InvalidInput
    );
}
