//! End to end in a real browser: headless Chromium driven by chromedriver (WebDriver) on
//! the web console of a real `sosqd`, with real `sosq` processes as the customers and the
//! expert's native client. Each test starts its own daemon and its own browser and saves a
//! PNG of every page it visits under `target/test-screens/<test>/`.
//!
//! Pages are found by element ids and form field names, not by layout, and every wait is
//! for something to show up in the page, bounded only by the harness's patience.
//!
//! Without chromedriver and Chromium (`apt-get install chromium chromium-driver`) each test
//! says in one line that it was skipped, and passes.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::{Daemon, Session};
use fantoccini::key::Key;

/// A customer's `sosq request` waiting in the queue, with the code and resume secret it
/// printed.
struct Customer {
    session: Session,
    code: String,
    secret: String,
}

fn request(daemon: &Daemon, name: &str, description: &str) -> Customer {
    let mut session = daemon.session(
        None,
        &["request", "--name", name, "--description", description],
    );
    let attached = session.expect_event("attached");
    let field = |key: &str| {
        attached[key]
            .as_str()
            .unwrap_or_else(|| panic!("`sosq request` printed no {key}: {attached}"))
            .to_string()
    };
    Customer {
        code: field("code"),
        secret: field("resume_secret"),
        session,
    }
}

/// The codes `sosq cases` lists for `admin`.
fn stored_codes(daemon: &Daemon, admin: &str) -> Vec<String> {
    daemon.json(Some(admin), &["cases"])["cases"]
        .as_array()
        .expect("`sosq cases` lists cases")
        .iter()
        .map(|case| case["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_expert_sees_a_request_arrive_live_takes_it_connects_and_closes_it() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let Some(mut browser) = Browser::open(&daemon, "expert") else {
        return;
    };
    browser.goto("/signin");
    browser.wait_for("#token");
    browser.screenshot("signin");
    browser.sign_in(&expert);
    assert_eq!(browser.path(), "/queue");
    browser.wait_for_text("#queue-rows", "Nobody is waiting");
    browser.screenshot("queue-empty");

    // The request shows up in the open page, by the live stream alone (no reload).
    browser.mark_page();
    let mut alice = request(&daemon, "Alice", "printer on fire");
    let row = browser.wait_for_text("#queue-rows", &alice.code);
    assert!(
        row.contains("Alice") && row.contains("printer on fire"),
        "{row}"
    );
    assert!(browser.is_marked_page(), "the queue page was reloaded");
    browser.wait_for_text("#queue-counts", "1 waiting online");
    browser.screenshot("queue");

    browser.click(&format!("#queue-rows a[href='/cases/{}']", alice.code));
    browser.wait_for_text("h1", &alice.code);
    assert_eq!(browser.try_text("#case-state").unwrap(), "pending");
    browser.screenshot("case");

    browser.click(&format!(
        "form[action='/cases/{}/take'] button[type=submit]",
        alice.code
    ));
    let command = format!("sosq connect {}", alice.code);
    browser.wait_for_text(".flash", &command);
    assert_eq!(browser.try_text("#connect-command").unwrap(), command);
    browser.screenshot("case-taken");

    // The expert runs the command the page showed, in the native client.
    let mut connect = daemon.session(Some(&expert), &["connect", &alice.code]);
    connect.expect_event("paired");
    alice.session.expect_event("paired");
    browser.reload();
    browser.wait_text("#case-state", "in_progress", |s| s == "in_progress");
    browser.screenshot("case-in-progress");

    // A note, for staff only: in the history, never on the customer's side.
    browser.fill(
        &format!(
            "form[action='/cases/{}/note'] input[name=reason]",
            alice.code
        ),
        "customer's VPN client is 3 versions old",
    );
    browser.click(&format!(
        "form[action='/cases/{}/note'] button[type=submit]",
        alice.code
    ));
    browser.wait_for_text(".flash", "Note added");
    browser.wait_for_text("#history", "VPN client is 3 versions old");
    let history = daemon.json(Some(&expert), &["history", &alice.code]);
    let note = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "note")
        .unwrap_or_else(|| panic!("a note in {history}"))
        .clone();
    assert!(
        note["address"].as_str().unwrap().ends_with("via console"),
        "{note}"
    );
    browser.screenshot("case-note");

    browser.click(&format!(
        "form[action='/cases/{}/close'] button[type=submit]",
        alice.code
    ));
    browser.wait_text("#case-state", "closed", |s| s == "closed");
    browser.wait_for_text(".flash", "Closed");
    browser.screenshot("case-closed");
    let closed = daemon.json(Some(&expert), &["status", &alice.code]);
    assert_eq!(closed["state"], "closed", "{closed}");
}

