//! End to end through the lifecycle: a real sosqd on loopback, real `sosq` processes.
//! SOS request → queue → pull → bytes both ways → close; expert-created case → join;
//! expiry with a short ttl; bulk delete by filter.

mod common;

use common::{payload, Daemon};
use serde_json::Value;

fn codes_of(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sos_request_is_queued_pulled_relayed_both_ways_and_closed() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");

    let mut customer = daemon.session(
        None,
        &[
            "request",
            "--name",
            "Alice",
            "--description",
            "printer is on fire",
        ],
    );
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    assert_eq!(attached["position"], 1);
    assert_eq!(attached["state"], "pending");
    assert!(attached["resume_secret"].as_str().unwrap().len() >= 32);

    let queue = daemon.json(Some(&expert), &["queue"])["entries"].clone();
    assert_eq!(codes_of(&queue), vec![code.clone()]);
    assert_eq!(queue[0]["customer"], "Alice");
    assert_eq!(queue[0]["online"], true);

    let mut pull = daemon.session(Some(&expert), &["pull"]);
    let pulled = pull.expect_event("attached");
    assert_eq!(pulled["code"], code.as_str());
    assert_eq!(
        pulled["resume_secret"],
        Value::Null,
        "experts never see the secret"
    );
    assert_eq!(pull.expect_event("paired")["peer_name"], "Alice");
    assert_eq!(customer.expect_event("paired")["peer_name"], "ana");
    assert_eq!(
        daemon.json(Some(&expert), &["queue"])["entries"].clone(),
        Value::Array(vec![])
    );

    // Byte for byte, both ways, including every byte value and more than one chunk.
    let to_expert = payload(200_000, 1);
    customer.send(&to_expert);
    assert_eq!(pull.receive(to_expert.len()), to_expert);
    let to_customer = payload(150_000, 2);
    pull.send(&to_customer);
    assert_eq!(customer.receive(to_customer.len()), to_customer);

    let listed = daemon.json(Some(&admin), &["cases", "--state", "in_progress"])["cases"].clone();
    assert_eq!(codes_of(&listed), vec![code.clone()]);
    assert_eq!(listed[0]["expert"], "ana");

    let closed = daemon.json(Some(&expert), &["close", &code]);
    assert_eq!(closed["state"], "closed");
    customer.expect_event("session_ended");
    pull.expect_event("session_ended");
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = pull.wait();
    assert!(status.success(), "{stderr}");

    let all = daemon.json(Some(&admin), &["cases"])["cases"].clone();
    assert_eq!(all[0]["state"], "closed");
    let history = daemon.json(Some(&admin), &["history", &code]);
    let states: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["state"].as_str().unwrap())
        .collect();
    for state in ["new", "pending", "in_progress", "closed"] {
        assert!(states.contains(&state), "history lacks {state}: {states:?}");
    }

    // Closing twice is an illegal transition, said clearly.
    let again = daemon.run(Some(&expert), &["close", &code]);
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("it is closed"), "{message}");
}

#[test]
fn half_close_lets_the_other_side_finish_before_both_exit() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let (mut customer, mut pull) = daemon.paired_sessions(&expert);

    customer.send(b"question?\n");
    customer.finish();
    assert_eq!(pull.receive(10), b"question?\n");
    pull.expect_event("peer_finished");
    // The expert can still answer after the customer's EOF.
    pull.send(b"answer.\n");
    assert_eq!(customer.receive(8), b"answer.\n");
    pull.finish();
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = pull.wait();
    assert!(status.success(), "{stderr}");
}

