//! The durable default [`CaseStore`]: one SQLite file (`data_dir/cases.sqlite3`) in WAL
//! mode with `synchronous = FULL`.
//!
//! - Writes go through one writer thread that owns the write connection and commits in
//!   groups (see [`writer`]); `submit` only queues and returns a ticket.
//! - Reads (`get`, `list`, start-up loads, retention's look-ups) use a separate read-only
//!   connection, so they never wait for the writer's fsync and never block it.
//! - Opening checks the file before anything is written: something that is not SQLite, an
//!   SQLite file of another program, or one from a newer sosqd is refused with the path
//!   and the reason, never silently replaced by an empty store; a copy that lost its WAL
//!   is called out loudly ([`wal_check`]).
//! - [`backup`]: whole copies taken while the daemon serves, and putting one back.

pub mod backup;
mod listing;
mod reports;
mod rows;
mod schema;
mod wal_check;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sosq::protocol::{AttachmentInfo, Timestamp};
use sosq::SessionCode;

use super::reports::{DayOutcomes, ExpertsReport, FirstResponse, QueueSeries, ReportWindow};
use super::{AuditRecord, CaseStore, CommitTicket, StoreError};
use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};
use rows::{
    audit_from_row, case_from_row, cases_with_history, code_column, code_from, history_of, millis,
    CASE_COLUMNS,
};
use schema::open_error;
pub use schema::SCHEMA_VERSION;

/// The case store in one SQLite file. See the module documentation.
pub struct SqliteStore {
    path: PathBuf,
    jobs: Option<mpsc::Sender<writer::Job>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// The file name of the store inside the data dir.
    pub const FILE_NAME: &'static str = "cases.sqlite3";

    /// Opens (or creates) the store at `path`, migrating its schema, and starts the writer.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_limited(path, None)
    }

    /// [`SqliteStore::open`], with the file allowed to grow to at most `max_pages` pages
    /// of 4 KiB: SQLite then fails like on a full disk (tests use it).
    pub fn open_limited(path: &Path, max_pages: Option<u64>) -> Result<SqliteStore, StoreError> {
        schema::check_file(path)?;
        let found = wal_check::Found::inspect(path);
        make_files_private(path)?;
        let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        for warning in found.warnings(&conn, path) {
            tracing::warn!("{warning}");
        }
        ensure_writable(&conn, path)?;
        schema::configure_writer(&conn, path)?;
        schema::migrate(&mut conn, path)?;
        if let Some(pages) = max_pages {
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                .map_err(|e| open_error(path, e))?;
        }
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|reader| {
            reader.busy_timeout(std::time::Duration::from_secs(10))?;
            Ok(reader)
        })
        .map_err(|e| open_error(path, e))?;
        let (jobs, queue) = mpsc::channel();
        let owned = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("case-store-writer".into())
            .spawn(move || writer::run(conn, owned, queue))
            .map_err(|e| open_error(path, e))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            jobs: Some(jobs),
            writer: Some(writer),
            reader: Mutex::new(reader),
        })
    }

    /// Opens the store in `data_dir` (made, owner-only, if missing).
    pub fn open_in(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        crate::fsutil::create_private_dir(data_dir).map_err(|e| open_error(data_dir, e))?;
        SqliteStore::open(&data_dir.join(SqliteStore::FILE_NAME))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn: MutexGuard<'_, Connection> = self
            .reader
            .lock()
            .map_err(|_| StoreError::Backend("case store reader lock poisoned".into()))?;
        query(&conn).map_err(|e| StoreError::Io {
            path: self.path.clone(),
            cause: e.to_string(),
        })
    }
}

/// Every file of the store is owner-only. SQLite gives its `-wal` and `-shm` files the
/// database file's mode (and, run as root, its owner), so the database file is made 0600,
/// owned by the data dir's owner, before SQLite first opens it; files left readable by
/// older versions are tightened. A file that cannot be tightened (a read-only file
/// system, say) is only warned about: opening it says what is really wrong.
fn make_files_private(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        crate::fsutil::open_private(path).map_err(|e| open_error(path, e))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        match crate::fsutil::make_private(&file) {
            Ok(true) => tracing::info!(file = %file.display(), "made owner-only"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot make owner-only")
            }
        }
    }
    Ok(())
}

