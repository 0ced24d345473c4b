//! Customers' messages and attachments in the core: who may add them, what is kept, the
//! checks on a file (size, count, type by content, name), and that a refusal changes
//! nothing. Also the expert's invitation to the native client (who may ask, and what).

use super::*;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn png(len: usize) -> Vec<u8> {
    let mut bytes = PNG.to_vec();
    bytes.resize(len.max(PNG.len()), 0);
    bytes
}

fn file(name: &str, bytes: Vec<u8>) -> NewAttachment<'_> {
    NewAttachment {
        name,
        bytes: AttachmentBytes::new(bytes),
    }
}

#[test]
fn a_customers_message_goes_into_the_history_and_is_the_cases_latest() {
    let (mut b, code, secret) = sos_case();
    let typed = code.to_string();
    let mut out = Vec::new();
    let case = b
        .add_message(at(5), C1, &typed, None, "  it also beeps  ", &mut out)
        .expect("its own customer, on its connection");
    assert_eq!(case.last_message.as_deref(), Some("it also beeps"));
    assert_eq!(out, vec![saved(&b, code)]);
    let last = record(&b, code).history.pop().unwrap();
    assert_eq!(last.kind, HistoryKind::Message);
    assert_eq!(last.event, "customer message: it also beeps");
    assert!(!last.staff_only(), "the customer's own words");

    // From another connection, with the secret; the queue shows the latest, cut.
    let long = "x".repeat(MAX_MESSAGE_CHARS);
    b.add_message(at(6), C2, &typed, Some(&secret), &long, &mut Vec::new())
        .expect("with the secret");
    let page = b.queue_page(QueueViewer::Everyone, None, 10);
    let shown = page.entries[0].last_message.clone().unwrap();
    assert_eq!(
        shown.chars().count(),
        sosq::protocol::MAX_QUEUE_MESSAGE_CHARS
    );
    assert!(shown.ends_with('…'));
    assert_eq!(info(&b, code).last_message.as_deref(), Some(long.as_str()));
}

#[test]
fn a_message_from_a_stranger_an_empty_or_too_long_one_or_to_a_closed_case_is_refused() {
    let (mut b, code, _) = sos_case();
    let typed = code.to_string();
    let stranger = refused(&mut b, &[code], |b, out| {
        b.add_message(at(5), C2, &typed, Some("wrong"), "hi", out)
    });
    assert!(
        matches!(stranger, BrokerError::NotYourCase(_)),
        "{stranger}"
    );
    let empty = refused(&mut b, &[code], |b, out| {
        b.add_message(at(5), C1, &typed, None, " \n ", out)
    });
    assert!(empty.to_string().contains("empty"), "{empty}");
    let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
    let too_long = refused(&mut b, &[code], |b, out| {
        b.add_message(at(5), C1, &typed, None, &long, out)
    });
    assert!(too_long.to_string().contains("2000"), "{too_long}");

    b.close(at(6), Closer::Expert("ana"), &typed, &mut Vec::new())
        .expect("close");
    let closed = refused(&mut b, &[], |b, out| {
        b.add_message(at(7), C1, &typed, None, "hello?", out)
    });
    assert!(matches!(closed, BrokerError::UnknownCode(_)), "{closed}");
}

