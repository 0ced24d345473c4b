//! CI runs the fuzz regression corpus, not the fuzzer: every file under
//! `fuzz/regressions/<target>/` goes through the same code as the fuzz target of that name
//! (the targets' code is included from `fuzz/src/lib.rs`), which panics on any broken
//! promise. A few named seeds also have their expected outcome checked here.

use std::path::PathBuf;

use sosq::codec;
use sosq::protocol::{
    CaseFilter, CaseState, ClientMessage, DeleteSelector, ErrorKind, Priority, Reply, Request,
    PROTOCOL_VERSION,
};
use sosq::SessionCode;

#[path = "../fuzz/src/lib.rs"]
mod harness;

#[global_allocator]
static ALLOC: harness::CountingAlloc = harness::CountingAlloc;

/// Every input committed for `target`, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&path).expect("a readable input");
            (name, data)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "too few regression inputs for {target}");
    inputs
}

#[test]
fn frame_decoder_regressions_fail_cleanly() {
    for (name, data) in inputs("frame_decoder") {
        let report = harness::frame_decoder(&data);
        let error = report.error.as_deref().unwrap_or("");
        let expect_error = |needle: &str| {
            assert!(
                error.contains(needle),
                "{name}: expected an error with {needle:?}, got {report:?}"
            );
        };
        match name.as_str() {
            "valid_hello" | "valid_hello_trickled" => {
                assert_eq!(report.frames.len(), 1, "{name}: {report:?}");
                assert!(matches!(report.frames[0], ClientMessage::Hello { .. }));
                assert_eq!(report.error, None, "{name}");
            }
            "two_requests" => {
                assert_eq!(report.frames.len(), 2, "{name}: {report:?}");
                assert_eq!(report.error, None, "{name}");
            }
            "oversized_length" => expect_error("exceeds the 65536-byte limit"),
            "truncated_frame" | "truncated_prefix" | "max_length_announced_short" => {
                expect_error("ended in the middle of a frame")
            }
            "garbage"
            | "unknown_variant"
            | "unknown_request_variant"
            | "trailing_bytes"
            | "huge_string_length"
            | "huge_code_list_length"
            | "code_out_of_range"
            | "bad_utf8" => {
                assert!(report.frames.is_empty(), "{name}: {report:?}");
                expect_error("malformed frame");
            }
            _ => {}
        }
    }
}

/// The structured seeds open with a `Hello` of the protocol they were written for; after a
/// protocol bump their variant indices may mean other requests, and the named checks below
/// would fail without saying why. This says why, and how to fix it.
#[test]
fn structured_seeds_speak_the_current_protocol() {
    for (name, data) in inputs("control_handler") {
        let Some(prefix) = data.get(..4) else {
            continue;
        };
        let length = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
        let Some(payload) = data.get(4..4 + length) else {
            continue;
        };
        let Ok(ClientMessage::Hello { version, .. }) = codec::decode::<ClientMessage>(payload)
        else {
            continue;
        };
        assert!(
            version == PROTOCOL_VERSION || version == 0,
            "fuzz/regressions/control_handler/{name} was written for protocol {version}, this \
             is protocol {PROTOCOL_VERSION}: run `cargo test -p sosqd --test fuzz_regressions \
             -- --ignored regenerate_structured_seeds` and commit the seeds"
        );
    }
}

