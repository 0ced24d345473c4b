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
