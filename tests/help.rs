//! Customers in a browser at the protocol level: the `/help` page's WebSocket against a
//! real daemon, with real `sosq` experts in other processes. What a page sees (the case,
//! its place, the chat) and what the broker does with it (the same case, queue, relay and
//! history as for `sosq request`); reloads, the Origin check, and the limits.
//! (tests/browser_help.rs drives the same page in Chromium.)

mod common;

use common::chat_socket::{ChatSocket, Refused};
use common::web::Console;
use common::Daemon;
use serde_json::json;

/// The case a page was attached to: (code, secret).
fn case_of(attached: &serde_json::Value) -> (String, String) {
    (
        attached["code"].as_str().expect("code").to_string(),
        attached["secret"].as_str().expect("secret").to_string(),
    )
}

#[tokio::test]
async fn a_browser_customer_and_an_expert_in_a_terminal_chat_in_order_both_ways() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut page = ChatSocket::ask(&daemon, "Alice", "printer <b>on fire</b>").await;
    let attached = page.expect("attached").await;
    let (code, secret) = case_of(&attached);
    assert_eq!(attached["position"], 1);
    assert_eq!(attached["description"], "printer <b>on fire</b>");
    assert!(!secret.is_empty());

    // The case is an SOS case like any: the queue shows it, from the browser's address.
    let queue = daemon.json(Some(&expert), &["queue"]);
    assert_eq!(queue["entries"][0]["code"], code.as_str(), "{queue}");

    let mut terminal = daemon.session(Some(&expert), &["pull"]);
    terminal.expect_event("paired");
    let paired = page.expect("paired").await;
    assert_eq!(paired["name"], "ana");
    assert_eq!(paired["takes_over"], false);

    for n in 0..200 {
        terminal.send(format!("expert line {n}\n").as_bytes());
    }
    let heard = page.peer_lines(200).await;
    let expected: Vec<String> = (0..200).map(|n| format!("expert line {n}")).collect();
    assert_eq!(heard, expected, "every line, in order");

    // The page may send 20 at once and 5 a second after: pace like a person typing fast.
    for n in 0..200 {
        page.say(&format!("customer line {n}")).await;
        if n % 10 == 9 {
            tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        }
    }
    let lines = terminal.stdout_lines_until(|line| line == "customer line 199");
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("customer line"))
        .collect();
    assert_eq!(said.len(), 200, "{lines:?}");
    for (n, line) in said.iter().enumerate() {
        assert_eq!(**line, format!("customer line {n}"));
    }

    // The customer ends the session: the case is closed, and the history says who did what
    // from where, and what the session carried.
    page.send(json!({"type": "end"})).await;
    let ended = page.expect("ended").await;
    assert!(
        ended["reason"].as_str().unwrap().contains("closed"),
        "{ended}"
    );
    let history = daemon.run(Some(&expert), &["history", &code]);
    let history = String::from_utf8_lossy(&history.stdout).to_string();
    assert!(history.contains("via browser"), "{history}");
    assert!(history.contains("closed"), "{history}");
    let _ = secret;
}

