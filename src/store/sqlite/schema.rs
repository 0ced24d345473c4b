//! The database file: checking that it is ours before touching it, the connection
//! settings, and the schema migrations, versioned in code through `PRAGMA user_version`.

use std::io::Read;
use std::path::Path;

use rusqlite::Connection;

use crate::store::StoreError;

/// The schema version this build writes; migrations bring older files up to it.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// `PRAGMA application_id` of a sosqd case store ("sosq" in ASCII).
pub const APPLICATION_ID: i64 = 0x736f_7371;

/// Every migration in order; migration `i` takes the file from version `i` to `i + 1`.
/// Never edit one that has shipped; append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: cases, their history, the audit log of admin actions.
    "CREATE TABLE cases (
        code               INTEGER PRIMARY KEY,
        origin             TEXT    NOT NULL,
        created_by         TEXT,
        customer           TEXT    NOT NULL,
        description        TEXT    NOT NULL,
        state              TEXT    NOT NULL,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        expires_at         INTEGER NOT NULL,
        waiting_since      INTEGER,
        resume_secret_hash TEXT,
        history_len        INTEGER NOT NULL
    );
    CREATE INDEX cases_by_creation ON cases (created_at);
    CREATE INDEX cases_open ON cases (state)
        WHERE state IN ('new', 'pending', 'in_progress');
    CREATE INDEX cases_finished ON cases (updated_at)
        WHERE state IN ('closed', 'expired');
    CREATE TABLE history (
        code    INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        state   TEXT    NOT NULL,
        event   TEXT    NOT NULL,
        actor   TEXT,
        address TEXT,
        PRIMARY KEY (code, seq)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        actor    TEXT    NOT NULL,
        address  TEXT,
        action   TEXT    NOT NULL,
        selector TEXT    NOT NULL,
        count    INTEGER NOT NULL
    );",
    // 2: team queues, assignment, priority and first-response targets.
    "ALTER TABLE cases ADD COLUMN team TEXT NOT NULL DEFAULT 'general';
    ALTER TABLE cases ADD COLUMN assigned_to TEXT;
    ALTER TABLE cases ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
    ALTER TABLE cases ADD COLUMN response_due INTEGER;
    ALTER TABLE cases ADD COLUMN first_response_at INTEGER;",
    // 3: history entries say what they record (`kind`) and who did it by role (`actor`)
    // and name (`actor_name`). Older entries get the kind their words name; the words are
    // the ones schema 2's sosqd wrote, fixed text around at most one name, so the fixed
    // part decides (a name cannot make one entry look like another); anything else is
    // `event`. Their actor was "ROLE NAME" or a bare role: split at the first space.
    "ALTER TABLE history ADD COLUMN kind TEXT NOT NULL DEFAULT 'event';
    ALTER TABLE history ADD COLUMN actor_name TEXT;
    UPDATE history SET
        actor_name = substr(actor, instr(actor, ' ') + 1),
        actor = substr(actor, 1, instr(actor, ' ') - 1)
    WHERE instr(actor, ' ') > 0;
    UPDATE history SET kind = CASE
        WHEN event GLOB '[0-9]* events folded into this last entry*' THEN 'folded'
        WHEN event GLOB 'created by *' THEN 'created'
        WHEN event GLOB 'closed by *' THEN 'closed'
        WHEN event GLOB 'expired: *' THEN 'expired'
        WHEN event GLOB 'deleted by admin *' THEN 'deleted'
        WHEN event GLOB 'priority * -> * by *' THEN 'escalated'
        WHEN event GLOB 'assigned to * by *' THEN 'assigned'
        WHEN event GLOB 'session relayed *' THEN 'traffic'
        WHEN event GLOB 'sosqd restarted;*' THEN 'restarted'
        WHEN event = 'both partners connected' THEN 'paired'
        WHEN event = 'session started, waiting for the partner' THEN 'started'
        WHEN event GLOB 'first response *' THEN 'first_response'
        WHEN event = 'the expert was let go to take the next case' THEN 'released'
        WHEN event GLOB 'expert * transferred the case to *' THEN 'transferred'
        WHEN event GLOB '* came back on a new connection; the old one was closed'
            THEN 'replaced'
        WHEN event GLOB 'customer * asked for help (SOS)' THEN 'attached'
        WHEN event GLOB 'customer * joined' THEN 'attached'
        WHEN event GLOB 'customer * came back' THEN 'attached'
        WHEN event GLOB 'expert * connected' THEN 'attached'
        WHEN event GLOB '* left' THEN 'left'
        WHEN event GLOB '* was lost (its connection stopped answering)' THEN 'left'
        ELSE 'event'
    END;",
    // 4 (reports): the Reports page's queue-length sweep finds the cases that can have
    // waited in its window by their expiry, and its deletions per day read the audit log
    // by time (`store::sqlite::reports`).
    "CREATE INDEX reports_by_expiry ON cases (expires_at);
    CREATE INDEX audit_by_time ON audit (at);",
    // 5: the admin table's filters (`store::filter_sql`). Each index leads with the column
    // an equality filter names and goes on in creation order (the rowid `code` follows
    // implicitly), so a filtered page walks one index from its cursor, like the unfiltered
    // page walks `cases_by_creation`. Closing-time ranges use `cases_finished`.
    "CREATE INDEX cases_by_state_creation ON cases (state, created_at);
    CREATE INDEX cases_by_team_creation ON cases (team, created_at);
    CREATE INDEX cases_by_priority_creation ON cases (priority, created_at);",
    // 6: customers' messages and attachments. The case keeps its latest message and how
    // many files it holds; the files are rows of their own, deleted with their case. A
    // rowid table (not WITHOUT ROWID): its rows are megabytes, which belong in overflow
    // pages, not in the leaves of the primary key's b-tree.
    "ALTER TABLE cases ADD COLUMN last_message TEXT;
    ALTER TABLE cases ADD COLUMN attachments INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE attachments (
        code         INTEGER NOT NULL,
        id           INTEGER NOT NULL,
        name         TEXT    NOT NULL,
        content_type TEXT    NOT NULL,
        size         INTEGER NOT NULL,
        attached_at  INTEGER NOT NULL,
        data         BLOB    NOT NULL,
        PRIMARY KEY (code, id)
    );",
];

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a file that exists, is not empty, and is not an SQLite database, before SQLite
/// gets a chance to touch it.
pub fn check_file(path: &Path) -> Result<(), StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(open_error(path, e)),
    };
    let mut header = Vec::with_capacity(16);
    (&mut file)
        .take(16)
        .read_to_end(&mut header)
        .map_err(|e| open_error(path, e))?;
    if header.is_empty() || header.as_slice() == SQLITE_HEADER {
        Ok(())
    } else {
        Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
        })
    }
}

