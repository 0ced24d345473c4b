//! The lifecycle table itself: exactly its transitions are allowed, and every illegal one is
//! refused, pushes nothing and changes nothing.

use super::*;

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
    let (b, code) = new_case();
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
    let (mut b, code) = new_case();
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
    let (mut b, code, secret) = sos_case();
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
    let (mut b, code) = new_case();
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
    let (mut b, code, _) = joined_case();
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
    let (mut b, code, _) = sos_case();
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
