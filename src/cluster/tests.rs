//! The cluster's statements against a real PostgreSQL: claims hand each case out once and
//! in the core's order under concurrent pulls on several nodes, the shared queue shows the
//! core's order, a node that lost its lease cannot write over the new owner, tickets are
//! one-time and bound to their node and user, and reserved codes never collide.
//! Each test makes a database of its own and drops it; without SOSQ_TEST_DATABASE_URL
//! they say they were skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::{Priority, Timestamp};
use sosq::SessionCode;

use super::{Cluster, QueueView};
use crate::broker::{Broker, BrokerConfig, Effect, PartyId, Persist, SosRequest};
use crate::store::{CaseStore, Ledger, PgStore};

/// A database made for one test, dropped at its end.
struct FreshDatabase {
    admin: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    /// `None` (after saying so) without SOSQ_TEST_DATABASE_URL.
    async fn create(test: &str) -> Option<FreshDatabase> {
        let Ok(admin) = std::env::var("SOSQ_TEST_DATABASE_URL") else {
            eprintln!("skipped: {test}: SOSQ_TEST_DATABASE_URL is not set (needs PostgreSQL)");
            return None;
        };
        let name = format!(
            "sosq_t_cluster_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to SOSQ_TEST_DATABASE_URL");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let base = admin.split('?').next().unwrap_or(&admin);
        let url = match base.rfind('/') {
            Some(at) if at > "postgres://".len() => format!("{}/{name}", &base[..at]),
            _ => panic!("SOSQ_TEST_DATABASE_URL must look like postgres://user@host:port/db"),
        };
        Some(FreshDatabase { admin, name, url })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Its own thread and runtime: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// One node: its core, its fenced store and its cluster handle.
struct Node {
    broker: Broker,
    store: Arc<PgStore>,
    cluster: Arc<Cluster>,
}

impl Node {
    async fn join(url: &str, name: &str) -> Node {
        let ledger = Arc::new(Ledger::new(name));
        let store = {
            let (url, ledger) = (url.to_string(), ledger.clone());
            tokio::task::spawn_blocking(move || PgStore::open_node(&url, None, Some(ledger)))
                .await
                .unwrap()
                .expect("open the node's store")
        };
        let cluster = Cluster::new(
            url,
            name,
            &format!("{name}.example:4433"),
            // Nobody renews these nodes' leases here: long enough to outlast the test
            // (the fencing test ends one by hand).
            Duration::from_secs(600),
            4,
            ledger,
        )
        .expect("cluster handle");
        cluster.register().await.expect("register");
        let mut broker = Broker::new(
            BrokerConfig::default(),
            Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_os_rng()),
        );
        broker.use_code_supply();
        let mut node = Node {
            broker,
            store: Arc::new(store),
            cluster: Arc::new(cluster),
        };
        node.top_up().await;
        node
    }

    async fn top_up(&mut self) {
        let candidates = self.broker.code_candidates(64);
        let reserved = self.cluster.reserve_codes(&candidates).await.unwrap();
        self.broker.supply_codes(reserved);
    }

    /// Submits a command's store changes as the shell does: the queue state noted first.
    async fn persist(&self, out: Vec<Effect>) {
        let changes: Vec<Persist> = out
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Persist(change) => Some(change),
                _ => None,
            })
            .collect();
        self.cluster.ledger().note_saves(&self.broker, &changes);
        self.store.submit(changes).await.expect("commit");
    }

    /// An SOS case waiting online in `team` at `priority`, opened at `now`.
    async fn sos(&mut self, now: u64, party: u64, team: &str, priority: Priority) -> SessionCode {
        if self.broker.codes_supplied() == Some(0) {
            self.top_up().await;
        }
        let mut out = Vec::new();
        let request = SosRequest {
            customer: "Alice",
            description: "printer on fire",
            priority,
            group: team,
        };
        let attached = self
            .broker
            .open_sos(Timestamp(now), PartyId(party), request, &mut out)
            .expect("open sos");
        self.persist(out).await;
        attached.case.code
    }
}

fn priority(n: u64) -> Priority {
    [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ][(n % 4) as usize]
}

