//! Case store benchmark (`cargo bench --bench store`), not a test: prints numbers, asserts
//! no time.
//!
//! 1. Durable case creations per second through the whole command path
//!    (`Shared::execute`: core + SQLite commit before the reply), one at a time (every
//!    creation waits for its own fsync) versus 1,000 in flight (group commit), in the same
//!    run on the same file.
//! 2. Restart time with 1,000,000 cases in the store (1% of them open): opening the store
//!    and loading the core (`SqliteStore::open_in` + `Shared::new`), the part of start-up
//!    that grows with the store.
//!
//! `SOSQ_BENCH_DIR` chooses where the database files go (default: a temporary directory);
//! put it on the disk the daemon would use, since fsync cost is the point.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sosq::protocol::{
    self, ActorRole, CaseOrigin, CaseState, HistoryEntry, HistoryKind, Timestamp,
};
use sosq::SessionCode;
use sosqd::broker::{Actor, CaseRecord, Persist};
use sosqd::clock::Clock;
use sosqd::config::Config;
use sosqd::server::Shared;
use sosqd::store::{CaseStore, SqliteStore};

const ONE_BY_ONE: usize = 300;
const GROUPED: usize = 20_000;
const IN_FLIGHT: usize = 1_000;
const RESTART_CASES: u64 = 1_000_000;

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        max_open_cases: 100_000,
        ..Config::default()
    }
}

fn shared_on(dir: &std::path::Path) -> Arc<Shared> {
    let store = SqliteStore::open_in(dir).expect("open store");
    Arc::new(Shared::new(config(dir), Arc::new(store), Clock::new(), None).expect("load"))
}

async fn create(shared: &Shared) {
    let actor = Actor::daemon();
    shared
        .execute(&actor, |broker, now, out| {
            broker.create(now, "bench", "customer", "benchmark case", out)
        })
        .await
        .expect("durable creation");
}

fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

async fn group_commit(dir: &std::path::Path) {
    let shared = shared_on(dir);
    let started = Instant::now();
    for _ in 0..ONE_BY_ONE {
        create(&shared).await;
    }
    let one_by_one = per_second(ONE_BY_ONE, started.elapsed());

    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                for _ in 0..GROUPED / IN_FLIGHT {
                    create(&shared).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let grouped = per_second(GROUPED, started.elapsed());
    println!("durable case creations per second (WAL, synchronous=FULL):");
    println!("  one at a time (one fsync per case):   {one_by_one:>10.0}/s  ({ONE_BY_ONE} cases)");
    println!("  {IN_FLIGHT} in flight (group commit):      {grouped:>10.0}/s  ({GROUPED} cases)");
    println!(
        "  ratio:                                {:>10.1}x",
        grouped / one_by_one
    );
}

fn record(n: u64, now: Timestamp) -> CaseRecord {
    let state = match n % 100 {
        0 => CaseState::Pending,
        1 => CaseState::InProgress,
        2..=79 => CaseState::Closed,
        _ => CaseState::Expired,
    };
    let created = Timestamp(now.0 - 3_600_000 + n % 1_000);
    let entry = |state, event: &str| HistoryEntry {
        at: created,
        state,
        kind: HistoryKind::Event,
        event: event.into(),
        actor: Some(protocol::Actor::new(ActorRole::Expert, "ana")),
        address: Some("192.0.2.1:50000".into()),
    };
    CaseRecord {
        // Spread over the code space like drawn codes are.
        code: SessionCode::from_number(n * 997 % 1_000_000_000).expect("code"),
        origin: CaseOrigin::Sos,
        customer: format!("customer {n}"),
        description: "printer on fire".into(),
        state,
        created_at: created,
        updated_at: created,
        expires_at: now.plus(Duration::from_secs(3_600)),
        waiting_since: Some(created),
        resume_secret_hash: Some("ab".repeat(32)),
        last_message: None,
        attachments: 0,
        group: sosqd::broker::GENERAL.into(),
        assigned_to: None,
        priority: sosq::protocol::Priority::Normal,
        response_due: Some(created.plus(Duration::from_secs(900))),
        first_response_at: None,
        history: vec![
            entry(CaseState::New, "created by customer"),
            entry(state, "moved on"),
        ],
    }
}

async fn restart(dir: &std::path::Path) {
    let started = Instant::now();
    {
        let store = SqliteStore::open_in(dir).expect("open store");
        let now = Timestamp::now();
        let mut tickets = Vec::new();
        for chunk in 0..RESTART_CASES / 10_000 {
            let batch = (chunk * 10_000..(chunk + 1) * 10_000)
                .map(|n| Persist::Save(record(n, now)))
                .collect();
            tickets.push(store.submit(batch));
        }
        for ticket in tickets {
            ticket.await.expect("bulk insert");
        }
    }
    println!(
        "built a store of {RESTART_CASES} cases (1% open) in {:.1?}",
        started.elapsed()
    );
    for attempt in 1..=3 {
        let started = Instant::now();
        let shared = shared_on(dir);
        let took = started.elapsed();
        drop(shared);
        println!("restart {attempt}: store opened and core loaded in {took:.2?}");
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks; there is nothing to list.
    }
    let base = std::env::var_os("SOSQ_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("bench dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(group_commit(&dir.path().join("group")));
    runtime.block_on(restart(&dir.path().join("restart")));
}
