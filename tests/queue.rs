//! End to end: the queue experts live in. Priorities order it, escalation moves a case up
//! with its reason kept, and the queue shows each case's response deadline.

mod common;

use common::Daemon;

#[test]
fn an_escalated_case_jumps_the_queue_and_is_pulled_first() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    let mut customers = Vec::new();
    let mut codes = Vec::new();
    for (name, priority) in [
        ("Ann", "normal"),
        ("Ben", "normal"),
        ("Cy", "low"),
        ("Di", "high"),
    ] {
        let mut customer =
            daemon.session(None, &["request", "--name", name, "--priority", priority]);
        codes.push(
            customer.expect_event("attached")["code"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        customers.push(customer);
    }
    let order = |daemon: &Daemon| -> Vec<String> {
        daemon.json(Some(&expert), &["queue"])["entries"]
            .clone()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap().to_string())
            .collect()
    };
    let (ann, ben, cy, di) = (&codes[0], &codes[1], &codes[2], &codes[3]);
    assert_eq!(
        order(&daemon),
        vec![di.clone(), ann.clone(), ben.clone(), cy.clone()]
    );
    let queue = daemon.json(Some(&expert), &["queue"])["entries"].clone();
    assert_eq!(queue[0]["priority"], "high");
    assert!(queue[0]["response_due"].as_u64().is_some());

    let escalated = daemon.json(
        Some(&expert),
        &[
            "escalate",
            ben,
            "--priority",
            "critical",
            "--reason",
            "payroll run blocked",
        ],
    );
    assert_eq!(escalated["priority"], "critical");
    assert_eq!(
        order(&daemon),
        vec![ben.clone(), di.clone(), ann.clone(), cy.clone()]
    );

    // Customers may not escalate; admins may.
    let refused = daemon.run(
        None,
        &[
            "escalate",
            cy,
            "--priority",
            "critical",
            "--reason",
            "me first",
        ],
    );
    assert!(!refused.status.success());
    daemon.json(
        Some(&admin),
        &["escalate", cy, "--priority", "high", "--reason", "vip"],
    );

    let mut pull = daemon.session(Some(&expert), &["pull"]);
    assert_eq!(pull.expect_event("attached")["code"], ben.as_str());
    let history = daemon.json(Some(&admin), &["status", ben]);
    let events: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("normal -> critical") && e.contains("payroll run blocked")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("first response")),
        "{events:?}"
    );
    pull.expect_event("paired");
}

#[test]
fn a_waiting_customers_position_updates_as_cases_ahead_are_pulled_and_watchers_see_it() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut watcher = daemon.session(Some(&expert), &["queue", "--watch"]);
    let mut customers = Vec::new();
    for name in ["First", "Second", "Third"] {
        let mut customer = daemon.session(None, &["request", "--name", name]);
        customer.expect_event("attached");
        customers.push(customer);
    }
    let third = customers.last_mut().unwrap();
    let mut pulls = Vec::new();
    for expected in [2, 1] {
        let mut pull = daemon.session(Some(&expert), &["pull"]);
        pull.expect_event("paired");
        pulls.push(pull);
        // Skip intermediate positions a batch may have produced on the way.
        loop {
            let event = third.expect_event("queue_position");
            if event["position"] == expected {
                break;
            }
        }
    }
    // The watcher got the whole queue pushed; the last state has only Third waiting.
    let watched = watcher.stdout_lines_until(|line| {
        let page: serde_json::Value = serde_json::from_str(line).unwrap();
        page["entries"]
            .as_array()
            .map(|q| q.len() == 1 && q[0]["customer"] == "Third")
            .unwrap_or(false)
    });
    assert!(
        watched.len() >= 2,
        "initial queue plus pushed changes: {watched:?}"
    );
    watcher.interrupt();
}