#[test]
fn control_handler_regressions_never_panic() {
    for (name, data) in inputs("control_handler") {
        let sim = harness::control_handler(&data);
        let errors: Vec<ErrorKind> = sim
            .replies
            .iter()
            .filter_map(|reply| match reply {
                Reply::Error(e) => Some(e.kind),
                _ => None,
            })
            .collect();
        match name.as_str() {
            "sos_pull_close" => {
                assert!(
                    sim.replies
                        .iter()
                        .filter(|r| matches!(r, Reply::Attached { .. }))
                        .count()
                        == 2,
                    "{name}: the customer and the expert attach: {:?}",
                    sim.replies
                );
            }
            "wrong_roles" => {
                assert!(errors.contains(&ErrorKind::Forbidden), "{name}: {errors:?}");
            }
            "too_many_cases" => {
                assert!(errors.contains(&ErrorKind::Conflict), "{name}: {errors:?}");
            }
            "resume_with_secret_then_close" => {
                assert!(errors.is_empty(), "{name}: {:?}", sim.replies);
                assert_eq!(sim.replies.len(), 5, "{name}: {:?}", sim.replies);
            }
            "create_join_close_delete" => {
                assert!(errors.is_empty(), "{name}: {:?}", sim.replies);
                assert!(
                    sim.replies.contains(&Reply::Deleted {
                        count: 1,
                        not_found: Vec::new()
                    }),
                    "{name}: {:?}",
                    sim.replies
                );
            }
            "stranger_cannot_close" => {
                // A stranger learns nothing, not even that the customer is online.
                assert_eq!(
                    errors,
                    vec![ErrorKind::Forbidden, ErrorKind::Forbidden],
                    "{name}: {:?}",
                    sim.replies
                );
            }
            "message_and_attachment" => {
                let png_size = 12;
                assert!(
                    sim.replies.iter().any(|r| matches!(r,
                        Reply::AttachmentAdded(info) if info.size == png_size)),
                    "{name}: {:?}",
                    sim.replies
                );
                assert!(
                    sim.replies.iter().any(|r| matches!(r,
                        Reply::AttachmentPart(part) if part.total == png_size
                            && part.bytes.len() as u64 == png_size)),
                    "{name}: {:?}",
                    sim.replies
                );
                assert_eq!(
                    errors,
                    vec![ErrorKind::InvalidInput, ErrorKind::Forbidden],
                    "{name}: the wrong type, then a customer's read: {:?}",
                    sim.replies
                );
            }
            "request_before_hello" => {
                assert_eq!(errors, vec![ErrorKind::InvalidInput], "{name}");
            }
            _ => {}
        }
    }
}

#[test]
fn a_tiny_frame_cannot_make_the_decoder_hold_more_than_the_bound() {
    // A 15-byte frame announcing 2^62 session codes: serde pre-allocates at most 1 MiB
    // for it, and the decoder refuses it; the bound of the fuzz target holds.
    let mut payload = delete_codes_prefix();
    payload.push(253);
    payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert_refused_within_the_bound(&payload);
}

#[test]
fn a_tiny_frame_announcing_a_huge_string_holds_at_most_the_bound() {
    // A frame whose customer name announces as many bytes as the decoder may claim: bincode
    // reserves them before finding the frame ends, and gives them back; the bound holds.
    let empty = ClientMessage::Request(Request::OpenSos {
        customer: String::new(),
        description: String::new(),
        priority: Default::default(),
        group: None,
    });
    let encoded = codec::encode(&empty).expect("encodes");
    // 4-byte length, two variant tags, then the customer name's length (0).
    let mut payload = encoded[4..6].to_vec();
    assert_eq!(encoded[6], 0, "the name's length follows the tags");
    payload.push(252);
    let announced = u32::try_from(codec::MAX_DECODE_CLAIM - 64).expect("fits u32");
    payload.extend_from_slice(&announced.to_le_bytes());
    assert_refused_within_the_bound(&payload);
}

/// Feeds `payload` as one frame (the fuzz input's chunking byte 0, then the 4-byte length)
/// to the frame decoder: no frame comes out, and the decoder's peak allocation stays within
/// the fuzz target's bound.
fn assert_refused_within_the_bound(payload: &[u8]) {
    let mut data = vec![0u8];
    data.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    data.extend_from_slice(payload);
    let report = harness::frame_decoder(&data);
    assert!(report.frames.is_empty());
    assert!(report.peak <= harness::ALLOC_BOUND, "{report:?}");
}

/// The payload bytes of `Request(Delete(Codes(...)))` up to the list length, as the current
/// protocol encodes them (variant indices move when requests are added).
fn delete_codes_prefix() -> Vec<u8> {
    let empty = ClientMessage::Request(Request::Delete(DeleteSelector::Codes(vec![])));
    let frame = codec::encode(&empty).expect("encodes");
    // 4-byte length, then the message; the final byte is the empty list's length (0).
    frame[4..frame.len() - 1].to_vec()
}

