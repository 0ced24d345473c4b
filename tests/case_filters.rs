//! End to end: the admin's case filters through a real `sosqd` and real `sosq` processes.
//! `sosq cases` narrows by team, priority, text, state and creation or closing time, in
//! text and JSON; a filtered page's "more:" hint repeats the filter; bad filters are
//! refused (by sosq before connecting, and by the daemon for a client that did not check);
//! `sosq delete` by the same flags removes exactly what `cases` listed and audits every
//! field it used.

mod common;

use common::Daemon;
use serde_json::Value;
use sosq::protocol::{CaseFilter, ErrorKind, Reply, Request, Timestamp, MAX_FILTER_TEXT_CHARS};
use sosq::{Client, ClientError};
use sosqd::store::{CaseStore, SqliteStore};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(daemon: &Daemon, token: &str, args: &[&str]) -> Value {
    daemon.json(Some(token), args)
}

/// The sorted codes of a `sosq --json cases ...` answer.
fn listed(daemon: &Daemon, root: &str, filter: &[&str]) -> Vec<String> {
    let mut args = vec!["cases"];
    args.extend_from_slice(filter);
    let page = daemon.json(Some(root), &args);
    let mut codes: Vec<String> = page["cases"]
        .as_array()
        .expect("a page of cases")
        .iter()
        .map(|case| case["code"].as_str().expect("a code").to_string())
        .collect();
    codes.sort();
    codes
}

