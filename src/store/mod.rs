//! Where cases and users are kept.
//!
//! [`CaseStore`] is the contract every case backend meets: changes are submitted in the
//! order the broker made them and acknowledged through a [`CommitTicket`] once durable, so
//! the shell can hold back a reply until then. [`SqliteStore`] is the durable default (one
//! file, group commit); [`MemoryStore`] keeps cases in memory for tests. Both pass the same
//! contract suite (`contract`), and so does [`PgStore`], the cluster's PostgreSQL store;
//! the two SQL stores lay cases out alike (`columns`).

mod columns;
#[cfg(test)]
mod contract;
#[cfg(test)]
mod contract_attachments;
#[cfg(test)]
mod contract_filters;
mod filter_sql;
mod memory;
pub(crate) mod postgres;
pub mod reports;
mod sqlite;
pub mod users;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use sosq::protocol::{AttachmentInfo, Timestamp};
use sosq::SessionCode;
use tokio::sync::oneshot;

use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};
use reports::{DayOutcomes, ExpertsReport, FirstResponse, QueueSeries, ReportWindow};

pub use filter_sql::{Condition, Dialect, Value as SqlValue};
pub use memory::MemoryStore;
pub use postgres::{Ledger, PgStore, Queued};
pub use sqlite::backup::{backup, restore, BackupReport, RestoreReport};
pub use sqlite::{SqliteStore, SCHEMA_VERSION};

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not do the work.
    #[error("case store failed: {0}")]
    Backend(String),
    /// The backend is gone (shut down) before acknowledging.
    #[error("case store stopped before the change was committed")]
    Stopped,
    /// The store file could not be opened or set up (missing permissions, read-only
    /// directory, corrupt file...).
    #[error("cannot open case store {path}: {cause}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why, as the system or SQLite said it.
        cause: String,
    },
    /// The file exists but is not an SQLite database; it is left untouched.
    #[error("{path} is not a sosqd case store (not an SQLite database); refusing to start over it: move it away or use another --data-dir")]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is an SQLite database, but another program's.
    #[error("{path} is an SQLite database of another program (it has tables {tables}); refusing to start over it: move it away or use another --data-dir")]
    ForeignDatabase {
        /// The file.
        path: PathBuf,
        /// The tables found, comma-separated.
        tables: String,
    },
    /// The file was written by a newer sosqd.
    #[error("case store {path} has schema version {found}, newer than this sosqd knows ({known}); run the newer sosqd or restore a backup")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// There is no case store (or backup file) where one was named; nothing was created.
    #[error("no case store at {path} (is --data-dir or --config right?)")]
    NoStore {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The folder a backup was to be written into does not exist; nothing was written.
    #[error("cannot write the backup {file}: the folder {folder} does not exist (make it first, e.g. `install -d -m 0700 {folder}`)")]
    NoBackupFolder {
        /// The backup file asked for.
        file: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// The file exists but is not a sosqd case store that can be backed up or restored.
    #[error("{path} is not a sosqd case store: {reason}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A daemon (or another program) has the store open, so it cannot be replaced.
    #[error("{path} is in use by {holder}: stop it first (`systemctl stop sosqd`), restore, then start it again")]
    InUse {
        /// The store.
        path: PathBuf,
        /// Who: "a running sosqd (pid N)" from the data dir's lock, or what SQLite's own
        /// lock says.
        holder: String,
    },
    /// Reading or writing the file failed (disk full, I/O error, corruption).
    #[error("case store {path} failed: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why, as the system or SQLite said it.
        cause: String,
    },
    /// The PostgreSQL store failed: unreachable, refused, or a value no sosqd writes.
    #[error("case store {store} failed: {cause}")]
    Database {
        /// Where the store is, without its password.
        store: String,
        /// Why, as PostgreSQL (or the row check) said it.
        cause: String,
    },
}

/// What a commit reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Codes of the cases the deletes in the batch removed.
    pub deleted: Vec<SessionCode>,
}

/// The cap a caller passes to [`CaseStore::count`] unless it has a reason for another:
/// the web console's admin table shows "100,000+" past it. 100,000 is about what one bulk
/// delete by filter removes in bounded time (`DELETE_STEP` steps of 500 in
/// `server::dispatch`; 100,000 cases took the store writer about 18 s), and a count that
/// reaches it costs tens of milliseconds, not seconds: with 1,000,000 cases stored,
/// `benches/cases_filter.rs` counted 100,000 closed cases in about 7 ms on SQLite (44
/// times the first unfiltered page) and 29 ms on PostgreSQL (99 times).
pub const DEFAULT_COUNT_CAP: u64 = 100_000;

/// One audit entry with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its id: increasing in the order entries were written (the next page's cursor).
    pub id: u64,
    /// The entry.
    pub entry: AuditEntry,
}

/// Resolves once a submitted batch is durable.
pub struct CommitTicket(oneshot::Receiver<Result<CommitReport, StoreError>>);

impl CommitTicket {
    /// A ticket with its outcome already known (for stores that commit synchronously).
    pub fn ready(outcome: Result<CommitReport, StoreError>) -> CommitTicket {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(outcome);
        CommitTicket(rx)
    }