fn frame(message: &ClientMessage) -> Vec<u8> {
    codec::encode(message).expect("encodes")
}

fn hello(token: Option<&str>) -> ClientMessage {
    ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        token: token.map(str::to_string),
    }
}

fn old_hello() -> ClientMessage {
    ClientMessage::Hello {
        version: 0,
        token: None,
    }
}

fn req(request: Request) -> ClientMessage {
    ClientMessage::Request(request)
}

fn sos(customer: &str, description: &str) -> ClientMessage {
    req(Request::OpenSos {
        customer: customer.into(),
        description: description.into(),
        priority: Priority::Normal,
        group: None,
    })
}

fn text(s: &str) -> String {
    s.to_string()
}

/// Rewrites the structured seeds of the regression corpus in the current protocol.
/// Run it after a protocol change: `cargo test --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/regressions; run by hand after a protocol change"]
fn regenerate_structured_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let write = |target: &str, name: &str, bytes: Vec<u8>| {
        std::fs::write(root.join(target).join(name), bytes).expect("write seed");
    };
    let script =
        |messages: Vec<ClientMessage>| -> Vec<u8> { messages.iter().flat_map(frame).collect() };
    let code = |n: u64| SessionCode::from_number(n).expect("a code");
    let status = |c: &str, secret: Option<&str>| {
        req(Request::Status {
            code: c.into(),
            resume_secret: secret.map(str::to_string),
        })
    };
    let close = |c: &str, secret: Option<&str>| {
        req(Request::Close {
            code: c.into(),
            resume_secret: secret.map(str::to_string),
        })
    };
    let join = |c: &str, who: &str, secret: Option<&str>| {
        req(Request::Join {
            code: c.into(),
            customer: who.into(),
            resume_secret: secret.map(str::to_string),
        })
    };
    let create = |who: &str, what: &str| {
        req(Request::Create {
            customer: who.into(),
            description: what.into(),
        })
    };
    let ch = "control_handler";
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\r".to_vec();
    write(
        ch,
        "message_and_attachment",
        script(vec![
            hello(None),
            sos("Ana", "printer"),
            req(Request::AddMessage {
                code: "@0".into(),
                resume_secret: None,
                text: "it also beeps".into(),
            }),
            req(Request::AttachStart {
                code: "@0".into(),
                resume_secret: None,
                name: "setup.exe".into(),
                size: 4,
            }),
            req(Request::AttachPart {
                upload: 1,
                bytes: b"MZ\x90\0".to_vec(),
            }),
            req(Request::AttachStart {
                code: "@0".into(),
                resume_secret: None,
                name: "../error.png".into(),
                size: png.len() as u64,
            }),
            req(Request::AttachPart {
                upload: 1,
                bytes: png.clone(),
            }),
            req(Request::AttachFinish { upload: 1 }),
            hello(Some("e")),
            req(Request::Attachments { code: "@0".into() }),
            req(Request::Attachment {
                code: "@0".into(),
                id: 1,
                offset: 0,
            }),
            hello(None),
            req(Request::Attachments { code: "@0".into() }),
        ]),
    );
    write(
        ch,
        "admin_delete_and_list",
        script(vec![
            hello(None),
            sos("Ana", ""),
            hello(Some("ad")),
            req(Request::Delete(DeleteSelector::Filter(CaseFilter {
                state: Some(CaseState::Pending),
                ..CaseFilter::default()
            }))),
            req(Request::Cases {
                filter: Default::default(),
                after: None,
                limit: 0,
            }),
            req(Request::Delete(DeleteSelector::Codes(vec![]))),
        ]),
    );
    write(
        ch,
        "create_join_close_delete",
        script(vec![
            hello(Some("e")),
            create("Bob", "vpn"),
            hello(None),
            join("@0", "Bob", None),
            close("@0", None),
            hello(Some("ad")),
            status("@0", None),
            req(Request::Delete(DeleteSelector::Codes(vec![code(0)]))),
            req(Request::Cases {
                filter: Default::default(),
                after: None,
                limit: 0,
            }),
        ]),
    );
    write(
        ch,
        "create_join_connect",
        script(vec![
            hello(Some("e")),
            create("Chloe", "mail"),
            req(Request::Connect {
                code: text("s123-456-789"),
                working_queue: false,
            }),
            hello(None),
            join(
                "123456789",
                "Chloe",
                Some("00000000000000000000000000000000"),
            ),
        ]),
    );
    let mut expiry = vec![hello(None), sos("Ana", "x")];
    expiry.extend((0..12).map(|_| {
        req(Request::Queue {
            after: None,
            limit: 0,
        })
    }));
    expiry.push(hello(Some("e")));
    expiry.extend((0..12).map(|_| {
        req(Request::Queue {
            after: None,
            limit: 0,
        })
    }));
    write(ch, "expiry", script(expiry));
    let mut garbage = script(vec![hello(None), sos("Ana", "x")]);
    garbage.extend_from_slice(&[0, 0, 0, 5, 255, 255, 255, 255, 255]);
    write(ch, "garbage_after_hello", garbage);
    let mut oversized = script(vec![hello(None)]);
    oversized.extend_from_slice(&[128, 0, 0, 0]);
    write(ch, "oversized_after_hello", oversized);
    write(
        ch,
        "pull_wait_then_sos",
        script(vec![
            hello(Some("e")),
            req(Request::Pull { wait: true }),
            hello(None),
            sos("Bob", "vpn"),
            status("s000-000-001", None),
        ]),
    );
    write(
        ch,
        "request_before_hello",
        script(vec![
            req(Request::Queue {
                after: None,
                limit: 0,
            }),
            hello(None),
            sos("", ""),
        ]),
    );
    write(
        ch,
        "resume_with_secret_then_close",
        script(vec![
            hello(None),
            sos("Ana", "printer"),
            old_hello(),
            hello(None),
            join("@0", "Ana", Some("@")),
            status("@0", None),
            hello(Some("e")),
            req(Request::Connect {
                code: text("@0"),
                working_queue: false,
            }),
            close("@0", None),
        ]),
    );
    write(
        ch,
        "sos_pull_close",
        script(vec![
            hello(None),
            sos("Ana", "printer on fire"),
            hello(Some("e")),
            req(Request::Queue {
                after: None,
                limit: 0,
            }),
            req(Request::Pull { wait: false }),
            old_hello(),
            old_hello(),
        ]),
    );
    write(
        ch,
        "stranger_cannot_close",
        script(vec![
            hello(None),
            sos("Ana", "x"),
            hello(None),
            close("@0", Some("00000000000000000000000000000000")),
            join("@0", "Eve", None),
        ]),
    );
    let mut many = Vec::new();
    for i in 0..10 {
        many.push(hello(None));
        many.push(sos(&format!("C{i}"), "x"));
    }
    write(ch, "too_many_cases", script(many));
    write(
        ch,
        "wrong_roles",
        script(vec![
            hello(None),
            req(Request::Pull { wait: true }),
            req(Request::Delete(DeleteSelector::Codes(vec![code(5)]))),
            hello(Some("bad")),
            req(Request::Queue {
                after: None,
                limit: 0,
            }),
        ]),
    );

    // frame_decoder inputs: one byte of read size, then the stream.
    let fd = "frame_decoder";
    let mut two = vec![7u8];
    two.extend(script(vec![
        sos("Ana", "printer on fire"),
        req(Request::Pull { wait: true }),
    ]));
    write(fd, "two_requests", two);
    let mut huge = delete_codes_prefix();
    huge.push(253);
    huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let mut seed = vec![0u8];
    seed.extend_from_slice(&(huge.len() as u32).to_be_bytes());
    seed.extend(huge);
    write(fd, "huge_code_list_length", seed);
    let mut out_of_range = delete_codes_prefix();
    out_of_range.extend_from_slice(&[1, 252, 0, 202, 154, 59]);
    let mut seed = vec![0u8];
    seed.extend_from_slice(&(out_of_range.len() as u32).to_be_bytes());
    seed.extend(out_of_range);
    write(fd, "code_out_of_range", seed);
}
