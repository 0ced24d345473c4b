//! The contract every [`CaseStore`] backend meets, as one suite run against each backend
//! (a future PostgreSQL store adds one line at the bottom). The filters' and the audit
//! pages' part is `contract_filters`.

mod reports;

use std::path::Path;
use std::sync::Arc;

use sosq::protocol::{
    Actor, ActorRole, CaseOrigin, CaseState, HistoryEntry, HistoryKind, Timestamp,
};
use sosq::SessionCode;

use super::{CaseStore, MemoryStore, SqliteStore};
use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};

/// Makes an empty store keeping its files (if any) under the given directory.
pub(super) type Make = fn(&Path) -> Arc<dyn CaseStore>;

pub(super) fn code(n: u64) -> SessionCode {
    SessionCode::from_number(n).unwrap()
}

fn entry(at: u64, state: CaseState, event: &str) -> HistoryEntry {
    HistoryEntry {
        at: Timestamp(at),
        state,
        // Not the default, so a store that loses the kind is caught.
        kind: HistoryKind::Escalated,
        event: event.into(),
        actor: Some(Actor::new(ActorRole::Expert, "ana")),
        address: Some("192.0.2.7:5000".into()),
    }
}

/// A case created at `created` in `state`, last changed at `updated`, with a history that
/// ends in that state.
pub(super) fn case(n: u64, state: CaseState, created: u64, updated: u64) -> CaseRecord {
    let mut history = vec![entry(created, CaseState::New, "created by expert ana")];
    if state != CaseState::New {
        history.push(entry(updated, state, "moved on"));
    }
    CaseRecord {
        code: code(n),
        origin: if n.is_multiple_of(2) {
            CaseOrigin::Sos
        } else {
            CaseOrigin::CreatedByExpert("ana".into())
        },
        customer: format!("customer {n}"),
        description: "printer on fire".into(),
        state,
        created_at: Timestamp(created),
        updated_at: Timestamp(updated),
        expires_at: Timestamp(created + 86_400_000),
        waiting_since: (n.is_multiple_of(2)).then_some(Timestamp(created)),
        resume_secret_hash: (n.is_multiple_of(2)).then(|| "ab".repeat(32)),
        last_message: (n.is_multiple_of(2)).then(|| format!("it also beeps {n}")),
        attachments: (n % 4) as u32,
        // Every field takes a non-default value for some n, so a lost column shows.
        group: if n.is_multiple_of(3) {
            "billing".into()
        } else {
            crate::broker::GENERAL.into()
        },
        assigned_to: (n % 5 == 1).then(|| "bo".to_string()),
        priority: sosq::protocol::Priority::ALL[(n % 4) as usize],
        response_due: (n.is_multiple_of(2)).then_some(Timestamp(created + 900_000)),
        first_response_at: (state == CaseState::InProgress).then_some(Timestamp(updated)),
        history,
    }
}

pub(super) async fn commit(store: &Arc<dyn CaseStore>, ops: Vec<Persist>) -> Vec<SessionCode> {
    let mut deleted = store.submit(ops).await.expect("commit").deleted;
    deleted.sort_unstable();
    deleted
}

pub(super) fn codes(records: &[CaseRecord]) -> Vec<SessionCode> {
    records.iter().map(|record| record.code).collect()
}

async fn saves_upserts_and_appends_history(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    assert_eq!(store.get(code(1)).unwrap(), None);
    let mut record = case(1, CaseState::New, 1_000, 1_000);
    commit(&store, vec![Persist::Save(record.clone())]).await;
    assert_eq!(store.get(code(1)).unwrap(), Some(record.clone()));

    record.state = CaseState::Pending;
    record.updated_at = Timestamp(2_000);
    record.resume_secret_hash = Some("cd".repeat(32));
    record.waiting_since = Some(Timestamp(2_000));
    record.history.push(HistoryEntry {
        actor: None,
        address: None,
        ..entry(2_000, CaseState::Pending, "customer Bob joined")
    });
    record
        .history
        .push(entry(2_001, CaseState::Pending, "noted"));
    commit(&store, vec![Persist::Save(record.clone())]).await;
    assert_eq!(store.get(code(1)).unwrap(), Some(record.clone()));
    assert_eq!(store.list(&CaseSelection::default()).unwrap(), vec![record]);
}

