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
    let holder = format!("pid {}", daemon.pid());
    assert!(stderr(&out).contains(&holder), "{}", stderr(&out));
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

#[test]
fn a_stopped_daemon_leaves_its_whole_store_in_the_one_file() {
    let mut daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    for customer in ["Bob", "Carol"] {
        daemon.json(Some(&expert), &["create", "--customer", customer]);
    }
    let codes = all_codes(&daemon, &admin);
    assert!(daemon.terminate().success());
    // SIGTERM checkpoints: nothing is left in a -wal that a `cp` of the file would miss.
    let wal = daemon.dir.path().join("cases.sqlite3-wal");
    let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_bytes, 0, "{} still holds commits", wal.display());

    let copy = Arc::new(tempfile::tempdir().unwrap());
    std::fs::copy(
        daemon.dir.path().join("cases.sqlite3"),
        copy.path().join("cases.sqlite3"),
    )
    .unwrap();
    let started = Daemon::start_in(copy, &[]);
    let admin = started.add_user("root", "admin");
    assert_eq!(all_codes(&started, &admin), codes);
    assert!(!started.log().contains("lost its WAL"), "{}", started.log());
}

/// Sends SIGHUP to the daemon (what `systemctl reload sosqd` does).
fn hangup(daemon: &Daemon) {
    let status = Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the daemon's log holds `text` at least `n` times; the log since then.
fn wait_for_nth(daemon: &Daemon, text: &str, n: usize) -> String {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let log = daemon.log();
        if log.matches(text).count() >= n {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sosqd never logged {text:?} {n} times:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One sample of `GET /metrics`, by its series, e.g. `sosqd_open_connections`.
fn metric(addr: &str, series: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: sosqd\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {response}"))
}

/// Waits until the daemon's metric `series` reads `value`.
fn wait_for_metric(addr: &str, series: &str, value: f64) {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while metric(addr, series) != value {
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never became {value}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Bytes still flow both ways through a paired session.
fn still_relays(customer: &mut common::Session, expert: &mut common::Session, seed: u64) {
    let to_expert = common::payload(10_000, seed);
    customer.send(&to_expert);
    assert_eq!(expert.receive(to_expert.len()), to_expert);
    let to_customer = common::payload(10_000, seed + 1);
    expert.send(&to_customer);
    assert_eq!(customer.receive(to_customer.len()), to_customer);
}

fn assert_never_reconnected(session: &common::Session) {
    let stderr = session.stderr.lock().unwrap().join("\n");
    assert!(!stderr.contains("reconnect"), "{stderr}");
}

#[test]
fn sighup_reloads_limits_and_log_level_and_drops_nobody() {
    let (config_dir, config) =
        common::config_file("metrics_listen = \"127.0.0.1:0\"\nlog_level = \"info\"\n");
    // No RUST_LOG, so the file's log_level decides.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let daemon = Daemon::start_in_logging(dir, &["--config", &config], "");
    let metrics = daemon.metrics_addr();
    let expert = daemon.add_user("ana", "expert");
    let (mut customer, mut pulled) = daemon.paired_sessions(&expert);
    let mut waiting = daemon.session(None, &["request", "--name", "Walt"]);
    waiting.expect_event("attached");

    // Users and tokens need no reload: the users file is re-read when it changes.
    let added = daemon.add_user("bo", "expert");
    let queue = daemon.json(Some(&added), &["queue"]);
    assert_eq!(queue["entries"][0]["customer"], "Walt");
    wait_for_metric(&metrics, "sosqd_open_connections", 3.0);

    std::fs::write(
        config_dir.path().join("sosqd.toml"),
        "metrics_listen = \"127.0.0.1:0\"\nlog_level = \"debug\"\n\
         max_connections_per_address = 3\nmax_streams_per_session = 8\n",
    )
    .unwrap();
    let before = daemon.log().len();
    hangup(&daemon);
    let log = wait_for_nth(&daemon, "reloaded: max_connections_per_address 100 -> 3", 1);
    assert!(log.contains("reloaded: log level info -> debug"), "{log}");
    assert!(
        log.contains("needs a restart: max_streams_per_session 16 -> 8"),
        "{log}"
    );

    // Everyone is still there, and the session still carries bytes.
    let mut daemon = daemon;
    assert!(daemon.is_running());
    still_relays(&mut customer, &mut pulled, 7);
    assert_eq!(
        metric(&metrics, "sosqd_connected_parties{role=\"customer\"}"),
        2.0
    );
    assert_eq!(
        metric(&metrics, "sosqd_connected_parties{role=\"expert\"}"),
        1.0
    );
    // The new limit is in force for the next connection: three are open from here.
    let refused = daemon.run(Some(&added), &["queue"]);
    assert!(!refused.status.success());
    daemon.wait_for_log("too many connections from this address");
    let since = daemon.log()[before..].to_string();
    assert!(!since.contains("disconnected"), "{since}");
    for session in [&customer, &pulled, &waiting] {
        assert_never_reconnected(session);
    }
    // Debug lines are written now: a client that gives up on the handshake is one.
    let mut wrong = daemon.sosq(Some(&added));
    wrong.env("SOSQ_FINGERPRINT", "0".repeat(64)).arg("queue");
    drop(waiting);
    wait_for_metric(&metrics, "sosqd_open_connections", 2.0);
    assert!(!run_with_patience(wrong).status.success());
    daemon.wait_for_log("handshake failed");
}

/// Writes a new self-signed certificate and key over the daemon's in `dir`; the new
/// certificate's fingerprint.
fn replace_certificate(dir: &Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["sosqd".to_string()]).unwrap();
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    sosq::tls::fingerprint(made.cert.der())
}

#[test]
fn sighup_serves_a_new_certificate_to_new_clients_while_old_connections_go_on() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let (mut customer, mut pulled) = daemon.paired_sessions(&expert);
    let old = daemon.fingerprint.clone();

    let new = replace_certificate(daemon.dir.path());
    assert_ne!(new, old);
    hangup(&daemon);
    let log = wait_for_nth(&daemon, "reloaded: tls certificate", 1);
    assert!(
        log.contains(&format!("new fingerprint {new}, was {old}")),
        "{log}"
    );

    // A new client pinning the new fingerprint gets in; one pinning the old is refused.
    let mut fresh = daemon.sosq(Some(&expert));
    fresh
        .env("SOSQ_FINGERPRINT", &new)
        .args(["--json", "queue"]);
    let out = run_with_patience(fresh);
    assert!(out.status.success(), "{}", stderr(&out));
    let stale = daemon.run(Some(&expert), &["queue"]);
    assert!(!stale.status.success());
    assert!(stderr(&stale).contains("fingerprint"), "{}", stderr(&stale));

    // The web console serves the new certificate too.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let console = common::web::Console::pinned(&daemon, &new);
        assert_eq!(console.page("/healthz").await, "ok\n");
        let stale = common::web::Console::pinned(&daemon, &old);
        let refused = stale
            .http
            .get(format!("{}/healthz", stale.base))
            .send()
            .await;
        assert!(refused.is_err(), "the old certificate is no longer served");
    });

    // The session made under the old certificate carries on, never reconnected.
    still_relays(&mut customer, &mut pulled, 3);
    assert_never_reconnected(&customer);
    assert_never_reconnected(&pulled);
}

#[test]
fn an_invalid_config_on_reload_is_logged_and_the_daemon_keeps_its_settings() {
    let (config_dir, config) = common::config_file("max_connections_per_address = 50\n");
    let file = config_dir.path().join("sosqd.toml");
    let mut daemon = Daemon::start(&["--config", &config]);
    let expert = daemon.add_user("ana", "expert");
    let mut waiting = daemon.session(None, &["request", "--name", "Walt"]);
    waiting.expect_event("attached");

    // Not TOML at all.
    std::fs::write(&file, "max_connections_per_address = = 1\n").unwrap();
    hangup(&daemon);
    let log = wait_for_nth(&daemon, "reload failed, the running settings stay", 1);
    assert!(log.contains(&file.display().to_string()), "{log}");
    // Valid TOML, an invalid value beside a valid change: neither is applied.
    std::fs::write(
        &file,
        "max_connections_per_address = 1\nmax_connections = 0\n",
    )
    .unwrap();
    hangup(&daemon);
    let log = wait_for_nth(&daemon, "reload failed, the running settings stay", 2);
    assert!(log.contains("max_connections"), "{log}");
    // A certificate that cannot be read: the old one stays in use.
    std::fs::write(
        &file,
        "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
    )
    .unwrap();
    hangup(&daemon);
    let log = wait_for_nth(&daemon, "reload failed, the running settings stay", 3);
    assert!(log.contains("/nonexistent/cert.pem"), "{log}");
    assert!(!log.contains("reloaded:"), "{log}");

    assert!(daemon.is_running());
    // Still on the old limit (50 per address, not 1) and the old certificate: a second
    // connection from this address gets in, pinning the fingerprint it started with.
    let queue = daemon.json(Some(&expert), &["queue"]);
    assert_eq!(queue["entries"][0]["customer"], "Walt");
    assert_never_reconnected(&waiting);
}
