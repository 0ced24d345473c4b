//! Staff notes: on an open case through the core, on a stored (closed) case as an append,
//! never a notification, bounded like other free text, and kept out of a folding entry.

use super::*;

/// The one history entry a note on a stored case asks the store to append.
fn appended(out: &[Effect]) -> (SessionCode, &HistoryEntry) {
    match out {
        [Effect::Persist(Persist::Note { code, entry })] => (*code, entry),
        other => panic!("not one note: {other:?}"),
    }
}

#[test]
fn a_note_on_an_open_case_is_saved_with_the_case_and_tells_nobody() {
    let (mut b, code, _) = paired_sos_case();
    let before = record(&b, code).updated_at;
    let mut out = Vec::new();
    let info = b
        .add_note(
            at(50),
            &code.to_string(),
            "  printer model X200  ",
            None,
            &mut out,
        )
        .unwrap();
    assert_eq!(info.state, CaseState::InProgress);
    assert_eq!(out.len(), 1, "a save and nothing else: {out:?}");
    assert!(notifies(&out).is_empty());
    let last = record(&b, code).history.last().cloned().unwrap();
    assert_eq!(last.kind, HistoryKind::Note);
    assert_eq!(last.event, "printer model X200", "trimmed");
    assert!(last.staff_only());
    assert_eq!(saved_records(&out)[0].history.last(), Some(&last));
    assert_eq!(
        record(&b, code).updated_at,
        before,
        "a note changes no state"
    );
}

#[test]
fn a_note_on_a_stored_closed_case_is_one_append_stamped_with_its_author() {
    let mut b = broker();
    let stored = record_in(CaseState::Closed, some_code(42));
    let mut out = Vec::new();
    let info = b
        .add_note(
            at(9),
            &stored.code.to_string(),
            "refund sent",
            Some(&stored),
            &mut out,
        )
        .unwrap();
    assert_eq!(info.state, CaseState::Closed);
    let actor = Actor {
        who: protocol::Actor::new(ActorRole::Admin, "root"),
        address: Some("192.0.2.7:5000".into()),
    };
    b.attribute(&actor, &mut out);
    let (code, entry) = appended(&out);
    assert_eq!(code, stored.code);
    assert_eq!(entry.kind, HistoryKind::Note);
    assert_eq!(entry.state, CaseState::Closed);
    assert_eq!(entry.event, "refund sent");
    assert_eq!(entry.actor, Some(actor.who.clone()));
    assert_eq!(entry.address.as_deref(), Some("192.0.2.7:5000"));
}

#[test]
fn a_note_needs_a_case_words_and_room() {
    let (mut b, code, _) = sos_case();
    let typed = code.to_string();
    let error = refused(&mut b, &[code], |b, out| {
        b.add_note(at(1), &typed, " ", None, out)
    });
    assert_eq!(error.kind(), protocol::ErrorKind::InvalidInput);
    let long = "x".repeat(MAX_NOTE_CHARS + 1);
    let error = refused(&mut b, &[code], |b, out| {
        b.add_note(at(1), &typed, &long, None, out)
    });
    assert!(error.to_string().contains("longer than"), "{error}");
    let exact = "é".repeat(MAX_NOTE_CHARS);
    b.add_note(at(1), &typed, &exact, None, &mut Vec::new())
        .expect("a note of the limit in characters, not bytes");

    // No case: neither held nor stored.
    let other = some_code(7).to_string();
    let error = refused(&mut b, &[code], |b, out| {
        b.add_note(at(1), &other, "x", None, out)
    });
    assert_eq!(error, BrokerError::UnknownCode(some_code(7)));
    // A stored record of another case does not stand in for this one.
    let stored = record_in(CaseState::Closed, some_code(8));
    let error = refused(&mut b, &[code], |b, out| {
        b.add_note(at(1), &other, "x", Some(&stored), out)
    });
    assert_eq!(error, BrokerError::UnknownCode(some_code(7)));
    // A stored record still open that the core does not hold is mid-move: refused.
    let open = record_in(CaseState::Pending, some_code(7));
    let error = refused(&mut b, &[code], |b, out| {
        b.add_note(at(1), &other, "x", Some(&open), out)
    });
    assert!(error.to_string().contains("again in a moment"), "{error}");

    // A full history takes no note, open or stored, so no note is ever folded away.
    let mut full = record_in(CaseState::Closed, some_code(9));
    while full.history.len() < NOTE_ROOM {
        full.note(at(2), HistoryKind::Event, "filler");
    }
    let typed_full = full.code.to_string();
    let error = refused(&mut b, &[code], |b, out| {
        b.add_note(at(3), &typed_full, "late", Some(&full), out)
    });
    assert!(error.to_string().contains("history is full"), "{error}");
    full.history.pop();
    b.add_note(at(3), &typed_full, "fits", Some(&full), &mut Vec::new())
        .expect("one below the room");
}

#[test]
fn notes_on_an_open_case_stop_before_the_folding_slot() {
    let (mut b, code, _) = sos_case();
    let typed = code.to_string();
    let mut added = 0;
    while b
        .add_note(at(5), &typed, "n", None, &mut Vec::new())
        .is_ok()
    {
        added += 1;
    }
    let history = record(&b, code).history;
    assert_eq!(history.len(), NOTE_ROOM);
    assert!(added > 0);
    // Later events fold into the one slot left; every note stays as written.
    let mut record = record(&b, code);
    for _ in 0..3 {
        record.note(at(6), HistoryKind::Left, "customer left");
    }
    assert_eq!(record.history.len(), MAX_HISTORY_ENTRIES);
    assert_eq!(
        record
            .history
            .iter()
            .filter(|e| e.kind == HistoryKind::Note)
            .count(),
        added
    );
    assert_eq!(
        record.history.last().map(|e| e.kind),
        Some(HistoryKind::Folded)
    );
}

#[test]
fn a_note_folded_anyway_leaves_its_words_out_of_the_folding_entry() {
    let mut record = record_in(CaseState::Closed, some_code(3));
    while record.history.len() < MAX_HISTORY_ENTRIES {
        record.note(at(2), HistoryKind::Event, "filler");
    }
    record.note(at(3), HistoryKind::Note, "secret internal words");
    let last = record.history.last().unwrap();
    assert_eq!(last.kind, HistoryKind::Folded);
    assert!(!last.event.contains("secret"), "{}", last.event);
    assert!(!last.staff_only());
}