/// Many new entries in one save (more than a store may carry with the row), then a full
/// history whose last entry folds later events into itself: each read back whole.
async fn saves_long_histories_and_a_full_historys_folding_entry(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let mut record = case(2, CaseState::Pending, 1_000, 1_500);
    commit(&store, vec![Persist::Save(record.clone())]).await;
    for i in 0..40 {
        record
            .history
            .push(entry(2_000 + i, CaseState::Pending, &format!("note {i}")));
    }
    commit(&store, vec![Persist::Save(record.clone())]).await;
    assert_eq!(store.get(code(2)).unwrap(), Some(record.clone()));
    // One at a time up to the limit, as a busy case's saves go.
    let mut at = 3_000;
    while record.history.len() < crate::broker::MAX_HISTORY_ENTRIES {
        record
            .history
            .push(entry(at, CaseState::Pending, &format!("note at {at}")));
        at += 1;
        commit(&store, vec![Persist::Save(record.clone())]).await;
    }
    assert_eq!(store.get(code(2)).unwrap(), Some(record.clone()));
    if let Some(last) = record.history.last_mut() {
        last.event = "noted, and 3 more events".into();
        last.at = Timestamp(at + 10);
    }
    commit(&store, vec![Persist::Save(record.clone())]).await;
    assert_eq!(store.get(code(2)).unwrap(), Some(record));
}

/// Staff notes on a stored case are appends, in submission order, after whatever the store
/// holds then: two notes in one batch both stay, a note on a gone case brings nothing
/// back, and a full history takes no more (kind and author kept, as `note` is read back).
async fn appends_notes_to_stored_cases(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let mut record = case(4, CaseState::Closed, 1_000, 2_000);
    commit(&store, vec![Persist::Save(record.clone())]).await;
    let note = |at: u64, text: &str| HistoryEntry {
        kind: HistoryKind::Note,
        actor: Some(Actor::new(ActorRole::Admin, "root")),
        ..entry(at, CaseState::Closed, text)
    };
    let notes = vec![
        Persist::Note {
            code: code(4),
            entry: note(3_000, "refund sent"),
        },
        Persist::Note {
            code: code(4),
            entry: note(3_001, "customer called back"),
        },
        // Nobody has case 5: nothing is made of it.
        Persist::Note {
            code: code(5),
            entry: note(3_002, "lost"),
        },
    ];
    commit(&store, notes).await;
    record.history.push(note(3_000, "refund sent"));
    record.history.push(note(3_001, "customer called back"));
    assert_eq!(store.get(code(4)).unwrap(), Some(record.clone()));
    assert_eq!(store.get(code(5)).unwrap(), None);

    // A later save of the record as it now stands keeps the notes where they are.
    record
        .history
        .push(entry(4_000, CaseState::Closed, "after"));
    commit(&store, vec![Persist::Save(record.clone())]).await;
    assert_eq!(store.get(code(4)).unwrap(), Some(record.clone()));

    // Up to the limit and no further: two more than fit are sent.
    let room = crate::broker::MAX_HISTORY_ENTRIES - record.history.len();
    for i in 0..room + 2 {
        let entry = note(5_000 + i as u64, "more");
        commit(
            &store,
            vec![Persist::Note {
                code: code(4),
                entry: entry.clone(),
            }],
        )
        .await;
        if i < room {
            record.history.push(entry);
        }
    }
    let stored = store.get(code(4)).unwrap().expect("kept");
    assert_eq!(stored.history.len(), crate::broker::MAX_HISTORY_ENTRIES);
    assert_eq!(stored, record);
}