    /// A ticket and the sender its store resolves it with.
    pub fn pending() -> (
        oneshot::Sender<Result<CommitReport, StoreError>>,
        CommitTicket,
    ) {
        let (tx, rx) = oneshot::channel();
        (tx, CommitTicket(rx))
    }
}

impl Future for CommitTicket {
    type Output = Result<CommitReport, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(StoreError::Stopped)))
    }
}

/// The contract of a case backend.
pub trait CaseStore: Send + Sync + 'static {
    /// Queues `ops`, applied in submission order; never blocks on I/O. The ticket resolves
    /// once they are durable.
    fn submit(&self, ops: Vec<Persist>) -> CommitTicket;

    /// The stored case with this code.
    fn get(&self, code: SessionCode) -> Result<Option<CaseRecord>, StoreError>;

    /// What staff see of the attachments of case `code`, oldest first: none when it has
    /// none or is not stored.
    fn attachments(&self, code: SessionCode) -> Result<Vec<AttachmentInfo>, StoreError>;

    /// At most `len` bytes of attachment `id` of case `code`, from `offset` (none at or
    /// past its end), with the attachment's whole size; `None` when there is no such
    /// attachment. Reads only the bytes asked for.
    fn attachment_part(
        &self,
        code: SessionCode,
        id: u32,
        offset: u64,
        len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Every stored case the selection matches, oldest first (by creation, then code),
    /// with histories. Its size grows with the store: for tests and tools, never for a
    /// reply (the daemon lists with [`CaseStore::page`]).
    fn list(&self, selection: &CaseSelection) -> Result<Vec<CaseRecord>, StoreError>;

    /// At most `limit` stored cases the selection matches, in creation order (then code),
    /// starting right after `after` (a case's creation time and code); their histories are
    /// left empty. One page of `sosq cases`: it costs the page, not the store (divided by
    /// how selective the fields no index serves are; a text filter scans the filtered
    /// range until the page is full).
    fn page(
        &self,
        selection: &CaseSelection,
        after: Option<(Timestamp, SessionCode)>,
        limit: usize,
    ) -> Result<Vec<CaseRecord>, StoreError>;

    /// How many stored cases the selection matches, counting no further than `cap`: the
    /// answer is `min(matches, cap)`, so a count never reads more than `cap` index entries
    /// or rows (see [`DEFAULT_COUNT_CAP`]). A text filter is checked on each row the other
    /// fields leave, so its count may read up to that whole range.
    fn count(&self, selection: &CaseSelection, cap: u64) -> Result<u64, StoreError>;

    /// The codes of the stored cases the selection matches (a bulk delete's work list).
    fn codes(&self, selection: &CaseSelection) -> Result<Vec<SessionCode>, StoreError> {
        Ok(self
            .list(selection)?
            .into_iter()
            .map(|record| record.code)
            .collect())
    }

    /// Every open case (new, pending, in progress) with its history, for start-up.
    fn load_open(&self) -> Result<Vec<CaseRecord>, StoreError>;

    /// Calls `each` with the code of every stored case, open or not, so start-up can keep
    /// them from being handed out again without loading the closed cases.
    fn load_codes(&self, each: &mut dyn FnMut(SessionCode)) -> Result<(), StoreError>;

    /// Up to `limit` codes of closed or expired cases last changed before `before`, the
    /// oldest first: what retention deletes next.
    fn finished_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionCode>, StoreError>;

    /// The audit log, oldest first. It grows without bound: for tests and tools; a reply
    /// pages with [`CaseStore::audit_page`].
    fn audit_log(&self) -> Result<Vec<AuditEntry>, StoreError>;

    /// First responses to the cases with a response target created in `window`: one row
    /// per priority, most urgent first (see [`reports::FirstResponse`]; times in ms).
    fn first_responses(&self, window: &ReportWindow) -> Result<Vec<FirstResponse>, StoreError>;

    /// Cases closed, expired and deleted (by admins) on each UTC day `window` touches,
    /// counting only what happened inside the window; oldest day first.
    fn outcomes_by_day(&self, window: &ReportWindow) -> Result<Vec<DayOutcomes>, StoreError>;

    /// How many cases waited for a first response at each point of `window` (every
    /// [`ReportWindow::queue_step_ms`] from its start), computed from the cases that can
    /// have waited in it, never by loading them.
    fn queue_length(&self, window: &ReportWindow) -> Result<QueueSeries, StoreError>;

    /// How many of the cases created in `window` each expert sat down in: the `top`
    /// busiest, and the rest summed.
    fn cases_per_expert(
        &self,
        window: &ReportWindow,
        top: usize,
    ) -> Result<ExpertsReport, StoreError>;

    /// At most `limit` audit entries, newest first (what an admin looks for first), with
    /// ids below `before` (the last id of the previous page; none: from the newest). Pages
    /// by id, so each costs the page however long the log is.
    fn audit_page(&self, before: Option<u64>, limit: usize)
        -> Result<Vec<AuditRecord>, StoreError>;
}
