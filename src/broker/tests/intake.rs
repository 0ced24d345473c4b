//! Intake: an SOS opens a `pending` case, an expert creates a `new` one, a customer joins by
//! code; codes are unique and never reused while a case may come back; names, descriptions
//! and typed codes are checked.

use super::*;

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
            last_message: None,
            attachments: 0,
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
    let (mut b, code) = new_case();
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
    let (mut b, first, secret_1) = sos_case();
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

// ----- 8. input validation -------------------------------------------------------------

const BAD_NAMES: [&str; 5] = ["", "   ", "tab\there", "line\nbreak", "bell\u{7}"];

fn too_long_name() -> String {
    "x".repeat(MAX_NAME_CHARS + 1)
}

#[test]
fn bad_customer_names_are_refused_and_change_nothing() {
    let (mut b, created) = new_case();
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
    let (mut b, code, secret) = sos_case();
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
    let (mut b, first) = new_case();
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