#[test]
fn an_attachment_is_counted_numbered_recorded_and_handed_to_the_store() {
    let (mut b, code, secret) = sos_case();
    let typed = code.to_string();
    let mut out = Vec::new();
    let added = b
        .attach(
            at(5),
            C2,
            &typed,
            Some(&secret),
            file("C:\\Users\\al\\error.png", png(34_567)),
            &mut out,
        )
        .expect("a PNG from its customer");
    assert_eq!(added.id, 1);
    assert_eq!(added.name, "error.png", "no folders");
    assert_eq!(added.content_type, "image/png");
    assert_eq!(added.size, 34_567);
    assert_eq!(added.attached_at, at(5));
    let record = record(&b, code);
    assert_eq!(record.attachments, 1);
    let last = record.history.last().unwrap();
    assert_eq!(last.kind, HistoryKind::Attachment);
    assert_eq!(
        last.event,
        "customer attached error.png (34,567 bytes, image/png)"
    );
    match out.as_slice() {
        [Effect::Persist(Persist::Save(saved)), Effect::Persist(Persist::Attach {
            code: to,
            attachment,
        })] => {
            assert_eq!(saved.attachments, 1);
            assert_eq!(*to, code);
            assert_eq!(attachment.info, added);
            assert_eq!(attachment.bytes.as_slice(), png(34_567).as_slice());
        }
        other => panic!("expected a save then an attach, got {other:?}"),
    }
    let second = b
        .attach(
            at(6),
            C1,
            &typed,
            None,
            file("log.txt", b"line 1\nline 2\n".to_vec()),
            &mut Vec::new(),
        )
        .expect("text from its connection");
    assert_eq!(second.id, 2);
    assert_eq!(second.content_type, TEXT_TYPE);
    assert_eq!(info(&b, code).attachments, 2);
}

#[test]
fn attachments_stop_at_the_cap_and_the_size_limit_and_a_stranger_gets_nothing() {
    let config = BrokerConfig {
        max_attachments_per_case: 2,
        max_attachment_bytes: 1_000,
        ..BrokerConfig::default()
    };
    let mut b = broker_with(config);
    let (code, _) = sos(&mut b, T0, C1, "Alice");
    let typed = code.to_string();
    let too_big = refused(&mut b, &[code], |b, out| {
        b.attach(at(1), C1, &typed, None, file("big.png", png(1_001)), out)
    });
    assert_eq!(
        too_big.to_string(),
        "the file is 1,001 bytes; an attachment may have at most 1,000 bytes"
    );
    assert!(b.may_attach(C1, &typed, None, "big.png", 1_001).is_err());
    assert!(b.may_attach(C1, &typed, None, "empty.png", 0).is_err());
    let stranger = refused(&mut b, &[code], |b, out| {
        b.attach(at(1), C2, &typed, None, file("a.png", png(10)), out)
    });
    assert!(matches!(stranger, BrokerError::NotYourCase(_)));
    for n in 0..2 {
        b.attach(
            at(2 + n),
            C1,
            &typed,
            None,
            file("a.png", png(10)),
            &mut Vec::new(),
        )
        .expect("under the cap");
    }
    let full = refused(&mut b, &[code], |b, out| {
        b.attach(at(9), C1, &typed, None, file("a.png", png(10)), out)
    });
    assert!(
        full.to_string().contains("has 2 attachments already"),
        "{full}"
    );
    assert!(
        b.may_attach(C1, &typed, None, "a.png", 10).is_err(),
        "checked at the start too"
    );
}

#[test]
fn the_type_is_judged_by_content_and_only_accepted_ones_pass() {
    let accepted: [(&[u8], &str); 7] = [
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"\xff\xd8\xff\xe0JFIF", "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (b"GIF87a....", "image/gif"),
        (b"RIFF\x10\0\0\0WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n", "application/pdf"),
        (
            "the printer says: Fehler 42 – ünknown\r\n\tok".as_bytes(),
            TEXT_TYPE,
        ),
    ];
    for (bytes, kind) in accepted {
        assert_eq!(sniff_type(bytes).unwrap(), kind);
        assert!(may_begin_accepted(bytes).is_ok());
    }
    let refused_types: [&[u8]; 4] = [
        b"MZ\x90\0\x03\0\0\0",   // a Windows program
        b"PK\x03\x04zip",        // a zip archive
        b"plain until a NUL\0",  // binary that starts like text
        b"\xff\xfe\0t\0e\0x\0t", // UTF-16
    ];
    for bytes in refused_types {
        let refusal = sniff_type(bytes).unwrap_err().to_string();
        assert!(
            refusal.contains("PNG, JPEG, GIF or WebP images, PDF documents and plain UTF-8 text"),
            "{refusal}"
        );
        assert!(may_begin_accepted(bytes).is_err());
    }
    // A first part may end inside a character; the whole file may not.
    let cut = "é".as_bytes();
    assert!(may_begin_accepted(&[b'a', cut[0]]).is_ok());
    assert!(sniff_type(&[b'a', cut[0]]).is_err());
}

