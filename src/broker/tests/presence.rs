//! Presence: a party leaving (on purpose or lost) and coming back, and cases surviving a
//! restart with their places in the queue and their history attributed.

use super::*;

#[test]
fn expert_disconnect_returns_paired_case_to_pending_with_unpair_and_peer_left() {
    let (mut b, code, _) = paired_sos_case();
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
    let (mut b, code, secret) = paired_sos_case();

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
    let (mut b, code, _) = joined_case();
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
    let (mut b, code, secret) = sos_case();
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
