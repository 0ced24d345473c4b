//! Ending: closing by expert or customer, expiry at exactly the case lifetime, and bulk
//! delete that asks the store first.

use super::*;

#[test]
fn close_from_new_by_expert() {
    let (mut b, code) = new_case();
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
    let (mut b, code, _) = sos_case();
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
    let (mut b, code, _) = paired_sos_case();
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
    let (mut b, code, secret) = sos_case();
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
    let (mut b, code, secret) = sos_case();
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
    let (mut b, new) = new_case();
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

// ----- 3. expiry -----------------------------------------------------------------------

#[test]
fn a_case_expires_exactly_at_its_ttl_and_not_a_millisecond_before() {
    let (mut b, code, secret) = sos_case();
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

// ----- 7. bulk delete ------------------------------------------------------------------

#[test]
fn delete_by_codes_asks_the_store_first_then_ends_the_sessions() {
    let (mut b, paired, _) = paired_sos_case();
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
    let (mut b, code) = new_case();
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
    let (mut b, code, _) = sos_case();
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
    let (mut b, pending, _) = sos_case();
    let (in_progress, _) = sos(&mut b, T0, C2, "Carol");
    connect(&mut b, at(1), E1, "ben", in_progress);
    let new = create(&mut b, T0, "ana", "Bob");
    let selection = Persist::DeleteWhere(CaseSelection {
        state: Some(CaseState::Pending),
        ..CaseSelection::default()
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
            ..CaseFilter::default()
        },
        at(2_000),
    )
    .unwrap();
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
        ..CaseSelection::default()
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
    let (mut b, code) = new_case();
    let save = Persist::Save(record(&b, code));
    let error = refused(&mut b, &[code], |b, out| b.delete(at(1), "root", save, out));
    assert!(matches!(error, BrokerError::InvalidInput(_)), "{error:?}");
    assert_eq!(error.kind(), sosq::protocol::ErrorKind::InvalidInput);
}

#[test]
fn case_selection_resolves_against_now_and_matches_every_given_field() {
    let everything = CaseSelection::resolve(&CaseFilter::default(), at(10)).unwrap();
    assert_eq!(everything, CaseSelection::default());

    let resolved = CaseSelection::resolve(
        &CaseFilter {
            state: Some(CaseState::Closed),
            older_than_ms: Some(60_000),
            ..CaseFilter::default()
        },
        at(100_000),
    )
    .unwrap();
    assert_eq!(
        resolved,
        CaseSelection {
            state: Some(CaseState::Closed),
            created_before: Some(at(40_000)),
            ..CaseSelection::default()
        }
    );
    // "Older than" more than the epoch saturates instead of wrapping around.
    let saturated = CaseSelection::resolve(
        &CaseFilter {
            state: None,
            older_than_ms: Some(u64::MAX),
            ..CaseFilter::default()
        },
        at(0),
    )
    .unwrap();
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
        ..CaseSelection::default()
    };
    record.state = CaseState::Expired;
    assert!(by_state.matches(&record));
    record.state = CaseState::New;
    assert!(!by_state.matches(&record));
}
