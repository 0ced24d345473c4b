//! Every reply and every event the daemon sends, at the largest content the validators let
//! through, fits one frame (`codec::encode` succeeds: at most `MAX_FRAME_LEN` bytes of
//! payload behind the 4-byte length).
//!
//! "Largest" is taken from the validators, not guessed: customer names of
//! [`MAX_NAME_CHARS`], descriptions, escalation reasons and staff notes of
//! [`MAX_DESCRIPTION_CHARS`], team and assignee names of [`MAX_NAME_CHARS`] (the core's
//! bound; the users file's, 1 to 64 ASCII characters, is smaller still), staff names of
//! 64 ASCII characters (the users file's `check_name`: they come from an account, the core
//! takes them on trust).
//! Characters are drawn from 1- to 4-byte UTF-8, mostly 4-byte, and
//! `the_widest_of_everything_fits` takes 4-byte characters only, so the byte length is
//! the largest there is. Content goes through the real core (a [`Broker`] that opens,
//! routes, escalates, pairs, transfers and closes cases with it) and the real page
//! builders (`Broker::queue_page`, [`pages::cases_page`], [`pages::history_page`]) over
//! more items than a page holds. Error replies echo what a peer typed at most up to the
//! name limit: the refusals that repeat input get inputs as long as a request frame. Every
//! frame is also decoded back, as the receiver would (`pages` checks the other end: pages
//! of the smallest items, which claim the most while decoding).

mod scene;

use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use sosq::codec::{self, MAX_FRAME_LEN};
use sosq::protocol::{
    Assignee, CaseFilter, CaseInfo, CaseState, DeleteSelector, ErrorKind, Event, Priority,
    QueueCursor, Reply, Request, Role, ServerMessage, Timestamp, MAX_PAGE_BYTES,
};
use sosq::SessionCode;

use super::dispatch::{no_such_assignee, no_such_team};
use super::roles::authorize;
use super::{pages, ServerError};
use crate::broker::{
    Broker, BrokerError, Closer, PartyId, PullRequest, QueueViewer, SosRequest,
    MAX_DESCRIPTION_CHARS, MAX_HISTORY_ENTRIES, MAX_NAME_CHARS,
};
use scene::*;

/// Encodes `message` as the daemon would; fails unless it fits one frame and the
/// receiver's decoder (which has limits of its own) reads it back whole.
pub(super) fn fits(message: ServerMessage) -> Result<usize, TestCaseError> {
    let what = || format!("{message:?}").chars().take(120).collect::<String>();
    let frame =
        codec::encode(&message).map_err(|e| TestCaseError::fail(format!("{}…: {e}", what())))?;
    prop_assert!(frame.len() <= MAX_FRAME_LEN + 4);
    let back: ServerMessage = codec::decode(&frame[4..])
        .map_err(|e| TestCaseError::fail(format!("{}… does not decode: {e}", what())))?;
    prop_assert!(back == message, "{}… changed on the way", what());
    Ok(frame.len())
}

pub(super) fn reply(reply: Reply) -> Result<usize, TestCaseError> {
    fits(ServerMessage::Reply(reply))
}