#[tokio::test]
async fn a_reloaded_page_resumes_its_case_and_chat_and_the_expert_notices_nothing() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut page = ChatSocket::ask(&daemon, "Alice", "mouse is stuck").await;
    let (code, secret) = case_of(&page.expect("attached").await);
    let mut terminal = daemon.session(Some(&expert), &["pull"]);
    terminal.expect_event("paired");
    page.expect("paired").await;
    page.say("before the reload").await;
    terminal.stdout_lines_until(|line| line == "before the reload");

    page.drop_page().await;
    // What the expert says while the page is away waits for it.
    terminal.send(b"said while you were away\n");
    let mut page = ChatSocket::resume(&daemon, &code, &secret, "Alice").await;
    let attached = page.expect("attached").await;
    assert_eq!(attached["code"], code.as_str());
    assert_eq!(page.expect("paired").await["name"], "ana");
    assert_eq!(page.peer_lines(1).await, vec!["said while you were away"]);
    page.say("after the reload").await;
    terminal.stdout_lines_until(|line| line == "after the reload");
    terminal.send(b"welcome back\n");
    assert_eq!(page.peer_lines(1).await, vec!["welcome back"]);

    // A second reload finds the same party too (a resumed party keeps the case's secret):
    // the chat goes on, and the case never saw a new connection.
    page.drop_page().await;
    let mut page = ChatSocket::resume(&daemon, &code, &secret, "Alice").await;
    page.expect("attached").await;
    page.say("after the second reload").await;
    terminal.stdout_lines_until(|line| line == "after the second reload");
    let history = daemon.json(Some(&expert), &["history", &code]);
    assert!(
        !history.to_string().contains("\"replaced\""),
        "no connection was replaced: {history}"
    );
    // The same case opened in a second tab: the first is told, and lets go for good
    // (rather than coming back and taking turns with the second).
    let mut second_tab = ChatSocket::resume(&daemon, &code, &secret, "Alice").await;
    second_tab.expect("attached").await;
    let elsewhere = page.expect("elsewhere").await;
    assert!(
        elsewhere["text"]
            .as_str()
            .unwrap()
            .contains("another window"),
        "{elsewhere}"
    );
    let mut page = second_tab;

    // A wrong secret takes nothing over: it is a wrong code for the throttle, and the page
    // is told its request is not there.
    let mut stranger = ChatSocket::resume(&daemon, &code, "not-the-secret", "Mallory").await;
    let failed = stranger.expect("failed").await;
    assert_eq!(failed["retry"], false, "{failed}");
    // ...and the real page still chats.
    page.say("still here").await;
    terminal.stdout_lines_until(|line| line == "still here");
}

#[tokio::test]
async fn a_chat_socket_from_another_site_is_refused() {
    let daemon = Daemon::start(&[]);
    for origin in [Some("https://evil.example"), None] {
        let refused = ChatSocket::open_with(&daemon, "/chat/customer", origin, None).await;
        assert!(
            matches!(refused, Err(Refused(403))),
            "{origin:?}: {:?}",
            refused.err()
        );
    }
    let page = ChatSocket::open_with(
        &daemon,
        "/cases/s123-456-789/chat",
        Some(&daemon.console_url()),
        None,
    )
    .await;
    assert!(
        matches!(page, Err(Refused(401 | 303))),
        "a staff chat needs a session"
    );
}

#[tokio::test]
async fn oversized_and_too_fast_lines_are_refused_and_html_is_just_text() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut page = ChatSocket::ask(&daemon, "Alice", "help").await;
    page.expect("attached").await;
    let mut terminal = daemon.session(Some(&expert), &["pull"]);
    terminal.expect_event("paired");
    page.expect("paired").await;

    page.say(&"x".repeat(2001)).await;
    let refused = page.expect("refused").await;
    assert!(
        refused["text"]
            .as_str()
            .unwrap()
            .contains("at most 2000 characters"),
        "{refused}"
    );

    page.say("<script>alert(1)</script>").await;
    let lines = terminal.stdout_lines_until(|line| line.contains("alert"));
    assert_eq!(
        lines.last().unwrap(),
        "<script>alert(1)</script>",
        "relayed as it was typed"
    );
    terminal.send(b"<img src=x onerror=alert(2)>\n");
    assert_eq!(
        page.peer_lines(1).await,
        vec!["<img src=x onerror=alert(2)>"]
    );

    let mut refused_fast = None;
    for n in 0..40 {
        page.say(&format!("flood {n}")).await;
    }
    for _ in 0..60 {
        let message = page.next().await.expect("open");
        if message["type"] == "refused" {
            refused_fast = Some(message);
            break;
        }
    }
    let refused_fast = refused_fast.expect("a flood of lines is refused");
    assert!(
        refused_fast["text"]
            .as_str()
            .unwrap()
            .contains("lines a second"),
        "{refused_fast}"
    );
}