#[test]
fn names_lose_folders_control_characters_direction_marks_and_length_but_keep_the_extension() {
    assert_eq!(clean_name("../../etc/passwd"), "passwd");
    assert_eq!(clean_name("C:\\temp\\shot.png"), "shot.png");
    assert_eq!(clean_name("a\u{0}b\nc\u{1b}[31m.txt"), "abc[31m.txt");
    assert_eq!(clean_name("invoice\u{202e}gpj.exe"), "invoicegpj.exe");
    assert_eq!(clean_name("..hidden"), "hidden");
    assert_eq!(clean_name("  "), "attachment");
    assert_eq!(clean_name("dir/"), "attachment");
    let long = format!("{}.png", "n".repeat(300));
    let kept = clean_name(&long);
    assert_eq!(
        kept.chars().count(),
        sosq::protocol::MAX_ATTACHMENT_NAME_CHARS
    );
    assert!(kept.ends_with(".png"), "{kept}");
    let no_extension = "é".repeat(300);
    assert_eq!(
        clean_name(&no_extension).chars().count(),
        sosq::protocol::MAX_ATTACHMENT_NAME_CHARS
    );
}

#[test]
fn a_wrong_type_or_a_closed_case_at_the_finish_changes_nothing() {
    let (mut b, code, _) = sos_case();
    let typed = code.to_string();
    let wrong = refused(&mut b, &[code], |b, out| {
        b.attach(
            at(1),
            C1,
            &typed,
            None,
            file("a.exe", b"MZ\x90\0".to_vec()),
            out,
        )
    });
    assert!(matches!(wrong, BrokerError::InvalidInput(_)));
    assert_eq!(record(&b, code).attachments, 0);
    b.close(at(2), Closer::Expert("ana"), &typed, &mut Vec::new())
        .expect("close");
    let closed = refused(&mut b, &[], |b, out| {
        b.attach(at(3), C1, &typed, None, file("a.png", png(10)), out)
    });
    assert!(matches!(closed, BrokerError::UnknownCode(_)));
}

#[test]
fn the_expert_in_the_session_invites_the_connected_customer_to_the_native_client() {
    let (mut b, code, _) = paired_sos_case();
    let typed = code.to_string();
    let mut out = Vec::new();
    b.invite_native(at(5), "ben", &typed, " 127.0.0.1:5900 ", &mut out)
        .expect("ben is in the session");
    assert_eq!(
        out,
        vec![
            saved(&b, code),
            Effect::Notify {
                party: C1,
                event: Event::NativeInvite {
                    code,
                    expert: "ben".into(),
                    share: "127.0.0.1:5900".into(),
                },
            },
        ]
    );
    let last = record(&b, code).history.pop().unwrap();
    assert_eq!(last.kind, HistoryKind::NativeInvite);
    assert_eq!(
        last.event,
        "expert ben asked the customer to run sosq and share 127.0.0.1:5900"
    );
}

#[test]
fn an_invitation_from_another_expert_to_an_absent_customer_or_of_no_address_is_refused() {
    let (mut b, code, _) = paired_sos_case();
    let typed = code.to_string();
    let other = refused(&mut b, &[code], |b, out| {
        b.invite_native(at(5), "carla", &typed, "127.0.0.1:5900", out)
    });
    assert!(
        other.to_string().contains("not the expert in a session"),
        "{other}"
    );
    let no_address = refused(&mut b, &[code], |b, out| {
        b.invite_native(at(5), "ben", &typed, "my screen", out)
    });
    assert!(
        matches!(&no_address, BrokerError::InvalidInput(m) if m.contains("not an address to share")),
        "{no_address}"
    );
    // An expert who connected to a case whose customer is not there (yet, or any more).
    let (mut b, code) = new_case();
    connect(&mut b, at(1), E1, "ben", code);
    let typed = code.to_string();
    let absent = refused(&mut b, &[code], |b, out| {
        b.invite_native(at(7), "ben", &typed, "127.0.0.1:5900", out)
    });
    assert!(absent.to_string().contains("is not connected"), "{absent}");
}