pub(super) fn event(event: Event) -> Result<usize, TestCaseError> {
    fits(ServerMessage::Event(event))
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
    let pulled = scene.run(|b, now, out| {
        let request = PullRequest {
            expert: &name,
            teams: teams.clone(),
            wait: false,
        };
        b.pull(now, expert_party, request, out)
    })?;
    let pulled = pulled.ok_or_else(|| TestCaseError::fail("nobody to pull"))?;
    reply(Reply::Attached {
        case: pulled.clone(),
        resume_secret: None,
        position: None,
    })?;
    let to = Assignee::Expert(w.assignee.clone());
    let typed = pulled.code.to_string();
    let widest_share = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    reply(Reply::Case(scene.run(|b, now, out| {
        b.invite_native(now, &name, &typed, widest_share, out)
    })?))?;
    reply(Reply::Case(scene.run(|b, now, out| {
        b.transfer(now, &name, &typed, &to, out)
    })?))?;
    let second = PartyId(1_001);
    let assignee = w.assignee.clone();
    scene.run(|b, now, out| {
        let request = PullRequest {
            expert: &assignee,
            teams: Vec::new(),
            wait: false,
        };
        b.pull(now, second, request, out)
    })?;
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
            && pushed(|e| matches!(e, Event::SessionEnded { .. }))
            && pushed(|e| matches!(e, Event::NativeInvite { .. })),
        "the session side pushed no pairing, departure, end or invitation"
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
        protocol: u16::MAX,
    })?;
    reply(Reply::Attached {
        case: widest.clone(),
        resume_secret: Some("f".repeat(32)),
        position: Some(u32::MAX),
    })?;
    reply(Reply::Created(widest.clone()))?;
    reply(Reply::Case(widest))?;
    reply(Reply::Waiting)?;
    reply(Reply::Deleted {
        count: u64::MAX,
        not_found: vec![
            SessionCode::from_number(LAST_CODE).expect("a code");
            sosq::protocol::MAX_CODES_PER_DELETE
        ],
    })?;
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
        .open_sos(
            Timestamp(1),
            gone,
            SosRequest::general(&customer, ""),
            &mut out,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    core.pull(
        Timestamp(2),
        pulling,
        PullRequest::general(&w.expert, false),
        &mut out,
    )
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
    // An expert in a thousand teams of the longest names: the refusal names eight.
    let searched = crate::broker::Searched {
        teams: vec![w.team.clone(); 1_000],
    };
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
        BrokerError::QueueEmpty(searched.clone()).into(),
        BrokerError::NobodyOnline(usize::MAX, searched).into(),
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
        match broker.open_sos(now, PartyId(9_999), request, &mut out) {
            Err(e) => errors.push(e.into()),
            Ok(_) => return Err(TestCaseError::fail("the core took input past its limits")),
        }
    }
    match broker.join(now, PartyId(9_998), &w.typed, &long_name, None, &mut out) {
        Err(e) => errors.push(e.into()),
        Ok(_) => return Err(TestCaseError::fail("the core took a bad join")),
    }
    // A note past its limit, and one on a history with no room (the longest code).
    let full = scene::full_closed_record(code);
    let typed = code.to_string();
    for (text, stored) in [(long_text.as_str(), None), ("x", Some(&full))] {
        match broker.add_note(now, &typed, text, stored, &mut out) {
            Err(e) => errors.push(e.into()),
            Ok(_) => return Err(TestCaseError::fail("the core took a bad note")),
        }
    }
    // A message past its limit; a file past any size, of a type refused; a full case.
    let party = PartyId(9_997);
    let request = SosRequest {
        customer: "A",
        description: "",
        priority: Priority::Normal,
        group: "general",
    };
    let typed_open = match broker.open_sos(now, party, request, &mut out) {
        Ok(attached) => attached.case.code.to_string(),
        Err(_) => return Err(TestCaseError::fail("the core refused a plain SOS")),
    };
    if let Err(e) = broker.add_message(now, party, &typed_open, None, &long_text, &mut out) {
        errors.push(e.into());
    }
    if let Err(e) = broker.may_attach(party, &typed_open, None, &w.typed, u64::MAX) {
        errors.push(e.into());
    }
    if let Err(e) = crate::broker::sniff_type(b"\0") {
        errors.push(e.into());
    }
    errors.push(ServerError::Busy(format!(
        "case {code} takes at most {} messages a minute; wait {} and send it again",
        u32::MAX,
        crate::broker::humanize(Duration::from_secs(u64::from(u32::MAX)))
    )));
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
        Request::InviteNative {
            code: w.typed.clone(),
            share: w.typed.clone(),
        },
        Request::Cases {
            filter: CaseFilter::default(),
            after: None,
            limit: 0,
        },
        Request::Delete(DeleteSelector::Filter(CaseFilter::default())),
        Request::History {
            code: w.typed.clone(),
            from: 0,
            limit: 0,
        },
        Request::Note {
            code: w.typed.clone(),
            text: w.typed.clone(),
        },
        Request::AddMessage {
            code: w.typed.clone(),
            resume_secret: Some(w.typed.clone()),
            text: w.typed.clone(),
        },
        Request::AttachStart {
            code: w.typed.clone(),
            resume_secret: Some(w.typed.clone()),
            name: w.typed.clone(),
            size: u64::MAX,
        },
        Request::AttachPart {
            upload: u64::MAX,
            bytes: vec![0; sosq::protocol::MAX_PART_BYTES],
        },
        Request::AttachFinish { upload: u64::MAX },
        Request::Attachments {
            code: w.typed.clone(),
        },
        Request::Attachment {
            code: w.typed.clone(),
            id: u32::MAX,
            offset: u64::MAX,
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