#[tokio::test]
async fn a_flood_of_help_requests_from_one_address_is_throttled_with_a_clear_message() {
    let daemon = Daemon::start(&[]);
    let mut pages = Vec::new();
    let mut refusal = None;
    for n in 0..12 {
        let mut page = ChatSocket::ask(&daemon, &format!("bot {n}"), "spam").await;
        let answer = page.next().await.expect("an answer");
        if answer["type"] == "failed" {
            refusal = Some((n, answer));
            break;
        }
        assert_eq!(answer["type"], "attached", "{answer}");
        pages.push(page);
    }
    let (n, refusal) = refusal.expect("the flood is stopped");
    assert_eq!(n, 10, "the burst is 10");
    let text = refusal["text"].as_str().unwrap();
    assert!(
        text.contains("too many requests for help from your address"),
        "{text}"
    );
    assert_eq!(refusal["retry"], false);
}

#[tokio::test]
async fn an_expert_chats_with_two_browser_customers_from_the_console_one_after_the_other() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let console = Console::new(&daemon);
    let cookie = console.session_cookie(&expert).await;
    let origin = daemon.console_url();

    let mut first = ChatSocket::ask(&daemon, "Alice", "first problem").await;
    let (first_code, _) = case_of(&first.expect("attached").await);
    let mut second = ChatSocket::ask(&daemon, "Bob", "second problem").await;
    let (second_code, _) = case_of(&second.expect("attached").await);

    for (page, code, customer) in [
        (&mut first, &first_code, "Alice"),
        (&mut second, &second_code, "Bob"),
    ] {
        let path = format!("/cases/{code}/chat");
        let mut panel = ChatSocket::open_with(&daemon, &path, Some(&origin), Some(&cookie))
            .await
            .expect("the signed-in expert's chat opens");
        assert_eq!(panel.expect("attached").await["customer"], customer);
        assert_eq!(panel.expect("paired").await["name"], customer);
        assert_eq!(page.expect("paired").await["name"], "ana");
        panel.say(&format!("hello {customer}")).await;
        assert_eq!(page.peer_lines(1).await, vec![format!("hello {customer}")]);
        page.say("thanks").await;
        assert_eq!(panel.peer_lines(1).await, vec!["thanks"]);
        page.send(json!({"type": "end"})).await;
        page.expect("ended").await;
        panel.expect("ended").await;
    }
}

#[tokio::test]
async fn a_profile_page_routes_to_its_team_with_its_priorities_and_waiting_messages_reach_the_case()
{
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let saved = daemon.admin_command(&[
        "profile",
        "save",
        "acme",
        "--priorities",
        "normal,high",
        "--company",
        "ACME <Ltd>",
        "--welcome",
        "We answer within minutes.",
    ]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let console = Console::new(&daemon);
    let page = console.page("/help/acme").await;
    assert!(page.contains("ACME &lt;Ltd&gt;"), "escaped company: {page}");
    assert!(page.contains("We answer within minutes."));
    assert!(
        !page.contains("value=\"critical\""),
        "only the profile's priorities"
    );
    assert_eq!(console.get("/help/nope").await.status(), 404);

    let mut refused = ChatSocket::open(&daemon, "/chat/customer").await;
    refused
        .send(json!({"type": "open", "name": "Eve", "description": "x", "priority": "critical", "profile": "acme"}))
        .await;
    let failed = refused.expect("failed").await;
    assert!(
        failed["text"]
            .as_str()
            .unwrap()
            .contains("cannot be chosen"),
        "{failed}"
    );

    let mut page = ChatSocket::open(&daemon, "/chat/customer").await;
    page.send(json!({"type": "open", "name": "Alice", "description": "fax", "priority": "high", "profile": "acme"}))
        .await;
    let (code, _) = case_of(&page.expect("attached").await);
    page.say("it also beeps").await;
    assert_eq!(page.expect("line").await["from"], "you");
    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(status["priority"], "high", "{status}");
    assert_eq!(status["last_message"], "it also beeps", "{status}");
}

#[tokio::test]
async fn a_transfer_shows_the_customer_who_takes_over() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let bob = daemon.add_user("bob", "expert");
    let mut page = ChatSocket::ask(&daemon, "Alice", "vpn").await;
    let (code, _) = case_of(&page.expect("attached").await);
    let mut first = daemon.session(Some(&ana), &["pull"]);
    first.expect_event("paired");
    assert_eq!(page.expect("paired").await["name"], "ana");
    let moved = daemon.run(Some(&ana), &["transfer", &code, "--expert", "bob"]);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let mut second = daemon.session(Some(&bob), &["connect", &code]);
    second.expect_event("paired");
    let paired = page.expect("paired").await;
    assert_eq!(paired["name"], "bob");
    assert_eq!(paired["takes_over"], true, "{paired}");
    second.send(b"bob here\n");
    assert_eq!(page.peer_lines(1).await, vec!["bob here"]);
}

