//! Clients come back by themselves: after the daemon is killed and restarted, waiting
//! customers and both sides of a running session reconnect and carry on (forwarding too);
//! a customer or expert resuming while its old connection is half-alive takes over at once;
//! a daemon that does not answer is said so within seconds, and `--wait` keeps trying.

mod common;

use std::net::SocketAddr;

use common::{config_file, echo_service, echo_through, Daemon};

#[test]
fn sessions_come_back_by_themselves_after_the_daemon_is_killed_and_restarted() {
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let echo = echo_service().to_string();
    let mut customer = daemon.session(None, &["request", "--name", "Alice", "--share", &echo]);
    let code = customer.expect_event("attached")["code"].clone();
    let mut expert = daemon.session(Some(&token), &["pull", "--forward", "127.0.0.1:0"]);
    let local: SocketAddr = expert.expect_forwarding();
    assert_eq!(expert.expect_event("paired")["code"], code);
    customer.expect_event("paired");
    let mut waiting = daemon.session(None, &["request", "--name", "Waiting"]);
    waiting.expect_event("attached");
    expert.send(b"before\n");
    assert_eq!(customer.receive(7), b"before\n");
    echo_through(local, b"through the tunnel");

    let addr = daemon.addr.clone();
    let dir = daemon.kill9();
    for side in [&mut customer, &mut expert, &mut waiting] {
        side.expect_event("reconnecting");
    }
    let _daemon = Daemon::start_in(dir, &["--listen", &addr]);
    for side in [&mut customer, &mut expert, &mut waiting] {
        assert!(side.expect_event("reconnected")["code"].is_string());
    }
    // The waiting customer is back in line; the session pairs again and carries on.
    assert!(waiting.expect_event("attached")["position"].is_u64());
    assert_eq!(expert.expect_event("paired")["code"], code);
    customer.expect_event("paired");
    expert.send(b"after\n");
    assert_eq!(customer.receive(6), b"after\n");
    customer.send(b"still here\n");
    assert_eq!(expert.receive(11), b"still here\n");
    // The expert's local port stayed up: new connections work once re-paired.
    echo_through(local, b"through the tunnel, again");
}

#[test]
fn an_expert_by_code_comes_back_to_the_same_case_after_the_daemon_is_killed_and_restarted() {
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let code = customer.expect_event("attached")["code"].clone();
    // Another customer waits: coming back must not take the next case instead.
    let mut waiting = daemon.session(None, &["request", "--name", "Waiting"]);
    waiting.expect_event("attached");
    let mut expert = daemon.session(Some(&token), &["connect", code.as_str().unwrap()]);
    expert.expect_event("attached");
    assert_eq!(expert.expect_event("paired")["code"], code);
    customer.expect_event("paired");

    let addr = daemon.addr.clone();
    let dir = daemon.kill9();
    let lost = expert.expect_event("reconnecting");
    assert_eq!(lost["code"], code);
    customer.expect_event("reconnecting");
    let _daemon = Daemon::start_in(dir, &["--listen", &addr]);
    assert_eq!(expert.expect_event("reconnected")["code"], code);
    assert_eq!(expert.expect_event("paired")["code"], code);
    customer.expect_event("paired");
    expert.send(b"back\n");
    assert_eq!(customer.receive(5), b"back\n");
    customer.send(b"me too\n");
    assert_eq!(expert.receive(7), b"me too\n");
}