async fn lists_by_selection_oldest_first(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let all = vec![
        case(30, CaseState::Closed, 3_000, 3_500),
        case(10, CaseState::Pending, 1_000, 1_500),
        case(21, CaseState::Closed, 2_000, 2_500),
        case(20, CaseState::Expired, 2_000, 2_600),
    ];
    commit(&store, all.into_iter().map(Persist::Save).collect()).await;
    let every = store.list(&CaseSelection::default()).unwrap();
    assert_eq!(codes(&every), vec![code(10), code(20), code(21), code(30)]);
    let closed = CaseSelection {
        state: Some(CaseState::Closed),
        ..CaseSelection::default()
    };
    assert_eq!(
        codes(&store.list(&closed).unwrap()),
        vec![code(21), code(30)]
    );
    let old = CaseSelection {
        created_before: Some(Timestamp(2_000)),
        ..CaseSelection::default()
    };
    assert_eq!(codes(&store.list(&old).unwrap()), vec![code(10)]);
    let both = CaseSelection {
        state: Some(CaseState::Closed),
        created_before: Some(Timestamp(3_000)),
        ..CaseSelection::default()
    };
    assert_eq!(codes(&store.list(&both).unwrap()), vec![code(21)]);
    assert_eq!(store.list(&both).unwrap()[0].history.len(), 2);
}

async fn pages_in_creation_order_from_a_cursor(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    // Two cases share a creation time: the code breaks the tie.
    let cases = vec![
        case(30, CaseState::Closed, 300, 310),
        case(12, CaseState::New, 100, 100),
        case(11, CaseState::Closed, 100, 150),
        case(20, CaseState::Closed, 200, 250),
    ];
    commit(&store, cases.into_iter().map(Persist::Save).collect()).await;
    let all = CaseSelection::default();
    let first = store.page(&all, None, 2).unwrap();
    assert_eq!(codes(&first), vec![code(11), code(12)]);
    assert!(first.iter().all(|record| record.history.is_empty()));
    let last = &first[1];
    let rest = store
        .page(&all, Some((last.created_at, last.code)), 10)
        .unwrap();
    assert_eq!(codes(&rest), vec![code(20), code(30)]);
    let closed = CaseSelection {
        state: Some(CaseState::Closed),
        ..CaseSelection::default()
    };
    let after_11 = store
        .page(&closed, Some((Timestamp(100), code(11))), 10)
        .unwrap();
    assert_eq!(codes(&after_11), vec![code(20), code(30)]);
    assert!(store
        .page(&all, Some((Timestamp(300), code(30))), 10)
        .unwrap()
        .is_empty());
}

async fn deletes_by_code_and_by_selection_report_what_went(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let all: Vec<Persist> = (1..=6)
        .map(|n| {
            let state = if n <= 3 {
                CaseState::Closed
            } else {
                CaseState::New
            };
            Persist::Save(case(n, state, n * 1_000, n * 1_000))
        })
        .collect();
    commit(&store, all).await;
    let deleted = commit(
        &store,
        vec![Persist::Delete(vec![code(1), code(99), code(1), code(4)])],
    )
    .await;
    assert_eq!(
        deleted,
        vec![code(1), code(4)],
        "absent ignored, twice once"
    );
    assert_eq!(store.get(code(1)).unwrap(), None);
    let deleted = commit(
        &store,
        vec![Persist::DeleteWhere(CaseSelection {
            state: Some(CaseState::Closed),
            ..CaseSelection::default()
        })],
    )
    .await;
    assert_eq!(deleted, vec![code(2), code(3)]);
    let deleted = commit(
        &store,
        vec![Persist::DeleteWhere(CaseSelection {
            created_before: Some(Timestamp(6_000)),
            ..CaseSelection::default()
        })],
    )
    .await;
    assert_eq!(deleted, vec![code(5)]);
    assert_eq!(
        codes(&store.list(&CaseSelection::default()).unwrap()),
        vec![code(6)]
    );
    // A deleted case's history is gone with it: saving the code again starts afresh.
    let again = case(1, CaseState::New, 9_000, 9_000);
    commit(&store, vec![Persist::Save(again.clone())]).await;
    assert_eq!(store.get(code(1)).unwrap(), Some(again));
}