#[tokio::test]
async fn a_page_is_told_plainly_when_its_case_is_deleted_or_expires_and_after_a_reload() {
    // Long enough for the deletion to come first on a loaded machine.
    let daemon = Daemon::start(&["--case-ttl", "8s"]);
    let root = daemon.add_user("root", "admin");
    let mut deleted_page = ChatSocket::ask(&daemon, "Bob", "spam, deleted at once").await;
    let (deleted_code, _) = case_of(&deleted_page.expect("attached").await);
    let deleted = daemon.run(Some(&root), &["delete", &deleted_code]);
    assert!(deleted.status.success(), "{deleted:?}");
    let ended = deleted_page.expect("ended").await;
    assert!(
        ended["reason"].as_str().unwrap().contains("deleted"),
        "{ended}"
    );

    let mut page = ChatSocket::ask(&daemon, "Alice", "screen is black").await;
    let (code, secret) = case_of(&page.expect("attached").await);
    let ended = page.expect("ended").await;
    // In the daemon's words, as a native customer hears it (not "connection lost").
    let reason = ended["reason"].as_str().unwrap();
    assert!(reason.contains("expired"), "{ended}");
    assert!(page.next().await.is_none(), "nothing follows the end");

    // The customer reloads the page later: it is told the case is over, and not to retry.
    let mut page = ChatSocket::resume(&daemon, &code, &secret, "Alice").await;
    let answer = page.next().await.expect("an answer");
    eprintln!("RELOAD {answer} / {ended}");
    assert_eq!(answer["type"], "failed", "{answer}");
    assert_eq!(answer["retry"], false, "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("no open case has code"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_waiting_page_comes_back_to_its_case_after_the_daemon_is_killed_and_restarted() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut page = ChatSocket::ask(&daemon, "Alice", "printer").await;
    let (code, secret) = case_of(&page.expect("attached").await);
    page.say("it also beeps").await;
    // The page shows the line once the daemon has it (kept with the case).
    let echoed = page.expect("line").await;
    assert_eq!(echoed["from"], "you", "{echoed}");

    // The daemon dies with the page waiting: its socket just closes (the page's script
    // reconnects to the same address once the daemon is back).
    let dir = daemon.kill9();
    assert!(page.next().await.is_none(), "the socket closed");
    let daemon = Daemon::start_in(dir, &[]);
    let mut page = ChatSocket::resume(&daemon, &code, &secret, "Alice").await;
    let attached = page.expect("attached").await;
    assert_eq!(attached["code"], code.as_str());
    assert_eq!(attached["position"], 1, "back in line: {attached}");

    // What it said while waiting survived, and the session runs as before.
    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(status["last_message"], "it also beeps", "{status}");
    let mut terminal = daemon.session(Some(&expert), &["pull"]);
    terminal.expect_event("paired");
    page.expect("paired").await;
    terminal.send(b"back again\n");
    assert_eq!(page.peer_lines(1).await, vec!["back again"]);
    page.say("thanks").await;
    terminal.stdout_lines_until(|line| line == "thanks");
}
