//! End to end: the `sosq` command line as a newcomer meets it: support profiles on every
//! customer command, what `pull` says when nobody waits, deleting unknown codes, staff
//! looking at ended cases, `status` output and the help text.

mod common;

use common::Daemon;

fn admin_ok(daemon: &Daemon, args: &[&str]) {
    let out = daemon.admin_command(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An expert of two teams finds nobody in its queues (a customer waits in a third team's):
/// `pull` names the queues it searched and how to wait; with a customer offline in one of
/// them, it counts them as before.
#[test]
fn pull_with_nobody_waiting_names_the_queues_searched_and_wait() {
    let daemon = Daemon::start(&[]);
    admin_ok(&daemon, &["group", "add", "billing"]);
    admin_ok(&daemon, &["group", "add", "network"]);
    let out = daemon.admin_command(&[
        "user", "add", "ana", "--role", "expert", "--group", "general", "--group", "billing",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ana = stdout(&out).trim().to_string();
    let mut elsewhere =
        daemon.session(None, &["request", "--name", "Router", "--group", "network"]);
    elsewhere.expect_event("attached");

    let pull = daemon.run(Some(&ana), &["pull"]);
    assert!(!pull.status.success());
    let said = stderr(&pull);
    assert!(
        said.contains("no customer is waiting in your queues: general, billing, and the cases assigned to you")
            && said.contains("other teams' queues are not yours")
            && said.contains("sosq pull --wait"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line: {said}");

    // A billing customer who left (politely: offline at once) is counted, not handed out.
    let mut payer = daemon.session(None, &["request", "--name", "Payer", "--group", "billing"]);
    payer.expect_event("attached");
    payer.interrupt();
    payer.expect_event("left");
    let pull = daemon.run(Some(&ana), &["pull"]);
    assert!(!pull.status.success());
    let said = stderr(&pull);
    assert!(
        said.contains("no customer is waiting online in your queues: general, billing")
            && said.contains("(1 waiting offline")
            && said.contains("sosq pull --wait"),
        "{said}"
    );
}

/// `sosq delete CODE...` deletes the cases that exist and fails naming the codes that
/// match none, so a typo is not taken for a deletion; deleting again fails too.
#[test]
fn deleting_unknown_codes_fails_naming_them_and_deletes_the_rest() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");
    let made = daemon.json(Some(&ana), &["create", "--customer", "Bob"]);
    let real = made["code"].as_str().unwrap().to_string();
    let unknown = if real == "s111-111-111" {
        "s222-222-222"
    } else {
        "s111-111-111"
    };

    let out = daemon.run(Some(&root), &["delete", &real, unknown, &real]);
    assert!(!out.status.success(), "a typo must not pass: {out:?}");
    assert_eq!(stdout(&out).trim(), "deleted 1 case");
    let said = stderr(&out);
    assert!(
        said.contains(&format!("no case has code {unknown}")) && !said.contains(&real),
        "{said}"
    );
    let gone = daemon.run(Some(&root), &["status", &real]);
    assert!(!gone.status.success(), "{}", stdout(&gone));

    // Again, with --json: the reply names what was not found, the error is a JSON line.
    let again = daemon.run(Some(&root), &["--json", "delete", &real]);
    assert!(!again.status.success());
    let reply: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(reply["deleted"], 0);
    assert_eq!(reply["not_found"], serde_json::json!([real]));
    let error: serde_json::Value =
        serde_json::from_str(stderr(&again).lines().last().unwrap()).unwrap();
    assert!(
        error["message"].as_str().unwrap().contains(&real),
        "{error}"
    );

    // A delete by filter that matches nothing is not an error.
    let none = daemon.run(Some(&root), &["delete", "--state", "expired"]);
    assert!(none.status.success(), "{}", stderr(&none));
    assert_eq!(stdout(&none).trim(), "deleted 0 cases");
}
