//! Restart: a real sosqd killed with `kill -9` and started again on the same data dir.
//! A customer resumes its case with its resume secret, an expert reconnects by code, an
//! overdue case expires at once and exactly once, `sosq history` shows who did what from
//! where, and a data dir holding something that is not the case store is refused.

mod common;

use std::time::{Duration, Instant};

use common::{payload, refused_start, Daemon, PATIENCE};
use serde_json::Value;

fn events(history: &Value) -> Vec<String> {
    history["history"]
        .as_array()
        .expect("history array")
        .iter()
        .map(|entry| entry["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn customer_resumes_with_its_secret_and_expert_reconnects_by_code_after_kill_9() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();
    let mut pull = daemon.session(Some(&expert), &["pull"]);
    pull.expect_event("paired");
    customer.expect_event("paired");
    // A pull is answered before its commit (an in-progress case is pending again after a
    // restart anyway). The store commits in order, so once a later change is
    // acknowledged the pairing is on disk too, and the restart has one to undo.
    daemon.json(Some(&expert), &["create", "--customer", "Bob"]);

    let dir = daemon.kill9();
    drop((customer, pull));
    let daemon = Daemon::start_in(dir, &[]);

    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(
        status["state"], "pending",
        "nobody is connected after a restart"
    );
    // Someone else's join without the secret is refused; with it the customer is back.
    let stranger = daemon.run(None, &["join", &code, "--name", "Mallory"]);
    assert!(!stranger.status.success());
    let mut customer = daemon.session(
        None,
        &["join", &code, "--name", "Alice", "--secret", &secret],
    );
    let back = customer.expect_event("attached");
    assert_eq!(back["code"], code.as_str());
    assert_eq!(
        back["resume_secret"],
        Value::Null,
        "the secret is not handed out again"
    );
    let mut connect = daemon.session(Some(&expert), &["connect", &code]);
    connect.expect_event("paired");
    customer.expect_event("paired");
    let bytes = payload(50_000, 7);
    customer.send(&bytes);
    assert_eq!(connect.receive(bytes.len()), bytes);

    let closed = daemon.json(Some(&expert), &["close", &code]);
    assert_eq!(closed["state"], "closed");
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = connect.wait();
    assert!(status.success(), "{stderr}");

    // The history survived the restart and says who did what from where.
    let history = daemon.json(Some(&admin), &["history", &code]);
    assert_eq!(history["state"], "closed");
    let all = events(&history);
    assert!(all.iter().any(|e| e.contains("sosqd restarted")), "{all:?}");
    assert!(
        all.iter().any(|e| e.contains("customer Alice came back")),
        "{all:?}"
    );
    assert!(all.iter().any(|e| e == "closed by expert ana"), "{all:?}");
    // The session's traffic is noted with the close, in the same final record.
    assert!(
        all.last().unwrap().starts_with("session relayed"),
        "{all:?}"
    );
    let entries = history["history"].as_array().unwrap();
    let closing = entries
        .iter()
        .find(|entry| entry["event"] == "closed by expert ana")
        .unwrap();
    assert_eq!(
        closing["actor"],
        serde_json::json!({"role": "expert", "name": "ana"})
    );
    assert_eq!(closing["kind"], "closed");
    assert!(closing["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let restarted = entries
        .iter()
        .find(|e| e["event"].as_str().unwrap().contains("restarted"))
        .unwrap();
    assert_eq!(
        restarted["actor"],
        serde_json::json!({"role": "sosqd", "name": null})
    );
    assert_eq!(restarted["kind"], "restarted");
    assert_eq!(restarted["address"], Value::Null);
    assert_eq!(
        daemon.json(Some(&expert), &["history", &code])["history"],
        history["history"],
        "experts may read the history too"
    );

    // Customers may not read histories.
    let refused = daemon.run(None, &["history", &code]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("history is for experts and admins"),
        "{stderr}"
    );
}

fn wait_for_state(daemon: &Daemon, token: &str, code: &str, state: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = daemon.json(Some(token), &["status", code]);
        if status["state"] == state || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_case_overdue_while_the_daemon_was_down_expires_at_once_and_exactly_once() {
    let ttl = ["--case-ttl", "2s"];
    let daemon = Daemon::start(&ttl);
    let expert = daemon.add_user("ana", "expert");
    let created = daemon.json(Some(&expert), &["create", "--customer", "Bob"]);
    let code = created["code"].as_str().unwrap().to_string();
    let dir = daemon.kill9();
    std::thread::sleep(Duration::from_millis(2_500));

    let daemon = Daemon::start_in(dir, &ttl);
    let status = wait_for_state(&daemon, &expert, &code, "expired");
    assert_eq!(status["state"], "expired");
    let expired = |history: &Value| {
        events(history)
            .iter()
            .filter(|e| e.starts_with("expired"))
            .count()
    };
    assert_eq!(expired(&status), 1);
    let dir = daemon.kill9();
    let daemon = Daemon::start_in(dir, &ttl);
    let again = daemon.json(Some(&expert), &["history", &code]);
    assert_eq!(again["state"], "expired");
    assert_eq!(expired(&again), 1, "not expired a second time");
    // A new case never gets a code the store still holds.
    let fresh = daemon.json(Some(&expert), &["create", "--customer", "Carol"]);
    assert_ne!(fresh["code"], code.as_str());
}

#[test]
fn admin_deletes_are_audited_and_the_code_is_gone_after_a_restart() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    let created = daemon.json(Some(&expert), &["create", "--customer", "Bob"]);
    let code = created["code"].as_str().unwrap().to_string();
    let deleted = daemon.json(Some(&admin), &["delete", &code]);
    assert_eq!(deleted["deleted"], 1);
    let dir = daemon.kill9();
    let daemon = Daemon::start_in(dir.clone(), &[]);
    let missing = daemon.run(Some(&expert), &["history", &code]);
    assert!(!missing.status.success(), "a deleted case stays deleted");
    let store = sosqd::store::SqliteStore::open_in(dir.path()).unwrap();
    use sosqd::store::CaseStore;
    let audit = store.audit_log().unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "admin root");
    assert_eq!(audit[0].count, 1);
    assert!(audit[0].selector.contains(&code), "{:?}", audit[0]);
    assert!(audit[0]
        .address
        .as_deref()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[test]
fn a_data_dir_with_a_foreign_file_as_the_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.sqlite3");
    std::fs::write(&path, b"not a database at all").unwrap();
    let stderr = refused_start(dir.path());
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("not an SQLite database"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a database at all");
}

#[test]
fn the_daemon_deletes_closed_cases_past_retention_and_keeps_open_ones() {
    let daemon = Daemon::start(&["--retention", "1s"]);
    let expert = daemon.add_user("ana", "expert");
    let closed = daemon.json(Some(&expert), &["create", "--customer", "Bob"]);
    let closed = closed["code"].as_str().unwrap().to_string();
    daemon.json(Some(&expert), &["close", &closed]);
    let open = daemon.json(Some(&expert), &["create", "--customer", "Carol"]);
    let open = open["code"].as_str().unwrap().to_string();
    let deadline = Instant::now() + PATIENCE;
    while daemon
        .run(Some(&expert), &["history", &closed])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "retention never deleted {closed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        daemon.json(Some(&expert), &["status", &open])["state"],
        "new"
    );
    let log = daemon.log();
    assert!(log.contains("retention deleted"), "{log}");
}

/// Whether this machine lets us make a private mount namespace (root, as CI runs).
fn can_mount() -> bool {
    std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

#[test]
fn a_read_only_data_dir_stops_the_daemon_with_the_file_and_the_cause() {
    if !can_mount() {
        eprintln!("skipped: needs `unshare -m` (root) to mount the data dir read-only");
        return;
    }
    let daemon = Daemon::start(&[]);
    let dir = daemon.kill9();
    let data = dir.path().to_string_lossy().into_owned();
    let sosqd = common::sosqd_bin().to_string_lossy().into_owned();
    // In a private mount namespace, the data dir becomes a read-only bind mount of itself;
    // SQLite would quietly open the store read-only there, and the first commit would fail.
    let script = format!(
        "mount --bind '{data}' '{data}' && mount -o remount,bind,ro '{data}' && \
         exec '{sosqd}' serve --listen 127.0.0.1:0 --data-dir '{data}'"
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]);
    let out = common::run_with_patience(cmd);
    assert!(
        !out.status.success(),
        "sosqd served from a read-only data dir"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cases.sqlite3") && stderr.contains("read-only"),
        "{stderr}"
    );
}
