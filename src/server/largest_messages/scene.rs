//! The widest content the validators let through, and the core at work on it: the
//! strategies that draw names, descriptions and reasons at their character limits in 1- to
//! 4-byte UTF-8, and a [`Scene`] that opens, routes, escalates, pairs, transfers and closes
//! cases with them, stamping every history entry with the longest actor and address.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::codec::MAX_FRAME_LEN;
use sosq::protocol::{
    ActorRole, Assignee, CaseInfo, CaseOrigin, CaseState, Event, HistoryEntry, Priority, Reply,
    Timestamp, MAX_PAGE_ITEMS,
};
use sosq::SessionCode;

use super::reply;
use crate::broker::{
    Actor, Broker, BrokerConfig, BrokerError, Effect, PartyId, SosRequest, FOLD_MARK,
    MAX_DESCRIPTION_CHARS, MAX_HISTORY_ENTRIES, MAX_NAME_CHARS,
};

/// The longest staff (user) name the users file accepts.
pub(super) const MAX_STAFF_NAME: usize = 64;
/// The most items any page is asked for.
pub(super) const MAX_ITEMS: usize = MAX_PAGE_ITEMS as usize;
/// The first "now"; a realistic time takes as many bytes as any later one.
pub(super) const T0: u64 = 1_764_528_000_000;
/// The highest session code.
pub(super) const LAST_CODE: u64 = 999_999_999;

/// The widest content of one run.
#[derive(Debug, Clone)]
pub(super) struct Widest {
    /// Customer names, one per waiting case.
    pub(super) customers: Vec<String>,
    /// Descriptions, used in turn.
    pub(super) descriptions: Vec<String>,
    /// An escalation reason.
    pub(super) reason: String,
    /// A team name.
    pub(super) team: String,
    /// An expert a case is assigned or transferred to.
    pub(super) assignee: String,
    /// The expert at work (a staff name).
    pub(super) expert: String,
    /// What a peer typed into a field a refusal repeats, as long as a request frame allows.
    pub(super) typed: String,
}

/// A character of 1 to 4 bytes in UTF-8, mostly 4. None is a control character (names may
/// not have them) nor a 1- or 2-byte space (names are trimmed).
pub(super) fn wide_char() -> impl Strategy<Value = char> {
    prop_oneof![
        1 => prop::char::range('a', 'z'),
        1 => prop::char::range('\u{c0}', '\u{7ff}'),
        1 => prop::char::range('\u{800}', '\u{d7ff}'),
        5 => prop::char::range('\u{10000}', '\u{10ffff}'),
    ]
}

/// Exactly `chars` characters of [`wide_char`].
pub(super) fn wide_text(chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(wide_char(), chars).prop_map(String::from_iter)
}

/// What a hostile peer types: control characters (which `{:?}` escapes to up to 6 bytes
/// each) and wide characters, filling a request frame.
pub(super) fn typed_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![prop::char::range('\u{0}', '\u{1f}'), wide_char()];
    prop::collection::vec(char, MAX_FRAME_LEN / 4).prop_map(String::from_iter)
}

pub(super) fn widest(cases: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Widest> {
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
pub(super) fn all_four_byte() -> Widest {
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

/// The core at work on the widest content, as the shell drives it: every command's history
/// entries stamped with the longest actor and address.
pub(super) struct Scene {
    pub(super) broker: Broker,
    pub(super) now: Timestamp,
    /// Everything the core pushed to a party.
    pub(super) events: Vec<Event>,
    pub(super) actor: Actor,
    /// "expert NAME", as the shell names staff in escalations and assignments.
    pub(super) who: String,
    pub(super) w: Widest,
}

impl Scene {
    pub(super) fn new(w: Widest) -> Scene {
        let longest = SocketAddrV6::new(Ipv6Addr::from([0xffff; 8]), 65_535, 0, u32::MAX);
        Scene {
            broker: Broker::new(BrokerConfig::default(), Box::new(StdRng::seed_from_u64(9))),
            now: Timestamp(T0),
            events: Vec::new(),
            actor: Actor {
                who: sosq::protocol::Actor::new(ActorRole::Expert, w.expert.clone()),
                address: Some(SocketAddr::V6(longest).to_string()),
            },
            who: format!("expert {}", w.expert),
            w,
        }
    }

    /// Runs one core command at the next millisecond, as `Shared::execute` does.
    pub(super) fn run<T>(
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

    pub(super) fn description(&self, n: usize) -> String {
        self.w.descriptions[n % self.w.descriptions.len()].clone()
    }

    /// Every customer waits; every other one is assigned to the widest expert name.
    pub(super) fn fill_the_queue(&mut self) -> Result<Vec<SessionCode>, TestCaseError> {
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
                b.open_sos(now, PartyId(n as u64 + 1), request, out)
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
    pub(super) fn fill_a_history(&mut self, code: SessionCode) -> Result<(), TestCaseError> {
        let typed = code.to_string();
        let (who, reason) = (self.who.clone(), self.w.reason.clone());
        let escalate = |scene: &mut Scene, n: usize, reason: &str| {
            let priority = Priority::ALL[n % 4];
            scene.run(|b, now, out| b.escalate(now, &who, &typed, priority, reason, out))
        };
        for n in 0..12 {
            reply(Reply::Case(escalate(self, n, &reason)?))?;
        }
        // Staff notes of the widest text the core takes, kept as they were written.
        for _ in 0..4 {
            let note = self.run(|b, now, out| b.add_note(now, &typed, &reason, None, out))?;
            reply(Reply::Case(note))?;
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

pub(super) fn attached_code(broker: &Broker, party: PartyId) -> Result<SessionCode, TestCaseError> {
    broker
        .attached_case(party)
        .ok_or_else(|| TestCaseError::fail("the customer is not attached"))
}

pub(super) fn history(
    broker: &Broker,
    code: SessionCode,
) -> Result<Vec<HistoryEntry>, TestCaseError> {
    Ok(broker
        .case(code)
        .ok_or_else(|| TestCaseError::fail("the case is gone"))?
        .record
        .history
        .clone())
}

/// A case with every field at its widest at once (the core never fills all of them on one
/// case: an expert-created case has no response target, say).
/// A closed case whose history has no room for a note (see `broker::NOTE_ROOM`).
pub(super) fn full_closed_record(code: SessionCode) -> crate::broker::CaseRecord {
    let entry = HistoryEntry {
        at: Timestamp(1),
        state: CaseState::Closed,
        kind: sosq::protocol::HistoryKind::Event,
        event: String::new(),
        actor: None,
        address: None,
    };
    crate::broker::CaseRecord {
        code,
        origin: CaseOrigin::Sos,
        customer: String::new(),
        description: String::new(),
        state: CaseState::Closed,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        expires_at: Timestamp(1),
        waiting_since: None,
        group: crate::broker::GENERAL.to_string(),
        assigned_to: None,
        priority: Priority::Normal,
        response_due: None,
        first_response_at: None,
        resume_secret_hash: None,
        history: vec![entry; crate::broker::NOTE_ROOM],
        last_message: None,
        attachments: 0,
    }
}

pub(super) fn widest_case(w: &Widest, description: &str) -> CaseInfo {
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
        // A customer's message is as long as a description may be.
        last_message: Some(description.to_string()),
        attachments: u32::MAX,
    }
}