/// SQLite quietly opens a file it cannot write read-only, and the first commit would fail
/// much later; refuse at start instead, naming the file.
fn ensure_writable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let read_only = || StoreError::Open {
        path: path.to_path_buf(),
        cause: "it is read-only (the file, its directory or its file system cannot be \
                written); sosqd must be able to write its case store"
            .into(),
    };
    if conn.is_readonly(c"main").unwrap_or(true) {
        return Err(read_only());
    }
    // Taking the write lock is what a commit needs first; a read-only file system refuses it.
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly) => read_only(),
            _ => open_error(path, e),
        })
}

impl Drop for SqliteStore {
    /// Lets the writer finish what is queued, then stops it.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl CaseStore for SqliteStore {
    fn submit(&self, ops: Vec<Persist>) -> CommitTicket {
        let (done, ticket) = CommitTicket::pending();
        let job = writer::Job { ops, done };
        if let Some(jobs) = &self.jobs {
            // A send error drops the job and its sender: the ticket reports `Stopped`.
            let _ = jobs.send(job);
        }
        ticket
    }

    fn get(&self, code: SessionCode) -> Result<Option<CaseRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE code = ?1");
            let record = conn
                .prepare_cached(&sql)?
                .query_row(params![code_column(code)], case_from_row)
                .optional()?;
            match record {
                Some(mut record) => {
                    record.history = history_of(conn, code)?;
                    Ok(Some(record))
                }
                None => Ok(None),
            }
        })
    }

    fn attachments(&self, code: SessionCode) -> Result<Vec<AttachmentInfo>, StoreError> {
        self.read(|conn| rows::attachments_of(conn, code))
    }

    fn attachment_part(
        &self,
        code: SessionCode,
        id: u32,
        offset: u64,
        len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.read(|conn| rows::attachment_part(conn, code, id, offset, len))
    }

    fn list(&self, selection: &CaseSelection) -> Result<Vec<CaseRecord>, StoreError> {
        self.read(|conn| listing::list(conn, selection))
    }

    fn page(
        &self,
        selection: &CaseSelection,
        after: Option<(Timestamp, SessionCode)>,
        limit: usize,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        self.read(|conn| listing::page(conn, selection, after, limit))
    }

    fn count(&self, selection: &CaseSelection, cap: u64) -> Result<u64, StoreError> {
        self.read(|conn| listing::count(conn, selection, cap))
    }

    fn codes(&self, selection: &CaseSelection) -> Result<Vec<SessionCode>, StoreError> {
        self.read(|conn| listing::codes(conn, selection))
    }

    fn load_open(&self) -> Result<Vec<CaseRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {CASE_COLUMNS} FROM cases
                 WHERE state IN ('new', 'pending', 'in_progress')"
            );
            cases_with_history(conn, &sql, [])
        })
    }

    fn load_codes(&self, each: &mut dyn FnMut(SessionCode)) -> Result<(), StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare("SELECT code FROM cases")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                each(code_from(row, 0)?);
            }
            Ok(())
        })
    }

    fn finished_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionCode>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT code FROM cases
                 WHERE state IN ('closed', 'expired') AND updated_at < ?1
                 ORDER BY updated_at LIMIT ?2",
            )?;
            let codes = statement
                .query_map(
                    params![millis(before), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| code_from(row, 0),
                )?
                .collect();
            codes
        })
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT at, actor, address, action, selector, count FROM audit ORDER BY id",
            )?;
            let entries = statement.query_map([], audit_from_row)?.collect();
            entries
        })
    }

    fn first_responses(&self, window: &ReportWindow) -> Result<Vec<FirstResponse>, StoreError> {
        self.read(|conn| reports::first_responses(conn, window))
    }

    fn outcomes_by_day(&self, window: &ReportWindow) -> Result<Vec<DayOutcomes>, StoreError> {
        self.read(|conn| reports::outcomes_by_day(conn, window))
    }

    fn queue_length(&self, window: &ReportWindow) -> Result<QueueSeries, StoreError> {
        self.read(|conn| reports::queue_length(conn, window))
    }

    fn cases_per_expert(
        &self,
        window: &ReportWindow,
        top: usize,
    ) -> Result<ExpertsReport, StoreError> {
        self.read(|conn| reports::cases_per_expert(conn, window, top))
    }

    fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(|conn| listing::audit_page(conn, before, limit))
    }
}

#[cfg(test)]
mod tests;