/// Settings of the writer's connection: WAL, and every commit on disk before it returns.
pub fn configure_writer(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| open_error(path, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(
            path,
            format!("cannot switch to the WAL journal (got {mode})"),
        ));
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(|e| open_error(path, e))
}

/// Brings the file's schema to [`SCHEMA_VERSION`], refusing foreign and newer files.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let pragma = |conn: &Connection, name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(|e| open_error(path, e))
    };
    let found = pragma(conn, "user_version")?;
    let app = pragma(conn, "application_id")?;
    let tables: String = conn
        .query_row(
            "SELECT coalesce(group_concat(name, ', '), '') FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| open_error(path, e))?;
    let foreign = if found == 0 {
        !tables.is_empty()
    } else {
        app != APPLICATION_ID
    };
    if foreign {
        return Err(StoreError::ForeignDatabase {
            path: path.to_path_buf(),
            tables: if tables.is_empty() {
                "none".into()
            } else {
                tables
            },
        });
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let next = version as i64 + 1;
        let tx = conn.transaction().map_err(|e| open_error(path, e))?;
        tx.execute_batch(migration)
            .and_then(|()| {
                tx.execute_batch(&format!(
                    "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {next};"
                ))
            })
            .and_then(|()| tx.commit())
            .map_err(|e| open_error(path, format!("migration to schema {next} failed: {e}")))?;
        tracing::info!(path = %path.display(), version = next, "case store schema migrated");
    }
    Ok(())
}

/// An error opening `path`, with its cause.
pub fn open_error(path: &Path, cause: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        cause: cause.to_string(),
    }
}
