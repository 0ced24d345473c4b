//! A dead party is noticed in seconds and never handed out; a pulling expert whose customer
//! vanishes takes the next case; every `sosq` command closes its connection politely however
//! it ends; a network that drops is ridden out. Real daemons, real `sosq` processes, killed
//! and cut off the way real life does it.

mod common;

use std::time::{Duration, Instant};

use common::{config_file, Daemon, PATIENCE};
use serde_json::Value;

/// Polls `sosq queue` until `code` shows with `online`, as an expert would keep looking.
fn wait_until_shown(daemon: &Daemon, token: &str, code: &str, online: bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = daemon.json(Some(token), &["queue"]);
        let entry = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["code"] == code)
            .cloned();
        if let Some(entry) = entry.filter(|e| e["online"] == online) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "{code} never showed online={online}: {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_customer_shows_offline_in_its_place_and_is_never_handed_out() {
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let mut customer = daemon.session(None, &["request", "--name", "D"]);
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();
    wait_until_shown(&daemon, &token, &code, true);

    customer.kill9();
    // Noticed within the idle timeout (6 s by default): shown, offline, with no position.
    let entry = wait_until_shown(&daemon, &token, &code, false);
    assert_eq!(entry["position"], Value::Null);
    let pull = daemon.run(Some(&token), &["pull"]);
    assert!(!pull.status.success());
    let said = String::from_utf8_lossy(&pull.stderr);
    assert!(
        said.contains("no customer is waiting online") && said.contains("1 waiting offline"),
        "{said}"
    );

    // An expert waiting for customers gets this one the moment it is back.
    let mut waiting = daemon.session(Some(&token), &["pull", "--wait"]);
    waiting.expect_event("waiting");
    let mut back = daemon.session(None, &["join", &code, "--name", "D", "--secret", &secret]);
    back.expect_event("attached");
    assert_eq!(waiting.expect_event("paired")["code"], code.as_str());
    back.expect_event("paired");
}

#[test]
fn a_pulling_expert_whose_customer_is_killed_is_let_go_and_takes_the_next_case() {
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let mut first = daemon.session(None, &["request", "--name", "First"]);
    let first_code = first.expect_event("attached")["code"].clone();
    let mut second = daemon.session(None, &["request", "--name", "Second"]);
    let second_code = second.expect_event("attached")["code"].clone();

    let mut expert = daemon.session(Some(&token), &["pull"]);
    assert_eq!(expert.expect_event("paired")["code"], first_code);
    first.expect_event("paired");
    first.kill9();

    let released = expert.expect_event("released");
    assert_eq!(released["code"], first_code);
    assert_eq!(expert.expect_event("paired")["code"], second_code);
    second.expect_event("paired");
    second.send(b"hello?\n");
    assert_eq!(expert.receive(7), b"hello?\n");

    // Second vanishes too and nobody else is online: a plain `pull` ends, saying so.
    second.kill9();
    expert.expect_event("released");
    let empty = expert.expect_event("queue_empty");
    assert!(
        empty["reason"]
            .as_str()
            .unwrap()
            .contains("2 waiting offline"),
        "{empty}"
    );
    let (status, stderr) = expert.wait();
    assert!(status.success(), "the session was done right: {stderr}");
}

#[test]
fn the_come_back_command_printed_on_leaving_works_as_printed() {
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let profile = daemon.dir.path().join("support.sosq");
    let profile = profile.to_str().unwrap().to_string();
    let made = daemon.admin_command(&["profile", "--out", &profile, "--server", &daemon.addr]);
    assert!(made.status.success(), "{made:?}");
    let echo = common::echo_service().to_string();
    // Nothing but the profile: no server or fingerprint in the environment.
    let customer_command = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::sosq_bin());
        cmd.env_remove("SOSQ_SERVER")
            .env_remove("SOSQ_FINGERPRINT")
            .env_remove("SOSQ_TOKEN")
            .env_remove("SOSQ_SECRET")
            .arg("--json")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        common::Session::from_command(cmd)
    };
    let mut customer = customer_command(&[
        "request",
        "--profile",
        &profile,
        "--name",
        "Payer",
        "--share",
        &echo,
    ]);
    customer.expect_event("attached");
    let mut expert = daemon.session(
        Some(&token),
        &["pull", "--wait", "--forward", "127.0.0.1:0"],
    );
    let local = expert.expect_forwarding();
    expert.expect_event("paired");
    customer.expect_event("paired");

    customer.interrupt();
    let left = customer.expect_event("left");
    let message = left["message"].as_str().unwrap().to_string();
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    // "... come back with `sosq join ...`, or close it with `sosq close ...`"
    let again = message
        .split('`')
        .nth(1)
        .expect("a come-back command in backticks");
    assert!(
        again.contains(&format!("--profile {profile}"))
            && again.contains(&format!("--share {echo}")),
        "{again}"
    );
    let args: Vec<String> = again
        .split_whitespace()
        .skip(1)
        .map(|word| word.trim_matches('"').to_string())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut back = customer_command(&args);
    back.expect_event("attached");
    back.expect_event("paired");
    expert.expect_event("paired");
    // The share came back too: the expert's port reaches the echo service again.
    common::echo_through(local, b"back again");
}

