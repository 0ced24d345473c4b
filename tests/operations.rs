//! End to end, as an operator runs the daemon: backups taken while it serves and restored
//! into a fresh data dir, the loud warning on a `cp` of a live store, and SIGHUP reloading
//! settings, users and the certificate without dropping anyone.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{run_with_patience, sosqd_bin, Daemon};

/// Runs `sosqd ARGS --data-dir DIR` to completion.
fn sosqd_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(sosqd_bin());
    cmd.args(args).arg("--data-dir").arg(dir);
    run_with_patience(cmd)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The codes of every case an admin sees.
fn all_codes(daemon: &Daemon, admin: &str) -> Vec<String> {
    let mut codes: Vec<String> = daemon.json(Some(admin), &["cases"])["cases"]
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|case| case["code"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    codes
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_fresh_data_dir_with_every_case() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    for customer in ["Bob", "Carol", "Dave"] {
        daemon.json(Some(&expert), &["create", "--customer", customer]);
    }
    // A customer stays connected while the backup runs: the daemon is serving.
    let mut waiting = daemon.session(None, &["request", "--name", "Eve"]);
    waiting.expect_event("attached");
    let codes = all_codes(&daemon, &admin);
    assert_eq!(codes.len(), 4);

    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("cases.backup");
    let file_arg = file.to_str().unwrap();
    let out = sosqd_in(daemon.dir.path(), &["backup", file_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("4 cases"), "{}", stderr(&out));

    // The running daemon's store cannot be replaced under it.
    let out = sosqd_in(daemon.dir.path(), &["restore", file_arg]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));
    drop(waiting);

    let fresh = Arc::new(tempfile::tempdir().unwrap());
    let out = sosqd_in(fresh.path(), &["restore", file_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("restored 4 cases"),
        "{}",
        stderr(&out)
    );
    // Users are a plain file beside the store, not part of the case backup.
    let restored = Daemon::start_in(fresh, &[]);
    let admin = restored.add_user("root", "admin");
    assert_eq!(all_codes(&restored, &admin), codes);
    assert!(
        !restored.log().contains("lost its WAL"),
        "{}",
        restored.log()
    );
}

#[test]
fn a_cp_of_a_live_store_without_its_wal_is_called_out_at_start() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    daemon.json(Some(&expert), &["create", "--customer", "Bob"]);
    let copy = Arc::new(tempfile::tempdir().unwrap());
    std::fs::copy(
        daemon.dir.path().join("cases.sqlite3"),
        copy.path().join("cases.sqlite3"),
    )
    .unwrap();
    let started = Daemon::start_in(copy, &[]);
    let log = started.log();
    let warning = log
        .lines()
        .find(|line| line.contains("looks like a copy that lost its WAL"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("cases.sqlite3"), "{warning}");
    assert!(warning.contains("sosqd restore"), "{warning}");
}