#[test]
fn an_expert_by_code_stops_reconnecting_once_the_case_is_gone_saying_so() {
    // A case that expires while the daemon is down (an overdue case expires at start).
    let ttl = ["--case-ttl", "5s"];
    let daemon = Daemon::start(&ttl);
    let token = daemon.add_user("ana", "expert");
    let created = daemon.json(Some(&token), &["create", "--customer", "Bob"]);
    let code = created["code"].as_str().unwrap().to_string();
    let mut expert = daemon.session(Some(&token), &["connect", &code]);
    expert.expect_event("attached");
    let addr = daemon.addr.clone();
    let dir = daemon.kill9();
    expert.expect_event("reconnecting");
    std::thread::sleep(std::time::Duration::from_millis(5_500));
    let _daemon = Daemon::start_in(dir, &["--listen", &addr, ttl[0], ttl[1]]);
    let (status, stderr) = expert.wait();
    assert!(!status.success(), "{stderr}");
    let last: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or_default()).expect("a JSON line");
    assert_eq!(last["event"], "error", "{stderr}");
    // Refused on coming back, or ended by the daemon if it came back first: either way
    // the reason names the case and the command ends instead of trying for ever.
    let message = last["message"].as_str().unwrap();
    match last["code"].as_str().unwrap() {
        "unknown_code" => assert!(
            message.contains(&format!(
                "stopped reconnecting: case {code} is no longer open (closed, expired or deleted meanwhile)"
            )),
            "{message}"
        ),
        "case_expired" => {}
        other => panic!("unexpected failure {other}: {stderr}"),
    }
    assert!(message.contains(&code), "{message}");
}

#[test]
fn a_customer_or_expert_resuming_takes_over_from_a_half_alive_connection_at_once() {
    // A long idle timeout: only the takeover can free the seats within the test.
    let (_dir, config) = config_file("idle_timeout = \"1m\"\n");
    let daemon = Daemon::start(&["--config", &config]);
    let token = daemon.add_user("ana", "expert");
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();
    let mut expert = daemon.session(Some(&token), &["pull"]);
    expert.expect_event("paired");
    customer.expect_event("paired");

    // The customer's process hangs; the customer starts over with its secret.
    customer.signal("STOP");
    let mut again = daemon.session(
        None,
        &["join", &code, "--name", "Alice", "--secret", &secret],
    );
    again.expect_event("attached");
    again.expect_event("paired");
    expert.expect_event("paired");
    expert.send(b"is that you?\n");
    assert_eq!(again.receive(13), b"is that you?\n");
    customer.signal("CONT");
    let replaced = customer.expect_event("replaced");
    assert!(
        replaced["reason"]
            .as_str()
            .unwrap()
            .contains("replaced by a newer connection"),
        "{replaced}"
    );
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");

    // The same for the expert: its new connection by code takes over.
    expert.signal("STOP");
    let mut expert_again = daemon.session(Some(&token), &["connect", &code]);
    expert_again.expect_event("attached");
    expert_again.expect_event("paired");
    again.expect_event("paired");
    again.send(b"yes\n");
    assert_eq!(expert_again.receive(4), b"yes\n");
    expert.signal("CONT");
    expert.expect_event("replaced");
}

#[test]
fn a_daemon_that_does_not_answer_is_said_so_and_wait_keeps_trying() {
    // A daemon's identity and users, then nothing listening where clients look for it.
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let fingerprint = daemon.fingerprint.clone();
    let dir = daemon.kill9();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}");
    let sosq = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::sosq_bin());
        cmd.env("SOSQ_SERVER", &server)
            .env("SOSQ_FINGERPRINT", &fingerprint)
            .env_remove("SOSQ_SECRET")
            .args(args);
        cmd
    };

    let mut queue = sosq(&["queue"]);
    queue.env("SOSQ_TOKEN", &token);
    let out = common::run_with_patience(queue);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("no answer from sosqd at {server}"))
            && said.contains("is it running, is the port open?"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");

    let mut request = sosq(&["--json", "request", "--name", "Early", "--wait"]);
    request
        .env_remove("SOSQ_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut early = common::Session::from_command(request);
    early.expect_event("no_answer");
    let _daemon = Daemon::start_in(dir, &["--listen", &server]);
    early.expect_event("attached");
}

#[test]
fn a_daemon_on_ipv6_is_reached_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        println!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let daemon = Daemon::start(&["--listen", "[::1]:0"]);
    assert!(daemon.addr.starts_with("[::1]:"), "{}", daemon.addr);
    let token = daemon.add_user("ana", "expert");
    let page = daemon.json(Some(&token), &["queue"]);
    assert_eq!(page["online"], 0);
}