/// The core's pull order key of a waiting case, read from the shared queue's entry.
fn order_key(entry: &sosq::protocol::QueueEntry) -> (Priority, u64, u64, u64) {
    (
        entry.priority,
        entry.response_due.0,
        entry.waiting_since.0,
        entry.code.number(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_on_three_nodes_get_each_case_once_in_queue_order() {
    let Some(db) = FreshDatabase::create("concurrent_pulls").await else {
        return;
    };
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(Node::join(&db.url, name).await);
    }
    let mut keys = HashMap::new();
    for i in 0..300u64 {
        let team = if i % 3 == 0 { "blue" } else { "general" };
        let node = &mut nodes[(i % 3) as usize];
        let code = node
            .sos(1_000_000 + i * 7, 1_000 + i, team, priority(i * 5 / 3))
            .await;
        keys.insert(code, team);
    }
    // The order key of every case, from the shared queue itself (admins see all).
    let mut order = HashMap::new();
    let mut after = None;
    loop {
        let page = nodes[0]
            .cluster
            .queue_page(QueueView::Everyone, after.as_ref(), 1000)
            .await
            .unwrap();
        for entry in &page.entries {
            order.insert(entry.code, order_key(entry));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        order.len(),
        300,
        "every waiting case is in the shared queue"
    );
    let mut pullers = Vec::new();
    for expert in 0..30usize {
        let cluster = nodes[expert % 3].cluster.clone();
        let teams = if expert % 2 == 0 {
            vec!["general".to_string()]
        } else {
            vec!["blue".to_string()]
        };
        pullers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(claim) = cluster
                .claim_next(&format!("expert{expert}"), &teams)
                .await
                .expect("claim")
            {
                got.push(claim.code);
            }
            (teams, got)
        }));
    }
    let mut seen = HashSet::new();
    for puller in pullers {
        let (teams, got) = puller.await.unwrap();
        for pair in got.windows(2) {
            assert!(
                order[&pair[0]] < order[&pair[1]],
                "one expert's claims come in queue order"
            );
        }
        for code in got {
            assert!(
                teams.iter().any(|team| team == keys[&code]),
                "only its teams"
            );
            assert!(seen.insert(code), "case {code} claimed twice");
        }
    }
    assert_eq!(seen.len(), 300, "every case claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_queue_shows_the_cores_order() {
    let Some(db) = FreshDatabase::create("shared_queue_order").await else {
        return;
    };
    let mut node = Node::join(&db.url, "a").await;
    for i in 0..60u64 {
        node.sos(2_000_000 + i * 13, 1 + i, "general", priority(i * 7 / 2))
            .await;
    }
    let core: Vec<SessionCode> = node.broker.queue_view().iter().map(|e| e.code).collect();
    let page = node
        .cluster
        .queue_page(QueueView::Everyone, None, 1000)
        .await
        .unwrap();
    let shared: Vec<SessionCode> = page.entries.iter().map(|e| e.code).collect();
    assert_eq!(shared, core);
    assert_eq!(page.online, 60);
    let positions: Vec<Option<u32>> = page.entries.iter().map(|e| e.position).collect();
    let expected: Vec<Option<u32>> = (1..=60).map(Some).collect();
    assert_eq!(positions, expected);
    // Paged in tens, the same order with no gap and no repeat.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = node
            .cluster
            .queue_page(QueueView::Everyone, after.as_ref(), 10)
            .await
            .unwrap();
        paged.extend(page.entries.iter().map(|e| (e.code, e.position)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let whole: Vec<(SessionCode, Option<u32>)> =
        page.entries.iter().map(|e| (e.code, e.position)).collect();
    assert_eq!(paged, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_cannot_write_over_the_new_home() {
    let Some(db) = FreshDatabase::create("fencing").await else {
        return;
    };
    let mut a = Node::join(&db.url, "a").await;
    let b = Node::join(&db.url, "b").await;
    let code = a.sos(3_000_000, 1, "general", Priority::Normal).await;
    assert_eq!(
        b.cluster.take_over(code).await.unwrap(),
        None,
        "a live home keeps its case"
    );
    // a stops renewing (paused, cut off): its lease lapses.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE sosq_nodes SET lease_until = 0 WHERE node_id = 'a'",
            &[],
        )
        .await
        .unwrap();
    let record = b
        .cluster
        .take_over(code)
        .await
        .unwrap()
        .expect("b takes the lapsed case over");
    assert!(!record.history.is_empty(), "with its history");
    // a's late write is refused, whatever it says.
    let mut out = Vec::new();
    a.broker
        .close(
            Timestamp(3_000_100),
            crate::broker::Closer::Expert("ana"),
            &code.to_string(),
            &mut out,
        )
        .unwrap();
    let changes: Vec<Persist> = out
        .into_iter()
        .filter_map(|e| match e {
            Effect::Persist(p) => Some(p),
            _ => None,
        })
        .collect();
    let refused = a.store.submit(changes).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("served by another node")),
        "the old home's write is fenced off"
    );
    let stored = b.store.get(code).unwrap().expect("still there");
    assert_eq!(
        stored.state,
        sosq::protocol::CaseState::Pending,
        "not closed by a"
    );
    // The new home writes at its epoch.
    let mut b = b;
    let mut out = Vec::new();
    b.broker.adopt(
        Timestamp(3_000_200),
        record,
        "taken over by node b",
        &mut out,
    );
    b.persist(out).await;
    let stored = b.store.get(code).unwrap().unwrap();
    assert_eq!(
        stored.history.last().map(|e| e.kind),
        Some(sosq::protocol::HistoryKind::Moved)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_one_time_and_bound_to_their_node_and_user() {
    let Some(db) = FreshDatabase::create("tickets").await else {
        return;
    };
    let mut a = Node::join(&db.url, "a").await;
    let b = Node::join(&db.url, "b").await;
    let code = a.sos(4_000_000, 1, "general", Priority::Normal).await;
    let ticket = a
        .cluster
        .issue_ticket(code, "b", Some("ana"))
        .await
        .unwrap();
    assert_eq!(
        a.cluster.redeem_ticket(&ticket, Some("ana")).await.unwrap(),
        None,
        "wrong node"
    );
    assert_eq!(
        b.cluster.redeem_ticket(&ticket, Some("ana")).await.unwrap(),
        None,
        "used up"
    );
    let ticket = a
        .cluster
        .issue_ticket(code, "b", Some("ana"))
        .await
        .unwrap();
    assert_eq!(
        b.cluster.redeem_ticket(&ticket, Some("bob")).await.unwrap(),
        None,
        "wrong user"
    );
    let ticket = a
        .cluster
        .issue_ticket(code, "b", Some("ana"))
        .await
        .unwrap();
    assert_eq!(
        b.cluster.redeem_ticket(&ticket, None).await.unwrap(),
        None,
        "not a customer's"
    );
    let ticket = a
        .cluster
        .issue_ticket(code, "b", Some("ana"))
        .await
        .unwrap();
    assert_eq!(
        b.cluster.redeem_ticket(&ticket, Some("ana")).await.unwrap(),
        Some(code)
    );
    assert_eq!(
        b.cluster.redeem_ticket(&ticket, Some("ana")).await.unwrap(),
        None,
        "once"
    );
    assert_eq!(
        b.cluster
            .redeem_ticket("made-up", Some("ana"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_reserve_the_same_code() {
    let Some(db) = FreshDatabase::create("codes").await else {
        return;
    };
    let a = Node::join(&db.url, "a").await;
    let b = Node::join(&db.url, "b").await;
    let candidates: Vec<SessionCode> = (0..2_000u64)
        .map(|n| SessionCode::from_number(n * 7 + 11).unwrap())
        .collect();
    let (left, right) = tokio::join!(
        a.cluster.reserve_codes(&candidates),
        b.cluster.reserve_codes(&candidates)
    );
    let (left, right) = (left.unwrap(), right.unwrap());
    // a joined with 64 codes of its own already; the candidates are new to both.
    let both: HashSet<_> = left.iter().collect::<HashSet<_>>();
    assert!(
        right.iter().all(|code| !both.contains(code)),
        "no code to both"
    );
    assert_eq!(
        left.len() + right.len(),
        2_000,
        "every candidate to one of them"
    );
}

#[test]
fn a_live_home_is_judged_on_the_same_clock_as_every_lease() {
    assert!(super::HOME_LIVE.contains(super::NOW_MS));
}