#[test]
fn every_command_closes_its_connection_however_it_ends() {
    // A long idle timeout: only a polite close can free a connection within the test.
    let (_dir, config) = config_file(
        "max_connections_per_address = 4\nidle_timeout = \"1m\"\nkeep_alive = \"2s\"\n",
    );
    let daemon = Daemon::start(&["--config", &config]);
    let token = daemon.add_user("ana", "expert");

    // Refused commands, run in a loop: each leaves nothing behind.
    for _ in 0..20 {
        let refused = daemon.run(None, &["queue"]);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("is for experts and admins"), "{said}");
    }
    for _ in 0..10 {
        let listed = daemon.run(Some(&token), &["queue"]);
        assert!(listed.status.success());
    }

    // A customer who ends its session with Ctrl-C, SIGTERM or by closing its terminal is
    // gone at once: the expert hears of it long before the one-minute idle timeout.
    for signal in ["INT", "TERM", "HUP"] {
        let mut customer = daemon.session(None, &["request", "--name", signal]);
        customer.expect_event("attached");
        let mut expert = daemon.session(Some(&token), &["pull"]);
        expert.expect_event("paired");
        customer.expect_event("paired");
        customer.signal(signal);
        let released = expert.expect_event("released");
        assert!(
            released["reason"].as_str().unwrap().contains("left"),
            "{released}"
        );
        let (status, stderr) = customer.wait();
        assert!(status.success(), "{signal}: {stderr}");
        assert!(stderr.contains("stays open"), "{signal}: {stderr}");
        let (_, _) = expert.wait();
    }
    // Nothing lingers: the address still has all of its places.
    for _ in 0..4 {
        assert!(daemon.run(Some(&token), &["queue"]).status.success());
    }
}

#[test]
fn a_customer_rides_out_a_dropped_network_and_keeps_its_place() {
    let (_dir, config) = config_file("keep_alive = \"1s\"\nidle_timeout = \"3s\"\n");
    let daemon = Daemon::start(&["--config", &config]);
    let token = daemon.add_user("ana", "expert");
    let mut ahead = daemon.session(None, &["request", "--name", "Ahead"]);
    ahead.expect_event("attached");
    let proxy = common::proxy::UdpProxy::start(daemon.addr.parse().unwrap());
    let mut cmd = daemon.sosq(None);
    cmd.env("SOSQ_SERVER", proxy.addr.to_string())
        .args(["--json", "request", "--name", "Roaming"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut roaming = common::Session::from_command(cmd);
    let attached = roaming.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    assert_eq!(attached["position"], 2);

    proxy.cut();
    wait_until_shown(&daemon, &token, &code, false);
    let lost = roaming.expect_event("reconnecting");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{lost}"
    );
    proxy.restore();
    roaming.expect_event("reconnected");
    let back = roaming.expect_event("attached");
    assert_eq!(back["position"], 2, "its place in the queue is kept");
    wait_until_shown(&daemon, &token, &code, true);

    // And the session works: the expert takes Ahead, then Roaming.
    let mut first = daemon.session(Some(&token), &["pull"]);
    first.expect_event("paired");
    let mut expert = daemon.session(Some(&token), &["pull"]);
    assert_eq!(expert.expect_event("paired")["code"], code.as_str());
    roaming.expect_event("paired");
    expert.send(b"still there?\n");
    assert_eq!(roaming.receive(13), b"still there?\n");
}