async fn applies_batches_and_changes_in_submission_order(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    // Submitted back to back without waiting: the tickets resolve, the order holds.
    let first = store.submit(vec![Persist::Save(case(1, CaseState::New, 1, 1))]);
    let second = store.submit(vec![Persist::Delete(vec![code(1)])]);
    let third = store.submit(vec![
        Persist::Save(case(2, CaseState::New, 2, 2)),
        Persist::Delete(vec![code(2)]),
        Persist::Save(case(2, CaseState::Pending, 3, 3)),
    ]);
    assert!(first.await.unwrap().deleted.is_empty());
    assert_eq!(second.await.unwrap().deleted, vec![code(1)]);
    assert_eq!(third.await.unwrap().deleted, vec![code(2)]);
    assert_eq!(store.get(code(1)).unwrap(), None);
    assert_eq!(
        store.get(code(2)).unwrap().map(|record| record.state),
        Some(CaseState::Pending)
    );
    // Many submitters at once: every ticket resolves and every change is there.
    let tickets: Vec<_> = (100..400)
        .map(|n| store.submit(vec![Persist::Save(case(n, CaseState::New, n, n))]))
        .collect();
    for ticket in tickets {
        ticket.await.unwrap();
    }
    assert_eq!(store.list(&CaseSelection::default()).unwrap().len(), 301);
}

async fn loads_open_cases_and_every_code(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let open = [
        case(1, CaseState::New, 1, 1),
        case(2, CaseState::Pending, 2, 2),
        case(3, CaseState::InProgress, 3, 3),
    ];
    let finished = [
        case(4, CaseState::Closed, 4, 4),
        case(5, CaseState::Expired, 5, 5),
    ];
    let saves = open.iter().chain(&finished).cloned().map(Persist::Save);
    commit(&store, saves.collect()).await;
    let mut loaded = store.load_open().unwrap();
    loaded.sort_by_key(|record| record.code);
    assert_eq!(loaded, open.to_vec(), "open cases come with their history");
    let mut every = Vec::new();
    store.load_codes(&mut |code| every.push(code)).unwrap();
    every.sort_unstable();
    assert_eq!(every, (1..=5).map(code).collect::<Vec<_>>());
}

async fn finds_finished_cases_for_retention_oldest_first(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let saves = vec![
        case(1, CaseState::Closed, 100, 5_000),
        case(2, CaseState::Expired, 100, 3_000),
        case(3, CaseState::Pending, 100, 1_000),
        case(4, CaseState::Closed, 100, 9_000),
        case(5, CaseState::Closed, 100, 4_000),
    ];
    commit(&store, saves.into_iter().map(Persist::Save).collect()).await;
    let due = store.finished_before(Timestamp(6_000), 10).unwrap();
    assert_eq!(due, vec![code(2), code(5), code(1)], "open cases never");
    let due = store.finished_before(Timestamp(6_000), 2).unwrap();
    assert_eq!(due, vec![code(2), code(5)]);
    assert!(store
        .finished_before(Timestamp(3_000), 10)
        .unwrap()
        .is_empty());
}

async fn audits_admin_deletes_with_their_count(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let saves = (1..=3).map(|n| Persist::Save(case(n, CaseState::Closed, n, n)));
    commit(&store, saves.collect()).await;
    let note = AuditEntry {
        at: Timestamp(7_000),
        actor: "admin root".into(),
        address: Some("192.0.2.9:4000".into()),
        action: "delete".into(),
        selector: "state closed".into(),
        count: 0,
    };
    let deleted = commit(
        &store,
        vec![
            Persist::Delete(vec![code(1), code(2), code(42)]),
            Persist::Audit(note.clone()),
        ],
    )
    .await;
    assert_eq!(deleted.len(), 2);
    assert_eq!(
        store.audit_log().unwrap(),
        vec![AuditEntry { count: 2, ..note }]
    );
}

