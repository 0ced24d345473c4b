//! CI runs the fuzz regression corpus, not the fuzzer: every file under
//! `fuzz/regressions/<target>/` goes through the same code as the fuzz target of that name
//! (the targets' code is included from `fuzz/src/lib.rs`), which panics on any broken
//! promise. A few named seeds also have their expected outcome checked here.

use std::path::PathBuf;

use sosq::protocol::{ClientMessage, ErrorKind, Reply};

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
                    sim.replies.contains(&Reply::Deleted { count: 1 }),
                    "{name}: {:?}",
                    sim.replies
                );
            }
            "stranger_cannot_close" => {
                assert_eq!(
                    errors,
                    vec![ErrorKind::Forbidden, ErrorKind::Conflict],
                    "{name}: {:?}",
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
    let mut payload = vec![1u8, 9, 0, 253];
    payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let mut data = vec![0u8];
    data.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    data.extend_from_slice(&payload);
    let report = harness::frame_decoder(&data);
    assert!(report.frames.is_empty());
    assert!(report.peak <= harness::ALLOC_BOUND, "{report:?}");
}
