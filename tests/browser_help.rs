//! Customers in a real browser: headless Chromium on a real `sosqd`'s `/help` page, with
//! real `sosq` experts in other processes and an expert in the console. Screenshots of the
//! form, the waiting page and the chat go under `target/test-screens/<test>/` (README's
//! "Customers in a browser" shows them). Without chromedriver and Chromium each test says
//! in one line that it was skipped.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::Daemon;
use serde_json::{json, Value};

/// The texts of the chat's lines from the other side, in the order shown.
fn peer_lines(page: &Browser) -> Vec<String> {
    let lines = page.js(
        "return Array.from(document.querySelectorAll('#lines li.peer span')).map(e => e.textContent)",
        vec![],
    );
    serde_json::from_value(lines).expect("a list of lines")
}

/// Sends `line` with the page's message box, as typed.
fn say(page: &Browser, line: &str) {
    page.fill("#say", line);
    page.click("#say-form button[type=submit]");
}

fn history_kinds(daemon: &Daemon, token: &str, code: &str) -> Vec<String> {
    daemon.json(Some(token), &["history", code])["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_customer_asks_in_the_browser_chats_with_a_terminal_expert_reloads_is_transferred_and_ends() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let bob = daemon.add_user("bob", "expert");
    let Some(mut page) = Browser::open(&daemon, "customer-help") else {
        return;
    };
    page.goto("/help");
    page.wait_for("#ask-name");
    page.fill("#ask-name", "Alice");
    page.fill("#ask-description", "My <b>printer</b> is on fire");
    page.select("#ask-priority", "high");
    page.screenshot("form");
    page.click("#ask-form button[type=submit]");
    let code = page.wait_text("#code", "the session code", |text| !text.is_empty());
    page.wait_for_text("#place", "You are next in the queue");
    page.wait_for_text("#spoken", "Read aloud");
    say(&page, "it also beeps");
    page.wait_for_text("#lines", "it also beeps");
    page.screenshot("waiting");
    let status = daemon.json(Some(&ana), &["status", &code]);
    assert_eq!(status["priority"], "high", "{status}");
    assert_eq!(status["description"], "My <b>printer</b> is on fire");
    assert_eq!(status["last_message"], "it also beeps", "{status}");

    let mut terminal = daemon.session(Some(&ana), &["pull"]);
    terminal.expect_event("paired");
    page.wait_for_text("#with", "Chat with ana");
    terminal.send(b"Hello Alice, I am looking at it. <img src=x onerror=alert(1)>\n");
    page.wait_for_text("#lines", "I am looking at it");
    assert_eq!(
        page.js(
            "return document.querySelectorAll('#lines img').length",
            vec![]
        ),
        0,
        "HTML in a line is text"
    );
    say(&page, "Thank you!");
    terminal.stdout_lines_until(|line| line == "Thank you!");
    page.screenshot("chat");

    // 200 lines each way, in order.
    for n in 0..200 {
        terminal.send(format!("expert line {n}\n").as_bytes());
    }
    page.wait_for_text("#lines", "expert line 199");
    let heard: Vec<String> = peer_lines(&page)
        .into_iter()
        .filter(|line| line.starts_with("expert line"))
        .collect();
    let expected: Vec<String> = (0..200).map(|n| format!("expert line {n}")).collect();
    assert_eq!(heard, expected);
    // The page's own form, at a person's fast typing (within 20 at once, 5 a second).
    page.js(
        "let n = 0; const form = document.getElementById('say-form'); \
         const timer = setInterval(() => { \
           document.getElementById('say').value = 'customer line ' + n; \
           form.requestSubmit(); n += 1; if (n === 200) { clearInterval(timer); } \
         }, 220);",
        vec![],
    );
    let lines = terminal.stdout_lines_until(|line| line == "customer line 199");
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("customer line"))
        .collect();
    let wanted: Vec<String> = (0..200).map(|n| format!("customer line {n}")).collect();
    assert_eq!(said, wanted.iter().collect::<Vec<_>>());

    // A reload mid-chat: the transcript is back, and the chat goes on.
    page.reload();
    page.wait_for_text("#lines", "customer line 199");
    page.wait_for_text("#with", "Chat with ana");
    terminal.send(b"still there?\n");
    page.wait_for_text("#lines", "still there?");
    say(&page, "yes, after a reload");
    terminal.stdout_lines_until(|line| line == "yes, after a reload");

    // The expert hands the case to bob: the page says who takes over.
    let moved = daemon.run(Some(&ana), &["transfer", &code, "--expert", "bob"]);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let mut second = daemon.session(Some(&bob), &["connect", &code]);
    second.expect_event("paired");
    page.wait_for_text("#lines", "bob takes over.");
    second.send(b"bob here\n");
    page.wait_for_text("#lines", "bob here");

    // The customer ends the session.
    page.js("window.confirm = () => true;", vec![]);
    page.click("#end");
    let over = page.wait_text("#over-text", "the end", |text| !text.is_empty());
    assert!(over.contains("closed"), "{over}");
    page.screenshot("over");
    let kinds = history_kinds(&daemon, &ana, &code);
    for kind in [
        "created",
        "message",
        "paired",
        "transferred",
        "traffic",
        "closed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

#[test]
fn two_browser_customers_and_a_console_expert_who_chats_with_one_then_the_other() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let Some(mut expert) = Browser::open(&daemon, "console-chat") else {
        return;
    };
    let mut customers = Vec::new();
    for (name, problem) in [("Alice", "vpn is down"), ("Bob", "screen is black")] {
        let Some(page) = Browser::open(&daemon, &format!("customer-{name}")) else {
            return;
        };
        page.goto("/help");
        page.fill("#ask-name", name);
        page.fill("#ask-description", problem);
        page.click("#ask-form button[type=submit]");
        let code = page.wait_text("#code", "the session code", |text| !text.is_empty());
        customers.push((name, code, page));
    }
    expert.sign_in(&ana);
    expert.goto("/queue");
    for (_, code, _) in &customers {
        expert.wait_for_text("#queue-rows", code);
    }

    // Alice attaches a screenshot while she waits; the expert's case page offers it.
    let files = tempfile::tempdir().unwrap();
    let shot = files.path().join("error.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(common::payload(60_000, 3));
    std::fs::write(&shot, &png).unwrap();
    let (_, alice_code, alice) = &mut customers[0];
    alice.choose_file("#attach-file", &shot);
    alice.click("#attach-form button[type=submit]");
    alice.wait_for_text("#lines", "You attached error.png (60,008 bytes)");
    let listed = daemon.json(Some(&ana), &["attachments", alice_code]);
    assert_eq!(listed["attachments"][0]["content_type"], "image/png");

    for (n, (name, code, page)) in customers.iter_mut().enumerate() {
        expert.goto(&format!("/cases/{code}"));
        expert.click("#chat-start");
        expert.wait_for_text("#chat-state", &format!("Connected to {name}"));
        page.wait_for_text("#with", "Chat with ana");
        say(&expert, &format!("Hello {name}, ana here."));
        page.wait_for_text("#lines", &format!("Hello {name}, ana here."));
        say(page, "Hi! Thanks.");
        expert.wait_for_text("#lines", "Hi! Thanks.");
        if n == 1 {
            // The expert needs Bob's screen: the console's button shows him the command.
            expert.screenshot("case-chat");
            expert.goto(&format!("/cases/{code}"));
            expert.click("#invite-form button[type=submit]");
            // The form reloads the case page: its chat comes back with its lines.
            expert.wait_for_text("#chat-state", "Connected to Bob");
            expert.wait_for_text("#lines", "Hi! Thanks.");
            let command = page.wait_text("#invite-command", "the command", |t| !t.is_empty());
            assert!(
                command.starts_with("SOSQ_SECRET=")
                    && command.contains(&format!(" sosq join {code} --name Bob --profile "))
                    && command.ends_with("--share 127.0.0.1:5900"),
                "{command}"
            );
            page.screenshot("invite");
            // Bob runs the program: the page lets go of the seat, offering it back; he takes
            // it back here, the program is told it was replaced, and the chat goes on.
            let secret = command
                .strip_prefix("SOSQ_SECRET=")
                .and_then(|rest| rest.split_whitespace().next())
                .expect("the command carries the secret")
                .trim_matches('\'')
                .to_string();
            let mut native =
                daemon.session(None, &["join", code, "--name", "Bob", "--secret", &secret]);
            native.expect_event("attached");
            page.wait_text("#over-text", "the seat taken", |t| {
                t.contains("sosq program")
            });
            page.click("#take-back");
            native.expect_event("replaced");
            let (status, said) = native.wait();
            assert!(status.success(), "{said}");
            page.wait_until("the chat back", |page| {
                page.js("return document.getElementById('over').hidden;", vec![]) == json!(true)
            });
            say(&expert, "Welcome back, Bob.");
            page.wait_for_text("#lines", "Welcome back, Bob.");
        }
        page.js("window.confirm = () => true;", vec![]);
        page.click("#end");
        page.wait_text("#over-text", "the end", |text| text.contains("closed"));
        if n == 0 {
            expert.wait_text("#chat-state", "the end of the chat", |text| {
                text.contains("closed")
            });
        }
        let status: Value = daemon.json(Some(&ana), &["status", code]);
        assert_eq!(status["state"], "closed", "{status}");
    }
}
