//! The web console on a cluster node (issue 15: "works on a single node and on any node of
//! a cluster"): a customer asks for help on one node, and an expert signed in to another
//! node's console sees the case in the queue, opens its page, takes it and adds a note:
//! n2 runs the changes on n1, the node the customer is connected to, for the signed-in
//! expert. Skipped in one line without `SOSQ_TEST_DATABASE_URL`.

mod common;

use common::cluster::{wait_until, Cluster};
use common::postgres::FreshDatabase;
use common::web::Console;
use common::PATIENCE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_on_any_node_shows_and_works_the_shared_queue() {
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let cluster = Cluster::start(2, db.url(), "");
    let expert = cluster.add_user("ana", "expert");
    let mut customer = cluster.session(
        &[0],
        None,
        &["request", "--name", "Fay", "--description", "mail"],
    );
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().expect("a code").to_string();

    let console = Console::new(cluster.node(1).daemon());
    console.sign_in(&expert).await;
    // The shared queue reaches the other node's console.
    let mut queue = String::new();
    for _ in 0..(PATIENCE.as_millis() / 200) {
        queue = console.page("/queue").await;
        if queue.contains(&code) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(queue.contains(&code) && queue.contains("Fay"), "{queue}");

    let page = console.page(&format!("/cases/{code}")).await;
    assert!(page.contains("Fay") && page.contains("mail"), "{page}");
    let csrf = console.csrf().await;
    // The case's customer is connected to n1, which alone may change it: n2's console runs
    // the action there for ana (a delegation token, not ana's own), as `sosq` would.
    let response = console
        .post(&format!("/cases/{code}/take"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        response.status(),
        303,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let page = console.page(&format!("/cases/{code}")).await;
    assert!(page.contains("is assigned to you"), "{page}");
    let response = console
        .post(
            &format!("/cases/{code}/note"),
            &[("csrf", &csrf), ("reason", "taken on n2")],
        )
        .await;
    assert_eq!(
        response.status(),
        303,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let status = wait_until("the case is assigned to ana", PATIENCE, || {
        let status = cluster.json(&[0], Some(&expert), &["status", &code]);
        (status["assigned_to"] == "ana").then_some(status)
    });
    assert_eq!(status["state"], "pending");
    let history = cluster.json(&[0], Some(&expert), &["history", &code]);
    let notes: Vec<_> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "note")
        .collect();
    assert_eq!(notes.len(), 1, "{history}");
    assert!(notes[0]["address"]
        .as_str()
        .unwrap()
        .ends_with("via console"));
    customer.finish();
}
