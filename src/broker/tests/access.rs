//! Who may do what: customers see and close only their own cases, the first customer binds an
//! expert-created case, seats are not taken twice, and a proven party takes over at once.

use super::*;

// ----- 6. who may do what --------------------------------------------------------------

#[test]
fn a_customer_cannot_see_or_close_another_customers_case() {
    let (mut b, mine, my_secret) = sos_case();
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
    let (mut b, code) = new_case();
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
    let (mut b, code, first) = joined_case();
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
    let (mut b, code, _) = joined_case();
    let typed = code.to_string();
    let error = refused(&mut b, &[code], |b, out| {
        b.join(at(2), C2, &typed, "Mallory", None, out)
    });
    assert_eq!(error, BrokerError::NotYourCase(code));
}

#[test]
fn a_customer_proving_its_secret_takes_over_from_its_old_connection_at_once() {
    let (mut b, code, joined) = joined_case();
    let secret = joined.resume_secret.unwrap();
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
    let (mut b, code, _) = paired_sos_case();
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
    let (mut b, code, secret) = sos_case();
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
    let (mut b, sos_case, _) = sos_case();
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
    let (mut b, created) = new_case();
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
    let (mut b, (first, _), (second, _)) = two_waiting();
    connect(&mut b, at(2), E1, "ben", second);
    assert_eq!(state(&b, second), CaseState::InProgress);
    assert_eq!(queue_codes(&b), vec![first]);
}
