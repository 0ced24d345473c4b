//! End to end: what the public status page shows besides the queue, as an operator sets
//! it. `sosqd notice set|show|clear` and `sosqd group add --public`, `group set --public`,
//! `group list`, against a running daemon's `users.json` and against a cluster's
//! PostgreSQL store (a fresh database; skipped in one line without
//! `SOSQ_TEST_DATABASE_URL`).

mod common;

use std::process::{Command, Output};

use common::postgres::FreshDatabase;
use common::{sosqd_bin, Daemon};

/// Runs `sosqd ARGS PLACE` (PLACE: `--data-dir DIR` or `--store URL`), without any
/// SOSQ_STORE the test run may have.
fn sosqd(place: &[&str], args: &[&str]) -> Output {
    Command::new(sosqd_bin())
        .args(args)
        .args(place)
        .env_remove("SOSQ_STORE")
        .output()
        .expect("run sosqd")
}

fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

fn refused(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `group list` as (team, public) pairs.
fn teams(place: &[&str]) -> Vec<(String, bool)> {
    let (listed, _) = ok(sosqd(place, &["group", "list"]));
    listed
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().expect("a team").to_string();
            let public = match words.next() {
                None => false,
                Some("public") => true,
                Some(other) => panic!("unexpected {other:?} in {line:?}"),
            };
            (name, public)
        })
        .collect()
}

/// The notice and the public teams, set, shown, refused and cleared through the CLI.
fn status_page_commands(place: &[&str]) {
    let (shown, said) = ok(sosqd(place, &["notice", "show"]));
    assert_eq!(shown, "");
    assert!(said.contains("no notice is set"), "{said}");

    ok(sosqd(
        place,
        &["notice", "set", "Maintenance tonight 22:00-23:00 UTC"],
    ));
    let (shown, said) = ok(sosqd(place, &["notice", "show"]));
    assert_eq!(shown, "Maintenance tonight 22:00-23:00 UTC\n");
    assert!(said.starts_with("set 20"), "{said}");

    let long = "x".repeat(501);
    let said = refused(sosqd(place, &["notice", "set", &long]));
    assert!(said.contains("at most 500"), "{said}");
    let said = refused(sosqd(place, &["notice", "set", "two\nlines"]));
    assert!(said.contains("one line"), "{said}");
    let (shown, _) = ok(sosqd(place, &["notice", "show"]));
    assert_eq!(shown, "Maintenance tonight 22:00-23:00 UTC\n", "kept");

    ok(sosqd(place, &["notice", "clear"]));
    let (shown, said) = ok(sosqd(place, &["notice", "show"]));
    assert_eq!(shown, "");
    assert!(said.contains("no notice is set"), "{said}");

    let (_, said) = ok(sosqd(place, &["group", "add", "billing", "--public"]));
    assert!(said.contains("added group billing (public)"), "{said}");
    ok(sosqd(place, &["group", "add", "network"]));
    ok(sosqd(
        place,
        &["group", "set", "general", "--public", "true"],
    ));
    let pair = |name: &str, public| (name.to_string(), public);
    assert_eq!(
        teams(place),
        [
            pair("general", true),
            pair("billing", true),
            pair("network", false)
        ]
    );
    ok(sosqd(
        place,
        &["group", "set", "billing", "--public", "false"],
    ));
    assert_eq!(
        teams(place),
        [
            pair("general", true),
            pair("billing", false),
            pair("network", false)
        ]
    );
    let said = refused(sosqd(place, &["group", "set", "sales", "--public", "true"]));
    assert!(said.contains("no group named \"sales\""), "{said}");
    // A usage error (exit 2) names the missing flag.
    let usage = sosqd(place, &["group", "set", "billing"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--public"));
}

/// On one node: the running daemon's `users.json`, written while it serves; the daemon
/// still reads the file (its staff still get in) once it holds a notice and public teams.
#[test]
fn notice_and_public_teams_are_kept_in_users_json_while_the_daemon_serves() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let dir = daemon
        .dir
        .path()
        .to_str()
        .expect("a UTF-8 path")
        .to_string();
    let place = ["--data-dir", dir.as_str()];
    status_page_commands(&place);
    ok(sosqd(&place, &["notice", "set", "left set"]));
    let file = std::fs::read_to_string(daemon.dir.path().join("users.json")).unwrap();
    assert!(
        file.contains("left set") && file.contains("public_groups"),
        "{file}"
    );
    let queue = daemon.run(Some(&ana), &["queue"]);
    assert!(queue.status.success(), "{queue:?}");
}

/// In a cluster: the PostgreSQL store, with no node running.
#[test]
fn notice_and_public_teams_are_kept_in_postgres() {
    let Some(database) = FreshDatabase::create() else {
        return;
    };
    let place = ["--store", database.url()];
    status_page_commands(&place);
}