#[test]
fn expert_created_case_is_joined_by_code_and_bound_to_that_customer() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");

    let created = daemon.json(
        Some(&expert),
        &["create", "--customer", "Bob", "--description", "vpn"],
    );
    let code = created["code"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "new");
    // Expert-created cases are not in the SOS queue.
    assert_eq!(
        daemon.json(Some(&expert), &["queue"])["entries"].clone(),
        Value::Array(vec![])
    );

    let mut connect = daemon.session(Some(&expert), &["connect", &code]);
    assert_eq!(connect.expect_event("attached")["state"], "pending");

    // Typed the way people type it: no dashes, upper case.
    let typed = code.replace('-', "").to_uppercase();
    let mut join = daemon.session(None, &["join", &typed, "--name", "Bob"]);
    let joined = join.expect_event("attached");
    let secret = joined["resume_secret"].as_str().unwrap().to_string();
    assert_eq!(join.expect_event("paired")["peer_name"], "ana");
    assert_eq!(connect.expect_event("paired")["peer_name"], "Bob");

    join.send(b"hi ana\n");
    assert_eq!(connect.receive(7), b"hi ana\n");

    // A stranger with the code cannot take the case.
    let stranger = daemon.run(None, &["join", &code, "--name", "Mallory"]);
    assert!(!stranger.status.success());

    // The customer's own status view works with its secret, not without.
    let own = daemon.json(None, &["status", &code, "--secret", &secret]);
    assert_eq!(own["state"], "in_progress");
    let nosy = daemon.run(None, &["status", &code]);
    assert!(!nosy.status.success());
    assert!(String::from_utf8_lossy(&nosy.stderr).contains("belongs to another customer"));

    // The customer leaves (Ctrl-C) and comes back with the secret; the case resumes.
    join.interrupt();
    let (status, stderr) = join.wait();
    assert!(status.success(), "Ctrl-C is how a session ends: {stderr}");
    assert!(stderr.contains("stays open"), "{stderr}");
    // The expert came by code: it waits for the customer to come back.
    let left = connect.expect_event("peer_left");
    assert!(left["reason"].as_str().unwrap().contains("left"), "{left}");
    let stranger = daemon.run(None, &["join", &code, "--name", "Mallory"]);
    assert!(!stranger.status.success(), "the case is bound to Bob");
    let mut back = daemon.session(None, &["join", &code, "--name", "Bob", "--secret", &secret]);
    back.expect_event("paired");
    connect.expect_event("paired");
    connect.send(b"welcome back\n");
    assert_eq!(back.receive(13), b"welcome back\n");

    // The customer closes its own case.
    let closed = daemon.json(None, &["close", &code, "--secret", &secret]);
    assert_eq!(closed["state"], "closed");
    back.expect_event("session_ended");
    connect.expect_event("session_ended");
}

#[test]
fn a_case_not_closed_within_the_ttl_expires_and_its_connections_drop() {
    let daemon = Daemon::start(&["--case-ttl", "2s"]);
    let admin = daemon.add_user("root", "admin");
    let mut customer = daemon.session(None, &["request", "--name", "Carla"]);
    let code = customer.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, stderr) = customer.wait();
    assert!(!status.success());
    assert!(stderr.contains("expired"), "{stderr}");

    let expired = daemon.json(Some(&admin), &["cases", "--state", "expired"])["cases"].clone();
    assert_eq!(codes_of(&expired), vec![code.clone()]);
    let join = daemon.run(None, &["join", &code, "--name", "Carla"]);
    assert!(!join.status.success());
    assert!(String::from_utf8_lossy(&join.stderr).contains("no open case"));
}

#[test]
fn admin_bulk_delete_by_filter_and_by_code_ends_active_sessions() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    let mut new_cases = Vec::new();
    for name in ["A", "B", "C"] {
        let case = daemon.json(Some(&expert), &["create", "--customer", name]);
        new_cases.push(case["code"].as_str().unwrap().to_string());
    }
    daemon.json(Some(&expert), &["close", &new_cases[2]]);
    let mut waiting = daemon.session(None, &["request", "--name", "Dora"]);
    let waiting_code = waiting.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();

    // Nothing is older than an hour.
    let none = daemon.json(
        Some(&admin),
        &["delete", "--state", "new", "--older-than", "1h"],
    );
    assert_eq!(none["deleted"], 0);

    let deleted = daemon.json(Some(&admin), &["delete", "--state", "new"]);
    assert_eq!(deleted["deleted"], 2);
    let left = codes_of(&daemon.json(Some(&admin), &["cases"])["cases"].clone());
    assert_eq!(left.len(), 2);
    assert!(left.contains(&new_cases[2]) && left.contains(&waiting_code));

    // Deleting an active case ends its session.
    let deleted = daemon.json(Some(&admin), &["delete", &waiting_code]);
    assert_eq!(deleted["deleted"], 1);
    let (status, stderr) = waiting.wait();
    assert!(!status.success());
    assert!(stderr.contains("deleted by an administrator"), "{stderr}");

    // A filter is required: "delete everything" is not a default.
    let refused = daemon.run(Some(&admin), &["delete"]);
    assert!(!refused.status.success());
    let text = daemon.run(Some(&admin), &["delete", &new_cases[2]]);
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).trim(),
        "deleted 1 case"
    );
    assert_eq!(
        daemon.json(Some(&admin), &["cases"])["cases"].clone(),
        Value::Array(vec![])
    );
}
