//! Crash test: many concurrent SOS requests, expert-created cases and closes against a
//! real sosqd, `kill -9` at a random moment, restart on the same data dir, and check that
//! every change a client saw acknowledged is there, in that state, that no code appears
//! twice, and that nothing shows up half-done. Twenty rounds on one data dir.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Daemon;
use sosq::protocol::{CaseState, Reply, Request};
use sosq::{Client, SessionCode};
use sosqd::broker::CaseSelection;
use sosqd::store::{CaseStore, SqliteStore};

const ROUNDS: usize = 20;
const CUSTOMERS: usize = 12;
const EXPERTS: usize = 4;

/// What clients heard acknowledged.
#[derive(Default)]
struct Acks {
    created: Vec<SessionCode>,
    closed: Vec<SessionCode>,
}

type Shared = Arc<Mutex<Acks>>;

async fn customer(options: sosq::ConnectOptions, acks: Shared, worker: usize) {
    let Ok(mut client) = Client::connect(&options).await else {
        return;
    };
    for round in 0.. {
        let reply = client
            .request(Request::OpenSos {
                customer: format!("customer {worker}"),
                description: format!("request {round}"),
                priority: Default::default(),
                group: None,
            })
            .await;
        let Ok(Reply::Attached { case, .. }) = reply else {
            return;
        };
        acks.lock().unwrap().created.push(case.code);
        let close = Request::Close {
            code: case.code.to_string(),
            resume_secret: None,
        };
        match client.request(close).await {
            Ok(Reply::Case(case)) => acks.lock().unwrap().closed.push(case.code),
            _ => return,
        }
    }
}

async fn expert(options: sosq::ConnectOptions, acks: Shared, worker: usize) {
    let Ok(mut client) = Client::connect(&options).await else {
        return;
    };
    for round in 0.. {
        let reply = client
            .request(Request::Create {
                customer: format!("caller {worker}"),
                description: format!("case {round}"),
            })
            .await;
        let Ok(Reply::Created(case)) = reply else {
            return;
        };
        acks.lock().unwrap().created.push(case.code);
        // Leave every third case open, so open cases pile up across restarts.
        if round % 3 == 0 {
            continue;
        }
        let close = Request::Close {
            code: case.code.to_string(),
            resume_secret: None,
        };
        match client.request(close).await {
            Ok(Reply::Case(case)) => acks.lock().unwrap().closed.push(case.code),
            _ => return,
        }
    }
}

/// A history that is not a legal walk through the lifecycle ending in the case's state is
/// a half-done case.
fn check_consistent(record: &sosqd::broker::CaseRecord) {
    let history = &record.history;
    assert!(!history.is_empty(), "{} has no history", record.code);
    assert!(history[0].event.starts_with("created by"), "{record:?}");
    let mut state = CaseState::New;
    for entry in history {
        let legal = entry.state == state
            || matches!(
                (state, entry.state),
                (
                    CaseState::New,
                    CaseState::Pending | CaseState::Closed | CaseState::Expired
                ) | (
                    CaseState::Pending,
                    CaseState::InProgress | CaseState::Closed | CaseState::Expired
                ) | (
                    CaseState::InProgress,
                    CaseState::Pending | CaseState::Closed | CaseState::Expired
                )
            );
        assert!(legal, "{}: {state} -> {}", record.code, entry.state);
        state = entry.state;
        assert!(entry.actor.is_some(), "{record:?}");
    }
    assert_eq!(state, record.state, "{record:?}");
}

#[test]
fn every_acknowledged_change_survives_kill_9_at_random_moments() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");
    let mut created_total: Vec<SessionCode> = Vec::new();
    let mut closed_total: HashSet<SessionCode> = HashSet::new();
    let mut stored_after_round = 0;

    for round in 0..ROUNDS {
        let acks: Shared = Arc::default();
        let mut workers = Vec::new();
        for worker in 0..CUSTOMERS {
            let task = customer(daemon.options(None), acks.clone(), worker);
            workers.push(runtime.spawn(task));
        }
        for worker in 0..EXPERTS {
            let task = expert(daemon.options(Some(&token)), acks.clone(), worker);
            workers.push(runtime.spawn(task));
        }
        let run_for = Duration::from_millis(rand::random_range(100..600));
        std::thread::sleep(run_for);
        let dir = daemon.kill9();
        for worker in &workers {
            worker.abort();
        }
        runtime.block_on(async {
            for worker in workers {
                let _ = worker.await;
            }
        });
        let acks = std::mem::take(&mut *acks.lock().unwrap());

        // What the restarted daemon will load, read straight from the file.
        let store = SqliteStore::open_in(dir.path()).expect("the store opens after kill -9");
        let stored: HashMap<SessionCode, sosqd::broker::CaseRecord> = store
            .list(&CaseSelection::default())
            .unwrap()
            .into_iter()
            .map(|record| (record.code, record))
            .collect();
        let mut codes = Vec::new();
        store.load_codes(&mut |code| codes.push(code)).unwrap();
        drop(store);
        assert_eq!(codes.len(), stored.len());
        assert_eq!(
            codes.iter().collect::<HashSet<_>>().len(),
            codes.len(),
            "round {round}: a code appears twice"
        );
        for record in stored.values() {
            check_consistent(record);
        }
        created_total.extend(&acks.created);
        closed_total.extend(&acks.closed);
        for code in &created_total {
            assert!(
                stored.contains_key(code),
                "round {round}: acknowledged case {code} is missing"
            );
        }
        for code in &closed_total {
            assert_eq!(
                stored[code].state,
                CaseState::Closed,
                "round {round}: acknowledged close of {code} is lost"
            );
        }
        let unique: HashSet<_> = created_total.iter().collect();
        assert_eq!(
            unique.len(),
            created_total.len(),
            "a code was handed out twice"
        );
        assert!(stored.len() >= stored_after_round);
        stored_after_round = stored.len();
        eprintln!(
            "round {round}: killed after {run_for:?}; {} creations and {} closes acknowledged, {} cases stored",
            acks.created.len(),
            acks.closed.len(),
            stored.len()
        );
        daemon = Daemon::start_in(dir, &[]);
    }
    assert!(
        created_total.len() > ROUNDS,
        "the workers got hardly anything done"
    );

    // The restarted daemon serves the stored cases.
    let code = created_total[0].to_string();
    let status = daemon.json(Some(&token), &["status", &code]);
    assert_eq!(status["code"], code.as_str());
}
