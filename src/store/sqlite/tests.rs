//! What the SQLite store does with files that are not what it expects, and with a full
//! disk: a clear error naming the file, and nothing overwritten.

use sosq::protocol::{CaseOrigin, CaseState, Timestamp};
use sosq::SessionCode;

use super::{SqliteStore, SCHEMA_VERSION};
use crate::broker::{CaseRecord, Persist};
use crate::store::{CaseStore, StoreError};

/// A new case numbered `n`, with a long description (shared with the backup tests).
pub(super) fn record(n: u64) -> CaseRecord {
    CaseRecord {
        code: SessionCode::from_number(n).unwrap(),
        origin: CaseOrigin::Sos,
        customer: "Alice".into(),
        description: "x".repeat(1_000),
        state: CaseState::New,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        expires_at: Timestamp(2),
        waiting_since: None,
        resume_secret_hash: None,
        last_message: None,
        attachments: 0,
        group: crate::broker::GENERAL.into(),
        assigned_to: None,
        priority: sosq::protocol::Priority::Normal,
        response_due: None,
        first_response_at: None,
        history: Vec::new(),
    }
}

#[tokio::test]
async fn survives_reopening_with_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    store.submit(vec![Persist::Save(record(7))]).await.unwrap();
    drop(store);
    let store = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(store.get(record(7).code).unwrap(), Some(record(7)));
}

#[test]
fn refuses_a_file_that_is_not_sqlite_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteStore::FILE_NAME);
    std::fs::write(&path, b"these are my precious notes, not a database").unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"these are my precious notes, not a database"
    );
}

#[test]
fn refuses_a_foreign_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteStore::FILE_NAME);
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1);")
        .unwrap();
    drop(other);
    let err = SqliteStore::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{text}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("invoices"),
        "{text}"
    );
}

#[test]
fn refuses_a_store_from_a_newer_sosqd() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_in(dir.path()).unwrap());
    let path = dir.path().join(SqliteStore::FILE_NAME);
    let newer = rusqlite::Connection::open(&path).unwrap();
    newer
        .execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    drop(newer);
    let err = SqliteStore::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn refuses_a_corrupt_store_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteStore::FILE_NAME);
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 8_192));
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
}

#[test]
fn a_data_dir_that_cannot_be_made_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let err = SqliteStore::open_in(&blocker.join("data"))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[tokio::test]
async fn a_full_disk_fails_the_batch_with_the_file_and_cause_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteStore::FILE_NAME);
    drop(SqliteStore::open(&path).unwrap());
    let pages: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    // SQLite reports a file that may not grow any more like a full disk (SQLITE_FULL).
    let store = SqliteStore::open_limited(&path, Some(pages as u64 + 2)).unwrap();
    store.submit(vec![Persist::Save(record(2))]).await.unwrap();
    let big: Vec<Persist> = (10..400).map(|n| Persist::Save(record(n))).collect();
    let err = store.submit(big).await.expect_err("disk full");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Io { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("full"), "{text}");
    assert_eq!(
        store.get(record(10).code).unwrap(),
        None,
        "nothing half-written"
    );
    assert!(store.get(record(2).code).unwrap().is_some());
    // The store keeps working for what fits.
    store
        .submit(vec![Persist::Delete(vec![record(2).code])])
        .await
        .unwrap();
}

#[test]
fn history_stored_before_kinds_gets_its_kind_and_actor_on_upgrade() {
    use sosq::protocol::{Actor, ActorRole, HistoryKind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteStore::FILE_NAME);
    // A store as schema 2's sosqd left it, with the words and actors it wrote.
    let old = rusqlite::Connection::open(&path).unwrap();
    for migration in &super::schema::MIGRATIONS[..2] {
        old.execute_batch(migration).unwrap();
    }
    let app = super::schema::APPLICATION_ID;
    old.execute_batch(&format!(
        "PRAGMA application_id = {app}; PRAGMA user_version = 2;"
    ))
    .unwrap();
    let code = SessionCode::from_number(123_456_789).unwrap();
    old.execute(
        "INSERT INTO cases (code, origin, customer, description, state, created_at,
             updated_at, expires_at, history_len)
         VALUES (?1, 'sos', 'Alice Smith', '', 'closed', 1, 9, 2, 9)",
        [code.number() as i64],
    )
    .unwrap();
    let rows = [
        ("created by customer Alice Smith", Some("customer")),
        (
            "customer Alice Smith asked for help (SOS)",
            Some("customer"),
        ),
        ("expert ana connected", Some("expert ana")),
        ("both partners connected", Some("expert ana")),
        (
            "priority normal -> high by expert ana: closed by x",
            Some("expert ana"),
        ),
        ("customer Alice Smith left", Some("customer")),
        ("session relayed 2 streams (…)", Some("sosqd")),
        ("closed by expert ana", Some("expert ana")),
        ("something else entirely", None),
    ];
    for (seq, (event, actor)) in rows.iter().enumerate() {
        old.execute(
            "INSERT INTO history (code, seq, at, state, event, actor, address)
             VALUES (?1, ?2, ?2, 'pending', ?3, ?4, NULL)",
            rusqlite::params![code.number() as i64, seq as i64, event, actor],
        )
        .unwrap();
    }
    drop(old);
    let store = SqliteStore::open(&path).unwrap();
    let history = store.get(code).unwrap().expect("kept").history;
    let kinds: Vec<HistoryKind> = history.iter().map(|entry| entry.kind).collect();
    assert_eq!(
        kinds,
        [
            HistoryKind::Created,
            HistoryKind::Attached,
            HistoryKind::Attached,
            HistoryKind::Paired,
            HistoryKind::Escalated,
            HistoryKind::Left,
            HistoryKind::Traffic,
            HistoryKind::Closed,
            HistoryKind::Event,
        ]
    );
    // Old customer entries named no customer; staff keep their names.
    let customer = Actor {
        role: ActorRole::Customer,
        name: None,
    };
    assert_eq!(history[0].actor, Some(customer));
    assert_eq!(history[2].actor, Some(Actor::new(ActorRole::Expert, "ana")));
    assert_eq!(history[6].actor, Some(Actor::daemon()));
    assert_eq!(history[8].actor, None);
}
