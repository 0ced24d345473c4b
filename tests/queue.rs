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
        daemon
            .json(Some(&expert), &["queue"])
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
    let queue = daemon.json(Some(&expert), &["queue"]);
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
        let queue: serde_json::Value = serde_json::from_str(line).unwrap();
        queue
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