/// Runs the whole contract against one backend.
async fn contract_suite(make: Make) {
    saves_upserts_and_appends_history(make).await;
    saves_long_histories_and_a_full_historys_folding_entry(make).await;
    appends_notes_to_stored_cases(make).await;
    super::contract_attachments::keeps_attachments_with_their_case(make).await;
    lists_by_selection_oldest_first(make).await;
    pages_in_creation_order_from_a_cursor(make).await;
    deletes_by_code_and_by_selection_report_what_went(make).await;
    applies_batches_and_changes_in_submission_order(make).await;
    loads_open_cases_and_every_code(make).await;
    finds_finished_cases_for_retention_oldest_first(make).await;
    audits_admin_deletes_with_their_count(make).await;
    reports::reports_count_exactly(make).await;
    super::contract_filters::suite(make).await;
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract_suite(|_| Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let make: Make = |dir| Arc::new(SqliteStore::open_in(dir).expect("open store"));
    contract_suite(make).await;
    super::contract_attachments::attachments_survive_reopening(make, make).await;
}

/// The variable naming the PostgreSQL server the tests may use (`.ci/run` sets it).
const DATABASE_URL_VAR: &str = "SOSQ_TEST_DATABASE_URL";

/// Where the PostgreSQL contract run finds a database: `SOSQ_TEST_DATABASE_URL` (e.g.
/// `postgres://postgres@127.0.0.1:5432/test`), or `None` when it is unset or empty.
fn test_postgres_url() -> Option<String> {
    std::env::var(DATABASE_URL_VAR)
        .ok()
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty())
}

/// [`test_postgres_url`] for code that runs only once it was found set.
fn set_postgres_url() -> String {
    test_postgres_url().expect("checked by the test before")
}

/// The schemas this process made for the PostgreSQL run, dropped at its end.
static PG_SCHEMAS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// An empty PostgreSQL store in a schema of its own.
fn make_postgres(_: &Path) -> Arc<dyn CaseStore> {
    let mut schemas = PG_SCHEMAS.lock().unwrap();
    let schema = format!("sosq_contract_{}_{}", std::process::id(), schemas.len());
    schemas.push(schema.clone());
    Arc::new(super::PgStore::open(&set_postgres_url(), Some(&schema)).expect("open PgStore"))
}

/// The PostgreSQL store [`make_postgres`] made last, opened again.
fn reopen_postgres(_: &Path) -> Arc<dyn CaseStore> {
    let schema = PG_SCHEMAS
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("made one");
    Arc::new(super::PgStore::open(&set_postgres_url(), Some(&schema)).expect("open PgStore"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_meets_the_contract() {
    let Some(url) = test_postgres_url() else {
        // One line, never a silent pass: this run did not test the PostgreSQL store.
        eprintln!(
            "skipped: postgres_store_meets_the_contract: {DATABASE_URL_VAR} is not set (needs PostgreSQL)"
        );
        return;
    };
    // A server that was named but cannot be reached fails the test: it was asked to run.
    // The probe only connects: opening a store here would make (or refuse, if another
    // version made them) tables in the shared database's own schema.
    if let Err(e) = probe_postgres(&url) {
        panic!("{DATABASE_URL_VAR}={url} cannot be used for the contract run: {e}");
    }
    drop_contract_schemas(None);
    contract_suite(make_postgres).await;
    super::contract_attachments::attachments_survive_reopening(make_postgres, reopen_postgres)
        .await;
    drop_contract_schemas(Some(std::mem::take(&mut *PG_SCHEMAS.lock().unwrap())));
}

/// Connects to `url` and runs `SELECT 1`, from a thread of its own like the store.
fn probe_postgres(url: &str) -> Result<(), String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "the probe thread panicked".to_string())?
}

/// Drops the given schemas, or (with `None`) every schema an earlier contract run left
/// behind when it failed half-way. From a thread of its own, like the store.
fn drop_contract_schemas(schemas: Option<Vec<String>>) {
    let url = set_postgres_url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let schemas = match schemas {
                Some(schemas) => schemas,
                None => client
                    .query(
                        "SELECT schema_name::text FROM information_schema.schemata
                         WHERE schema_name LIKE 'sosq_contract_%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect(),
            };
            for schema in schemas {
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .unwrap();
            }
        });
    })
    .join()
    .unwrap();
}