fn sorted(codes: &[&String]) -> Vec<String> {
    let mut codes: Vec<String> = codes.iter().map(|code| code.to_string()).collect();
    codes.sort();
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_and_delete_select_by_every_filter_flag() {
    let daemon = Daemon::start(&[]);
    let out = daemon.admin_command(&["group", "add", "billing"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");
    let make = |customer: &str, description: &str| -> String {
        let made = ok(
            &daemon,
            &ana,
            &[
                "create",
                "--customer",
                customer,
                "--description",
                description,
            ],
        );
        made["code"].as_str().expect("a code").to_string()
    };
    let alice = make("Alice", "VPN down");
    let bob = make("Bob", "printer on fire");
    let carol = make("Carol", "printer jam");
    let dave = make("Dave", "the vpn is slow");
    for code in [&bob, &dave] {
        ok(&daemon, &ana, &["assign", code, "--group", "billing"]);
    }
    ok(
        &daemon,
        &ana,
        &[
            "escalate",
            &dave,
            "--priority",
            "critical",
            "--reason",
            "down",
        ],
    );
    let before_closing = Timestamp::now().0.to_string();
    for code in [&alice, &bob] {
        ok(&daemon, &ana, &["close", code]);
    }

    assert_eq!(
        listed(&daemon, &root, &["--team", "billing"]),
        sorted(&[&bob, &dave])
    );
    assert_eq!(
        listed(&daemon, &root, &["--priority", "critical"]),
        sorted(&[&dave])
    );
    assert_eq!(
        listed(&daemon, &root, &["--text", "VPN"]),
        sorted(&[&alice, &dave]),
        "either case, in the description"
    );
    assert_eq!(
        listed(&daemon, &root, &["--text", "aLiCe"]),
        sorted(&[&alice]),
        "in the customer's name"
    );
    assert_eq!(
        listed(&daemon, &root, &["--state", "closed", "--team", "billing"]),
        sorted(&[&bob])
    );
    assert_eq!(
        listed(&daemon, &root, &["--closed-after", &before_closing]),
        sorted(&[&alice, &bob])
    );
    assert_eq!(
        listed(&daemon, &root, &["--created-before", "1h"]),
        Vec::<String>::new(),
        "nothing was created an hour ago"
    );
    assert_eq!(
        listed(
            &daemon,
            &root,
            &[
                "--created-after",
                "2000-01-01T00:00:00Z",
                "--text",
                "printer"
            ]
        ),
        sorted(&[&bob, &carol])
    );

    // A filtered page's hint repeats the filter, and following it gives the rest.
    let first = daemon.run(
        Some(&root),
        &["cases", "--team", "billing", "--text", "o", "--limit", "1"],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let hint = stderr(&first);
    let line = hint
        .lines()
        .find(|line| line.starts_with("more: "))
        .unwrap_or_else(|| panic!("no more: line in {hint}"));
    assert!(
        line.contains("sosq cases --team billing --text o --limit 1 --after "),
        "{line}"
    );
    let token = line
        .split("--after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a token");
    let rest = listed(
        &daemon,
        &root,
        &[
            "--team", "billing", "--text", "o", "--limit", "1", "--after", token,
        ],
    );
    let first_page = String::from_utf8_lossy(&first.stdout).into_owned();
    let shown = [&bob, &dave]
        .into_iter()
        .filter(|code| first_page.contains(code.as_str()))
        .count();
    assert_eq!(shown, 1, "one case on the first page: {first_page}");
    assert_eq!(rest.len(), 1);
    assert!(!first_page.contains(&rest[0]), "the second page goes on");

    // Bad filters: sosq refuses before connecting; the daemon refuses a client that did not.
    let backwards = daemon.run(
        Some(&root),
        &[
            "cases",
            "--created-after",
            "5000",
            "--created-before",
            "3000",
        ],
    );
    assert!(!backwards.status.success());
    assert!(
        stderr(&backwards).contains("must be before"),
        "{}",
        stderr(&backwards)
    );
    let long = "x".repeat(MAX_FILTER_TEXT_CHARS + 1);
    let too_long = daemon.run(Some(&root), &["delete", "--text", &long]);
    assert!(!too_long.status.success());
    assert!(
        stderr(&too_long).contains("--text takes 1 to 200"),
        "{}",
        stderr(&too_long)
    );
    let mut admin = Client::connect(&daemon.options(Some(&root)))
        .await
        .expect("admin connects");
    let refused = admin
        .request(Request::Cases {
            filter: CaseFilter {
                text: Some(long.clone()),
                ..CaseFilter::default()
            },
            after: None,
            limit: 0,
        })
        .await;
    match refused {
        Err(ClientError::Refused(error)) => {
            assert_eq!(error.kind, ErrorKind::InvalidInput);
            assert!(error.message.contains("at most 200"), "{}", error.message);
        }
        other => panic!("a long text was not refused: {other:?}"),
    }
    let everything = admin
        .request(Request::Delete(sosq::protocol::DeleteSelector::Filter(
            CaseFilter::default(),
        )))
        .await;
    assert!(
        matches!(&everything, Err(ClientError::Refused(e)) if e.message.contains("refusing to delete every case")),
        "{everything:?}"
    );
    let still = admin
        .request(Request::Cases {
            filter: CaseFilter::default(),
            after: None,
            limit: 0,
        })
        .await;
    assert!(matches!(&still, Ok(Reply::Cases(page)) if page.cases.len() == 4));
    admin.close().await;
    let mixed = daemon.run(Some(&root), &["delete", &carol, "--team", "billing"]);
    assert!(!mixed.status.success());
    assert!(stderr(&mixed).contains("not both"), "{}", stderr(&mixed));

    // Delete by the same flags removes what `cases` listed, and nothing else.
    let doomed = listed(&daemon, &root, &["--team", "billing", "--text", "printer"]);
    assert_eq!(doomed, sorted(&[&bob]));
    let deleted = ok(
        &daemon,
        &root,
        &["delete", "--team", "billing", "--text", "printer"],
    );
    assert_eq!(deleted["deleted"], 1);
    assert_eq!(
        listed(&daemon, &root, &[]),
        sorted(&[&alice, &carol, &dave])
    );

    // The audit entry names every field the delete used.
    let mut daemon = daemon;
    assert!(daemon.terminate().success());
    let store = SqliteStore::open_in(daemon.dir.path()).expect("open the stopped store");
    let audit = store.audit_log().expect("audit log");
    let last = audit.last().expect("an audit entry");
    assert_eq!(last.count, 1);
    assert_eq!(
        last.selector, "team \"billing\", text \"printer\" in customer or description",
        "{audit:?}"
    );
}