/// Closed cases older than a day, in the store before the daemon starts (as a daemon that
/// has run for days has them).
const OLD_CLOSED: u64 = 3;

#[test]
fn an_admin_deletes_closed_cases_older_than_a_day_after_a_confirmation_naming_count_and_filter() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let two_days_ago =
        sosq::protocol::Timestamp(sosq::protocol::Timestamp::now().0 - 2 * 24 * 60 * 60 * 1000);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(sosqd::loadgen::seed_finished_cases(
            dir.path(),
            OLD_CLOSED,
            |_| (two_days_ago, sosq::protocol::CaseState::Closed),
        ))
        .expect("seed old closed cases");
    let daemon = Daemon::start_in(dir, &[]);
    let expert = daemon.add_user("ana", "expert");
    let admin = daemon.add_user("root", "admin");
    let old = stored_codes(&daemon, &admin);
    assert_eq!(old.len() as u64, OLD_CLOSED);
    let customers: Vec<Customer> = ["Ann", "Ben", "Cy"]
        .iter()
        .map(|name| request(&daemon, name, "needs help"))
        .collect();
    // Ann's and Ben's cases are closed today by the expert; Cy still waits. Only the old
    // closed cases are closed and older than a day.
    for customer in &customers[..2] {
        let out = daemon.run(Some(&expert), &["close", &customer.code]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let Some(mut browser) = Browser::open(&daemon, "admin") else {
        return;
    };
    browser.sign_in(&admin);
    assert_eq!(browser.path(), "/admin/cases");
    let table = browser.wait_for_text("#cases", &customers[2].code);
    assert!(old.iter().all(|code| table.contains(code)), "{table}");
    browser.screenshot("admin-cases");

    browser.select("form[action='/admin/cases'] select[name=state]", "closed");
    browser.fill("form[action='/admin/cases'] input[name=older]", "1d");
    browser.click("form[action='/admin/cases'] button[type=submit]");
    browser.wait_until("the old closed cases only", |b| {
        b.path().contains("state=closed") && b.path().contains("older=1d")
    });
    let table = browser.wait_for_text("#cases", &old[0]);
    assert!(
        old.iter().all(|code| table.contains(code))
            && customers.iter().all(|c| !table.contains(&c.code)),
        "{table}"
    );
    browser.screenshot("admin-cases-filtered");

    let count = browser.wait_for_text("#match-count", "match");
    assert!(
        count.starts_with("3 case(s) match: state closed, created more than 1d ago"),
        "{count}"
    );
    browser.click("#delete-form button[name=scope][value=all]");
    let warning = browser.wait_for_text("#confirm-what", "Delete all 3 case(s) matching");
    assert!(
        warning.contains("state closed, created more than 1d ago"),
        "{warning}"
    );
    browser.screenshot("confirm-delete");

    browser.click("button[name=confirm][value=yes]");
    let flash = browser.wait_for_text(".flash", "Deleted");
    assert!(flash.contains("Deleted 3 case(s)"), "{flash}");
    let table = browser.wait_for_text("#cases", "No case matches");
    assert!(old.iter().all(|code| !table.contains(code)), "{table}");
    browser.screenshot("admin-cases-deleted");

    // The reports count the deletions (and draw them on the server, as SVG).
    browser.goto("/admin/reports?days=7");
    browser.wait_for_text("#report-outcomes", "deleted");
    let charts = browser.js(
        "return document.querySelectorAll('main svg').length;",
        vec![],
    );
    assert!(charts.as_u64().is_some_and(|n| n >= 5), "{charts}");
    // The picture shows the chart with today's deletions.
    browser.js(
        "document.getElementById('report-outcomes').scrollIntoView();",
        vec![],
    );
    browser.screenshot("reports");

    let mut left = stored_codes(&daemon, &admin);
    left.sort();
    let mut today: Vec<String> = customers.iter().map(|c| c.code.clone()).collect();
    today.sort();
    assert_eq!(left, today, "today's cases stay, closed or not");
}

#[test]
fn the_csv_export_guards_a_customer_name_a_spreadsheet_would_run_as_a_formula() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let customer = request(&daemon, "=HYPERLINK(\"x\")", "formula");
    let Some(mut browser) = Browser::open(&daemon, "csv") else {
        return;
    };
    browser.sign_in(&admin);
    // On the page the name is text, shown as typed.
    let table = browser.wait_for_text("#cases", &customer.code);
    assert!(table.contains("=HYPERLINK(\"x\")"), "{table}");
    browser.screenshot("admin-cases");
    let (status, csv) = browser.fetch("/admin/cases.csv");
    assert_eq!(status, 200, "{csv}");
    let row = csv
        .lines()
        .find(|line| line.contains(&customer.code))
        .unwrap_or_else(|| panic!("no row for {} in:\n{csv}", customer.code));
    let cells: Vec<&str> = row.split("\",\"").collect();
    assert_eq!(cells[2], "'=HYPERLINK(\"\"x\"\")", "{row}");
    assert!(row.contains(r#""'=HYPERLINK(""x"")""#), "{row}");
}

#[test]
fn status_page_renders() {
    let daemon = Daemon::start(&[]);
    let Some(mut browser) = Browser::open(&daemon, "status") else {
        return;
    };
    browser.goto("/status");
    browser.wait_for_text("#service", "up");
    browser.screenshot("status");
}

#[test]
fn a_customer_follows_its_request_live_with_code_and_secret_and_a_wrong_secret_is_refused() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut first = request(&daemon, "First", "ahead in line");
    let second = request(&daemon, "Second", "follows on the web");
    let Some(mut browser) = Browser::open(&daemon, "follow") else {
        return;
    };

    browser.goto("/case");
    browser.wait_for("#secret");
    browser.screenshot("case-form");
    browser.fill("#code", &second.code);
    browser.fill("#secret", "not-the-secret");
    browser.click("form[action='/case'] button[type=submit]");
    browser.wait_for("[role=alert]");
    assert_eq!(browser.path(), "/case");
    assert!(browser.try_text("#follow").is_none());
    browser.screenshot("case-wrong-secret");

    browser.fill("#code", &second.code);
    browser.fill("#secret", &second.secret);
    browser.click("form[action='/case'] button[type=submit]");
    browser.wait_for("#follow");
    assert_eq!(browser.path(), "/case/view");
    assert_eq!(
        browser.try_text("#case-state").unwrap(),
        "waiting for an expert"
    );
    assert_eq!(browser.try_text("#position").unwrap(), "2");
    browser.screenshot("case-follow");

    // The expert pulls the first customer: the second moves up, in the open page.
    browser.mark_page();
    let mut pull = daemon.session(Some(&expert), &["pull"]);
    pull.expect_event("paired");
    first.session.expect_event("paired");
    browser.wait_text("#position", "1", |p| p == "1");
    assert!(browser.is_marked_page(), "the follow page was reloaded");
    browser.screenshot("case-follow-moved-up");

    // And an expert connecting shows up too.
    let mut connect = daemon.session(Some(&expert), &["connect", &second.code]);
    connect.expect_event("paired");
    browser.wait_for_text("#case-state", "an expert is with you");
    assert_eq!(browser.try_text("#expert").unwrap(), "ana");
    assert!(browser.try_text("#position").is_none());
    browser.screenshot("case-follow-expert");
}

#[test]
fn an_expert_signs_in_and_takes_a_case_with_the_keyboard_alone() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let customer = request(&daemon, "Kim", "keyboard only");
    let Some(mut browser) = Browser::open(&daemon, "keyboard") else {
        return;
    };
    browser.goto("/signin");
    // The token field has the focus when the page opens.
    let focused = browser.focused();
    assert!(focused.starts_with("input |  | token"), "{focused}");
    browser.type_keys(&expert);
    browser.press(Key::Enter);
    browser.wait_until("the queue", |b| b.path() == "/queue");
    browser.wait_for_text("#queue-rows", &customer.code);
    browser.screenshot("queue");

    let link = format!("/cases/{}", customer.code);
    browser.tab_to(&format!("the link to {link}"), 100, |f| {
        f.starts_with(&format!("a | {link} |"))
    });
    // Another customer arrives while the link has the focus: the live table re-renders
    // under it, and the focus must stay on the link.
    let later = request(&daemon, "Lee", "arrives later");
    browser.wait_for_text("#queue-rows", &later.code);
    let focused = browser.focused();
    assert!(
        focused.starts_with(&format!("a | {link} |")),
        "the live update took the focus from the case's link: {focused}"
    );
    browser.press(Key::Enter);
    browser.wait_until("the case page", |b| b.path() == link);
    browser.wait_for_text("#case-state", "pending");
    browser.screenshot("case");

    browser.tab_to("the Take it button", 100, |f| {
        f.starts_with("button |") && f.ends_with("| Take it")
    });
    browser.press(Key::Enter);
    browser.wait_for_text(".flash", &format!("sosq connect {}", customer.code));
    browser.screenshot("case-taken");
    let case = daemon.json(Some(&expert), &["status", &customer.code]);
    assert_eq!(case["assigned_to"], "ana", "{case}");
}
