//! Pairing: connect and pull seat an expert, two seats make a case `in progress`, and the
//! queue hands out the oldest waiting case, once, to experts served first come first served.

use super::*;

#[test]
fn expert_connect_moves_new_case_to_pending() {
    let (mut b, code) = new_case();
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
    let (mut b, code, _) = joined_case();
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
    let (mut b, code) = new_case();
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

// ----- 5. the queue --------------------------------------------------------------------

#[test]
fn the_queue_serves_the_oldest_waiting_case_first() {
    let (mut b, (a, _), (bb, _)) = two_waiting();
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
    let (mut b, code, _) = sos_case();
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
    let (mut b, (a, _), (bb, _)) = two_waiting();
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
    let (mut b, (a, secret), (bb, _)) = two_waiting();

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
    let (mut b, created) = new_case();
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
    let (mut b, code, _) = paired_sos_case();
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
