//! The `sosq` binary's own checks that need no server: usage, missing settings and typos
//! get a one-line reason and a non-zero exit. (Building this test also makes
//! `cargo test --workspace` build the `sosq` binary the daemon's end-to-end tests drive.)

use std::process::Command;

fn sosq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sosq"))
        .args(args)
        .env_remove("SOSQ_FINGERPRINT")
        .env_remove("SOSQ_TOKEN")
        .env("SOSQ_SERVER", "127.0.0.1:9")
        .output()
        .expect("run sosq")
}

#[test]
fn help_lists_every_command() {
    let out = sosq(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "request", "join", "queue", "pull", "connect", "create", "close", "status", "cases",
        "delete", "note",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn a_missing_fingerprint_is_explained() {
    let out = sosq(&["queue"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SOSQ_FINGERPRINT"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn json_errors_are_json_lines() {
    let out = sosq(&["--json", "queue"]);
    assert_eq!(out.status.code(), Some(1));
    let line: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON on stderr");
    assert_eq!(line["event"], "error");
}

#[test]
fn a_malformed_code_to_delete_is_refused_before_connecting() {
    let out = sosq(&["--fingerprint", &"ab".repeat(32), "delete", "s12-34"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a session code"), "{err}");
}

#[test]
fn a_malformed_fingerprint_is_refused() {
    let out = sosq(&["--fingerprint", "nope", "queue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a SHA-256 fingerprint"));
}

#[test]
fn an_empty_fingerprint_says_where_it_likely_came_from() {
    // `export SOSQ_FINGERPRINT=$(sosqd fingerprint)` where that command failed.
    let out = Command::new(env!("CARGO_BIN_EXE_sosq"))
        .args(["queue"])
        .env("SOSQ_FINGERPRINT", "")
        .env_remove("SOSQ_TOKEN")
        .env("SOSQ_SERVER", "127.0.0.1:9")
        .output()
        .expect("run sosq");
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("fingerprint is empty"), "{said}");
    assert!(said.contains("sosqd fingerprint"), "{said}");
}
