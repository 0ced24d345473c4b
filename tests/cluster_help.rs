//! Customers in a browser on a cluster: the `/help` page's WebSocket against real nodes
//! sharing one PostgreSQL database, with a real `sosq` expert. A page served by one node
//! whose case lives on another (a reload that a load balancer sent elsewhere), and a page
//! whose case's node is killed: the page comes back, as it does after a reload, and the
//! chat goes on with the same case. And an expert in one node's console chatting with a
//! browser customer whose case lives on the other.
//!
//! Makes a database of its own on `SOSQ_TEST_DATABASE_URL` and says in one line that it
//! was skipped without it.

mod common;

use std::time::{Duration, Instant};

use common::chat_socket::ChatSocket;
use common::cluster::Cluster;
use common::postgres::FreshDatabase;
use common::web::Console;
use common::{Daemon, PATIENCE};
use serde_json::{json, Value};

/// A short lease, so that a lost node's case moves within the test's patience.
const SHORT_LEASE: &str = "lease = \"1s\"\n";

/// Opens a page on `daemon` that resumes `code` with `secret`, trying again while the page
/// is told to (`retry`), as the page's script does after a reload or a lost connection;
/// returns the page once attached, and the answers it got before.
async fn resume(daemon: &Daemon, code: &str, secret: &str) -> (ChatSocket, Vec<Value>) {
    let deadline = Instant::now() + PATIENCE;
    let mut refusals = Vec::new();
    loop {
        let mut page = ChatSocket::resume(daemon, code, secret, "Alice").await;
        let answer = page.next().await.expect("an answer");
        if answer["type"] == "attached" {
            assert_eq!(answer["code"], code, "{answer}");
            return (page, refusals);
        }
        assert_eq!(answer["type"], "failed", "{answer}");
        assert_eq!(answer["retry"], true, "the case is not lost: {answer}");
        assert!(
            Instant::now() < deadline,
            "the page never got its case back: {refusals:?}"
        );
        refusals.push(answer);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_browser_customer_resumes_on_another_node_and_after_its_cases_node_dies() {
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let mut cluster = Cluster::start(2, db.url(), SHORT_LEASE);
    let expert = cluster.add_user("ana", "expert");

    // The page asks n1; the expert, on n2, is sent to n1 where the case lives.
    let mut page = ChatSocket::ask(cluster.node(0).daemon(), "Alice", "printer on fire").await;
    let attached = page.expect("attached").await;
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["secret"].as_str().unwrap().to_string();
    let mut terminal = cluster.session(&[1, 0], Some(&expert), &["pull", "--wait"]);
    terminal.expect_event("paired");
    assert_eq!(page.expect("paired").await["name"], "ana");
    terminal.send(b"hello from ana\n");
    assert_eq!(page.peer_lines(1).await, vec!["hello from ana"]);
    page.say("hello from Alice").await;
    terminal.stdout_lines_until(|line| line == "hello from Alice");

    // A reload lands on n2, which does not hold the case: the chat goes on all the same.
    page.drop_page().await;
    let (mut page, _) = resume(cluster.node(1).daemon(), &code, &secret).await;
    page.say("reloaded on the other node").await;
    terminal.stdout_lines_until(|line| line == "reloaded on the other node");
    terminal.send(b"still here\n");
    assert_eq!(page.peer_lines(1).await, vec!["still here"]);

    // n1, where the case lives, dies: the page hears its connection was lost and comes back
    // (n2 takes the case over); the expert reconnects by itself; they chat again.
    cluster.node_mut(0).kill9();
    let lost = page.expect("failed").await;
    assert_eq!(lost["retry"], true, "{lost}");
    let (mut page, _) = resume(cluster.node(1).daemon(), &code, &secret).await;
    terminal.expect_event("reconnected");
    terminal.expect_event("paired");
    page.expect("paired").await;
    page.say("after the failover").await;
    terminal.stdout_lines_until(|line| line == "after the failover");
    terminal.send(b"all good\n");
    assert_eq!(page.peer_lines(1).await, vec!["all good"]);

    // The customer ends the session on the survivor: the case is closed, once.
    page.send(json!({"type": "end"})).await;
    let ended = page.expect("ended").await;
    assert!(
        ended["reason"].as_str().unwrap().contains("closed"),
        "{ended}"
    );
    let status = cluster.json(&[1], Some(&expert), &["status", &code]);
    assert_eq!(status["state"], "closed", "{status}");
    let created = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "created")
        .count();
    assert_eq!(created, 1, "one case throughout: {status}");
}

/// An expert signed in to n2's console takes a browser customer's case that lives on n1,
/// and they chat: the console's party is sent to the case's node as a terminal is.
#[tokio::test]
async fn a_console_expert_on_one_node_chats_with_a_browser_customer_on_another() {
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let cluster = Cluster::start(2, db.url(), "");
    let expert = cluster.add_user("ana", "expert");
    let mut page = ChatSocket::ask(cluster.node(0).daemon(), "Bob", "no sound").await;
    let code = page.expect("attached").await["code"]
        .as_str()
        .unwrap()
        .to_string();

    let console_node = cluster.node(1).daemon();
    let console = Console::new(console_node);
    let cookie = console.session_cookie(&expert).await;
    let origin = console_node.console_url();
    let path = format!("/cases/{code}/chat");
    let mut panel = ChatSocket::open_with(console_node, &path, Some(&origin), Some(&cookie))
        .await
        .expect("the signed-in expert's chat opens");
    assert_eq!(panel.expect("attached").await["customer"], "Bob");
    assert_eq!(panel.expect("paired").await["name"], "Bob");
    assert_eq!(page.expect("paired").await["name"], "ana");
    panel.say("hello Bob").await;
    assert_eq!(page.peer_lines(1).await, vec!["hello Bob"]);
    page.say("thanks").await;
    assert_eq!(panel.peer_lines(1).await, vec!["thanks"]);
    page.send(json!({"type": "end"})).await;
    page.expect("ended").await;
    panel.expect("ended").await;
}
