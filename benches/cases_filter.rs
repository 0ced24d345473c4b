//! Admin table benchmark (`cargo bench --bench cases_filter`), not a test: prints a table,
//! asserts no time.
//!
//! Fills a store with 1,000,000 cases (one SQL statement in one transaction: the setup,
//! not what is measured), then times what the web console's admin table asks of it:
//! the first page of 100 unfiltered (the baseline), a page 5,000 pages deep through the
//! keyset cursor, a page filtered by state and team, a page filtered by text (which no
//! index serves), a count capped at [`DEFAULT_COUNT_CAP`], and exporting every case of a
//! filter that selects 100,000 of them, page by page. Each figure is the median of a few
//! runs and is printed as a ratio to the baseline measured in the same run, so the table
//! compares shapes of work rather than machines.
//!
//! SQLite always; PostgreSQL too when `SOSQ_TEST_DATABASE_URL` names a server (in a schema
//! of its own, dropped at the end). `SOSQ_BENCH_DIR` chooses where the SQLite file goes.

use std::time::Instant;

#[path = "common/fill.rs"]
mod fill;
use fill::{cursor_at, fill_sql, median, RUNS, T0};

use sosq::protocol::{CaseState, Timestamp};
use sosqd::broker::CaseSelection;
use sosqd::store::{CaseStore, PgStore, SqliteStore, DEFAULT_COUNT_CAP};

/// How many cases the store holds.
const CASES: u64 = 1_000_000;
/// A page of the admin table.
const PAGE: usize = 100;
/// How deep the deep page is, in pages.
const DEEP_PAGES: u64 = 5_000;
/// Pages of the export (a CSV export asks for big pages).
const EXPORT_PAGE: usize = 1_000;
/// The export's filter selects the cases created in the first this many seconds.
const EXPORTED: u64 = 100_000;

/// Times each figure on `store` and prints the table.
fn measure(name: &str, store: &dyn CaseStore) {
    let all = CaseSelection::default();
    let state_team = CaseSelection {
        state: Some(CaseState::Closed),
        team: Some("team3".into()),
        ..CaseSelection::default()
    };
    let text = CaseSelection {
        text: Some("vpn".into()),
        ..CaseSelection::default()
    };
    let closed = CaseSelection {
        state: Some(CaseState::Closed),
        ..CaseSelection::default()
    };
    let exported = CaseSelection {
        created_from: Some(Timestamp(T0 + 1_000)),
        created_before: Some(Timestamp(T0 + (EXPORTED + 1) * 1_000)),
        ..CaseSelection::default()
    };
    let page = |selection: &CaseSelection, after| {
        let found = store.page(selection, after, PAGE).expect("page");
        assert_eq!(found.len(), PAGE, "a full page");
    };
    let baseline = median(|| page(&all, None));
    let deep = median(|| page(&all, Some(cursor_at(DEEP_PAGES * PAGE as u64 - 1))));
    let filtered = median(|| page(&state_team, None));
    let texted = median(|| page(&text, None));
    let counted = median(|| {
        let n = store.count(&closed, DEFAULT_COUNT_CAP).expect("count");
        assert_eq!(n, DEFAULT_COUNT_CAP, "the count reaches its cap");
    });
    let export = median(|| {
        let (mut after, mut total) = (None, 0u64);
        loop {
            let found = store.page(&exported, after, EXPORT_PAGE).expect("page");
            let Some(last) = found.last() else { break };
            after = Some((last.created_at, last.code));
            total += found.len() as u64;
        }
        assert_eq!(total, EXPORTED, "the export sees every case once");
    });
    println!("\n{name}: {CASES} cases, median of {RUNS} runs");
    println!("{:<52} {:>12} {:>10}", "what", "time", "x baseline");
    for (what, took) in [
        ("first page of 100, unfiltered (baseline)", baseline),
        ("page of 100, 5,000 pages deep (keyset)", deep),
        ("first page of 100, state closed + team", filtered),
        ("first page of 100, text \"vpn\" (1 case in 1,000)", texted),
        ("count state closed, capped at 100,000", counted),
        (
            "export 100,000 cases by creation range, pages of 1,000",
            export,
        ),
    ] {
        println!(
            "{what:<52} {:>12} {:>10.1}",
            format!("{took:.2?}"),
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

/// Fills a fresh SQLite store and measures it.
fn sqlite(dir: &std::path::Path) {
    let started = Instant::now();
    drop(SqliteStore::open_in(dir).expect("make the store"));
    let path = dir.join(SqliteStore::FILE_NAME);
    let mut conn = rusqlite::Connection::open(&path).expect("open for the fill");
    let tx = conn.transaction().expect("transaction");
    tx.execute_batch(&fill_sql(&format!(
        "(WITH RECURSIVE series(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM series
          WHERE x < {CASES}) SELECT x FROM series)"
    )))
    .expect("fill");
    tx.commit().expect("commit the fill");
    drop(conn);
    let store = SqliteStore::open_in(dir).expect("open store");
    println!("SQLite: filled in {:.1?}", started.elapsed());
    measure("SQLite", &store);
}

/// Fills a PostgreSQL store in a schema of its own, measures it, drops the schema.
fn postgres(url: &str) {
    let schema = format!("sosq_bench_filter_{}", std::process::id());
    let started = Instant::now();
    let store = PgStore::open(url, Some(&schema)).expect("open PgStore");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sql = |statements: String| {
        let url = url.to_string();
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client.batch_execute(&statements).await.expect("statement");
        })
    };
    sql(format!(
        "SET search_path TO {schema}; {}; ANALYZE cases",
        fill_sql(&format!("generate_series(1, {CASES}) AS series(x)"))
    ));
    println!("PostgreSQL: filled in {:.1?}", started.elapsed());
    measure("PostgreSQL", &store);
    drop(store);
    sql(format!("DROP SCHEMA {schema} CASCADE"));
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
    sqlite(dir.path());
    match std::env::var("SOSQ_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => postgres(url.trim()),
        _ => println!("\nPostgreSQL skipped: SOSQ_TEST_DATABASE_URL is not set"),
    }
}