fn admin_ok(daemon: &Daemon, args: &[&str]) {
    let out = daemon.admin_command(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn add_expert(daemon: &Daemon, name: &str, group: &str) -> String {
    let out = daemon.admin_command(&["user", "add", name, "--role", "expert", "--group", group]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn two_teams_never_see_each_others_cases() {
    let daemon = Daemon::start(&[]);
    admin_ok(&daemon, &["group", "add", "billing"]);
    admin_ok(&daemon, &["group", "add", "network"]);
    let ana = add_expert(&daemon, "ana", "billing");
    let bo = add_expert(&daemon, "bo", "network");
    let admin = daemon.add_user("root", "admin");

    let mut billing = daemon.session(None, &["request", "--name", "Payer", "--group", "billing"]);
    let billing_code = billing.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut network = daemon.session(None, &["request", "--name", "Router", "--group", "network"]);
    let network_code = network.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = daemon.run(None, &["request", "--name", "Lost", "--group", "nope"]);
    assert!(!unknown.status.success());

    let seen = |token: &str| -> Vec<String> {
        daemon.json(Some(token), &["queue"])["entries"]
            .clone()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(seen(&ana), vec![billing_code.clone()]);
    assert_eq!(seen(&bo), vec![network_code.clone()]);
    assert_eq!(seen(&admin).len(), 2, "admins see every queue");

    let mut ana_pull = daemon.session(Some(&ana), &["pull"]);
    assert_eq!(
        ana_pull.expect_event("attached")["code"],
        billing_code.as_str()
    );
    let mut bo_pull = daemon.session(Some(&bo), &["pull"]);
    assert_eq!(
        bo_pull.expect_event("attached")["code"],
        network_code.as_str()
    );
}

#[test]
fn a_transfer_keeps_the_customer_connected_and_tells_them_who_takes_over() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let bo = daemon.add_user("bo", "expert");
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let code = customer.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut first = daemon.session(Some(&ana), &["pull"]);
    first.expect_event("paired");
    customer.expect_event("paired");
    customer.send(b"hello ana\n");
    assert_eq!(first.receive(10), b"hello ana\n");

    let handed = daemon.json(Some(&ana), &["transfer", &code, "--expert", "bo"]);
    assert_eq!(handed["assigned_to"], "bo");
    first.expect_event("session_ended");
    let left = customer.expect_event("peer_left");
    assert!(
        left["reason"].as_str().unwrap().contains("expert bo"),
        "{left}"
    );
    // Only bo is offered the case now.
    assert!(daemon.json(Some(&ana), &["queue"])["entries"]
        .clone()
        .as_array()
        .unwrap()
        .is_empty());
    let mut second = daemon.session(Some(&bo), &["pull"]);
    second.expect_event("paired");
    assert_eq!(customer.expect_event("paired")["peer_name"], "bo");
    customer.send(b"hello bo\n");
    assert_eq!(second.receive(9), b"hello bo\n");
    second.send(b"hi alice\n");
    assert_eq!(customer.receive(9), b"hi alice\n");
}

#[test]
fn a_support_profile_is_all_a_customer_needs() {
    let daemon = Daemon::start(&[]);
    admin_ok(&daemon, &["group", "add", "billing"]);
    let ana = add_expert(&daemon, "ana", "billing");
    let profile = daemon.dir.path().join("support.sosq");
    let profile = profile.to_str().unwrap();
    admin_ok(
        &daemon,
        &[
            "profile",
            "--out",
            profile,
            "--server",
            &daemon.addr,
            "--group",
            "billing",
            "--welcome",
            "Welcome to Example support",
        ],
    );
    // Nothing but the profile: no server, no fingerprint in the environment.
    let mut cmd = std::process::Command::new(common::sosq_bin());
    cmd.env_remove("SOSQ_SERVER")
        .env_remove("SOSQ_FINGERPRINT")
        .env_remove("SOSQ_TOKEN")
        .args(["--json", "request", "--profile", profile, "--name", "Payer"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut customer = common::Session::from_command(cmd);
    let attached = customer.expect_event("attached");
    assert_eq!(
        customer.expect_event("welcome")["text"],
        "Welcome to Example support"
    );
    let queue = daemon.json(Some(&ana), &["queue"])["entries"].clone();
    assert_eq!(queue[0]["code"], attached["code"]);
    assert_eq!(queue[0]["group"], "billing");

    let bad = daemon.admin_command(&[
        "profile",
        "--out",
        profile,
        "--server",
        &daemon.addr,
        "--group",
        "nope",
    ]);
    assert!(!bad.status.success());
}

/// README: "A waiting customer is told its position whenever it changes" — only then. An
/// escalation or assignment that leaves a case where it stood (first in its old queue,
/// first in the new one) tells its customer nothing; a real move is told.
#[test]
fn a_waiting_customer_is_told_its_position_only_when_it_changes() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    daemon.add_user("bo", "expert");
    let code_of = |event: serde_json::Value| event["code"].as_str().unwrap().to_string();
    let mut first = daemon.session(None, &["request", "--name", "First"]);
    let attached = first.expect_event("attached");
    assert_eq!(attached["position"], 1, "{attached}");
    let a = code_of(attached);
    let staff = |args: &[&str]| {
        daemon.json(Some(&ana), args);
    };
    // Each of these leaves First at number 1 of the queue it waits in.
    staff(&["escalate", &a, "--priority", "critical", "--reason", "vip"]);
    staff(&["assign", &a, "--group", "general"]);
    staff(&["assign", &a, "--expert", "bo"]);
    let mut second = daemon.session(None, &["request", "--name", "Second"]);
    let attached = second.expect_event("attached");
    assert_eq!(attached["position"], 1, "{attached}");
    let b = code_of(attached);
    // Back in general, critical, ahead of Second: First stays number 1, Second moves.
    staff(&["assign", &a, "--group", "general"]);
    assert_eq!(second.expect_event("queue_position")["position"], 2);
    // A real move for First: behind Second.
    staff(&["escalate", &a, "--priority", "low", "--reason", "can wait"]);
    let moved = first.expect_event("queue_position");
    assert_eq!(
        moved["position"], 2,
        "the first position First hears is its move"
    );
    assert_eq!(moved["code"], a.as_str());
    assert_eq!(second.expect_event("queue_position")["position"], 1);
    let told: Vec<String> = first
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("queue_position"))
        .cloned()
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(daemon.json(Some(&ana), &["queue"])["entries"][0]["code"] == b.as_str());
}

/// The admin's queue shows each case's team and assignee, and POS is the place in the
/// case's own queue (what its customer was told), on the first page and on every later
/// one; an expert of two teams sees the team too.
#[test]
fn the_queue_shows_team_and_assignee_and_positions_within_each_queue() {
    let daemon = Daemon::start(&[]);
    admin_ok(&daemon, &["group", "add", "billing"]);
    let out = daemon.admin_command(&[
        "user", "add", "ana", "--role", "expert", "--group", "general", "--group", "billing",
    ]);
    assert!(out.status.success());
    let ana = String::from_utf8(out.stdout).unwrap().trim().to_string();
    daemon.add_user("bo", "expert");
    let root = daemon.add_user("root", "admin");
    let mut customers = Vec::new();
    let mut told = Vec::new();
    for (name, group) in [
        ("Gail", "general"),
        ("Gus", "general"),
        ("Bill", "billing"),
        ("Gert", "general"),
    ] {
        let mut customer = daemon.session(None, &["request", "--name", name, "--group", group]);
        let attached = customer.expect_event("attached");
        told.push(attached["position"].as_u64().unwrap());
        customers.push((customer, attached["code"].as_str().unwrap().to_string()));
    }
    assert_eq!(told, vec![1, 2, 1, 3]);
    let gert = customers[3].1.clone();
    daemon.json(Some(&root), &["assign", &gert, "--expert", "bo"]);
    assert_eq!(customers[3].0.expect_event("queue_position")["position"], 1);

    // Pull order across queues; each POS counts within its own queue.
    let expected = [
        ("Gail", "general", None, 1),
        ("Gus", "general", None, 2),
        ("Bill", "billing", None, 1),
        ("Gert", "general", Some("bo"), 1),
    ];
    let rows = |token: &str, args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["--json", "queue"];
        all.extend_from_slice(args);
        let out = daemon.run(Some(token), &all);
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let first_page = rows(&root, &[]);
    let entries = first_page[0]["entries"].as_array().unwrap().clone();
    // One entry a page: every page after the first counts its queue's cases ahead.
    let paged = rows(&root, &["--all", "--limit", "1"]);
    for entries in [entries, paged] {
        let seen: Vec<(&str, &str, Option<&str>, u64)> = entries
            .iter()
            .map(|e| {
                (
                    e["customer"].as_str().unwrap(),
                    e["group"].as_str().unwrap(),
                    e["assigned_to"].as_str(),
                    e["position"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(seen, expected.to_vec());
    }

    // The table people read has both columns.
    let table = daemon.run(Some(&root), &["queue"]);
    let table = String::from_utf8(table.stdout).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..4], ["POS", "CODE", "TEAM", "ASSIGNED"], "{table}");
    let gert_row: Vec<&str> = lines
        .find(|line| line.contains(&gert))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        (gert_row[0], gert_row[2], gert_row[3]),
        ("1", "general", "bo"),
        "{table}"
    );
    let gus_row: Vec<&str> = table
        .lines()
        .find(|line| line.contains("Gus"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((gus_row[0], gus_row[2], gus_row[3]), ("2", "general", "-"));

    // An expert of two teams: both teams, with their own positions, not bo's case.
    let ana_sees = rows(&ana, &[]);
    let seen: Vec<(String, u64)> = ana_sees[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["group"].as_str().unwrap().to_string(),
                e["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("general".to_string(), 1),
            ("general".to_string(), 2),
            ("billing".to_string(), 1)
        ]
    );
    let table = daemon.run(Some(&ana), &["queue"]);
    assert!(String::from_utf8(table.stdout)
        .unwrap()
        .starts_with("POS  CODE          TEAM"));
}
