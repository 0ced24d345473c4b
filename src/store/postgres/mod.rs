//! The PostgreSQL case store: the shared store a cluster of nodes will run on (issue 14).
//! It meets the same contract as the SQLite store (`store::contract` runs against both).
//!
//! The [`CaseStore`] contract is synchronous and its reads are called from the daemon's
//! async tasks, where a client that runs its own runtime (the `postgres` crate) would
//! panic. So one thread of its own owns the connection and a single-threaded tokio runtime
//! for `tokio-postgres`, and everything goes to it over a channel, in order: commits are
//! grouped into one transaction as the SQLite writer does (group commit), and a read waits
//! for its answer on a channel of its own, as a SQLite read waits for its connection.

mod group;
mod ledger;
mod listing;
mod reports;
pub(crate) mod rows;
mod save;

pub use ledger::{Ledger, Queued};
pub use save::QueueWake;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use sosq::protocol::{AttachmentInfo, Timestamp};
use sosq::SessionCode;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

use super::reports::{DayOutcomes, ExpertsReport, FirstResponse, QueueSeries, ReportWindow};
use super::{AuditRecord, CaseStore, CommitReport, CommitTicket, StoreError};
use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};

/// The most submissions one transaction takes, as in the SQLite writer.
const MAX_GROUP: usize = 1024;

/// A read, run on the store's thread.
type Read = Box<dyn FnOnce(&Runtime, &mut Client) + Send>;

/// Where a commit's outcome goes: the submitter's [`CommitTicket`].
type Done = oneshot::Sender<Result<CommitReport, StoreError>>;

/// What the store's thread does next.
enum Work {
    /// Make these changes durable, then resolve the ticket.
    Commit(Vec<Persist>, Done),
    /// Run a read; it sends its own answer.
    Read(Read),
}

/// A case store in a PostgreSQL database.
pub struct PgStore {
    work: Option<mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
    /// Where it is, without the password, for messages.
    shown: String,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db` or `host=... user=... dbname=...`) and
    /// makes the tables if they are missing, in `schema` if given (tests use a schema each),
    /// else in the connection's default.
    ///
    /// Errors: [`StoreError::Database`] if the database cannot be reached or the tables
    /// cannot be made.
    pub fn open(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        PgStore::open_node(url, schema, None)
    }

    /// [`PgStore::open`] for a cluster node: its writes are fenced by `ledger` (see
    /// `ledger.rs`), and it loads no cases at start-up (a node takes cases over one by one
    /// as their parties come to it).
    ///
    /// Errors: as [`PgStore::open`].
    pub fn open_node(
        url: &str,
        schema: Option<&str>,
        ledger: Option<Arc<Ledger>>,
    ) -> Result<PgStore, StoreError> {
        let shown = shown(url);
        let (work, jobs) = mpsc::channel();
        let (opened, open_result) = mpsc::channel();
        let (url, schema, name) = (url.to_string(), schema.map(str::to_string), shown.clone());
        // Connecting runs on the store's own thread too: the caller may be inside a
        // runtime (the daemon's, a test's), where blocking on another one panics.
        let thread = std::thread::Builder::new()
            .name("sosqd-pg-store".into())
            .spawn(move || {
                let connected = (|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| database(&name, e))?;
                    let (client, statements) = runtime
                        .block_on(connect(&url, schema.as_deref()))
                        .map_err(|e| database(&name, e))?;
                    Ok((runtime, client, statements))
                })();
                match connected {
                    Ok((runtime, client, statements)) => {
                        let _ = opened.send(Ok(()));
                        let mut link = Link {
                            runtime,
                            client,
                            statements,
                            url,
                            schema,
                            shown: name,
                            ledger,
                            retry_at: None,
                            broken: false,
                        };
                        serve(&mut link, jobs);
                    }
                    Err(error) => {
                        let _ = opened.send(Err(error));
                    }
                }
            })
            .map_err(|e| database(&shown, e))?;
        let result = open_result.recv().map_err(|_| StoreError::Stopped)?;
        let store = PgStore {
            work: Some(work),
            thread: Some(thread),
            shown,
        };
        result.map(|()| store)
    }

    /// Runs `query` on the store's thread and waits for its answer.
    fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Runtime, &mut Client) -> Result<T, rows::Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(channel) = &self.work else {
            return Err(StoreError::Stopped);
        };
        let (answer, answered) = mpsc::channel();
        let read: Read = Box::new(move |runtime, client| {
            let _ = answer.send(query(runtime, client));
        });
        channel
            .send(Work::Read(read))
            .map_err(|_| StoreError::Stopped)?;
        answered
            .recv()
            .map_err(|_| StoreError::Stopped)?
            .map_err(|e| database(&self.shown, e))
    }
}

impl Drop for PgStore {
    /// Lets the thread finish what is queued, then stops it.
    fn drop(&mut self) {
        self.work.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long one commit or read may take before the connection counts as broken (a
/// partition leaves a query waiting forever otherwise; PostgreSQL's own
/// `statement_timeout` cannot end a query whose answer never arrives).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failed reconnect, how long the store waits before trying again; meanwhile
/// commits fail at once with the reason rather than queueing without bound.
const RECONNECT_BACK_OFF: Duration = Duration::from_millis(500);

thread_local! {
    /// Set on the store's thread when a query ran past [`QUERY_TIMEOUT`].
    static STALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a read's queries on the store's runtime, for at most [`QUERY_TIMEOUT`].
fn within<T>(
    runtime: &Runtime,
    work: impl std::future::Future<Output = Result<T, rows::Failure>>,
) -> Result<T, rows::Failure> {
    runtime.block_on(async {
        tokio::time::timeout(QUERY_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                STALLED.with(|stalled| stalled.set(true));
                Err(rows::Failure::timed_out("reading"))
            })
    })
}

/// The store thread's connection, and what it needs to make a new one.
struct Link {
    runtime: Runtime,
    client: Client,
    /// The save path's statements, prepared on `client`.
    statements: save::Statements,
    url: String,
    schema: Option<String>,
    shown: String,
    ledger: Option<Arc<Ledger>>,
    /// When a broken connection may be tried again.
    retry_at: Option<std::time::Instant>,
    /// Set when a query stalled: the connection is replaced before the next use.
    broken: bool,
}

impl Link {
    /// A usable connection: the current one, or a new one if it broke (at most one try
    /// per [`RECONNECT_BACK_OFF`]). Errors: why there is none.
    fn ready(&mut self) -> Result<(), StoreError> {
        if STALLED.with(|stalled| stalled.replace(false)) {
            self.broken = true;
        }
        if !self.client.is_closed() && !self.broken {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if self.retry_at.is_some_and(|at| now < at) {
            return Err(database(
                &self.shown,
                "the connection to PostgreSQL is lost; reconnecting",
            ));
        }
        let connected = self.runtime.block_on(async {
            tokio::time::timeout(QUERY_TIMEOUT, connect(&self.url, self.schema.as_deref()))
                .await
                .unwrap_or_else(|_| Err(rows::Failure::timed_out("connecting")))
        });
        match connected {
            Ok((client, statements)) => {
                tracing::info!(store = %self.shown, "case store reconnected to PostgreSQL");
                self.client = client;
                self.statements = statements;
                self.retry_at = None;
                self.broken = false;
                Ok(())
            }
            Err(error) => {
                self.retry_at = Some(now + RECONNECT_BACK_OFF);
                tracing::error!(store = %self.shown, %error, "case store cannot reconnect to PostgreSQL");
                Err(database(&self.shown, error))
            }
        }
    }
}

/// Connects (with the statement timeout set), makes or checks the tables, and prepares
/// the save path's statements.
async fn connect(
    url: &str,
    schema: Option<&str>,
) -> Result<(Client, save::Statements), rows::Failure> {
    let (mut client, connection) = client_config(url, QUERY_TIMEOUT)?.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "case store connection to PostgreSQL ended");
        }
    });
    rows::migrate(&mut client, schema).await?;
    let statements = save::Statements::prepare(&client).await?;
    Ok((client, statements))
}

/// The store's thread: commits in groups, reads in turn, until every sender is gone.
fn serve(link: &mut Link, jobs: mpsc::Receiver<Work>) {
    while let Ok(first) = jobs.recv() {
        let mut commits = Vec::new();
        let mut next = Some(first);
        while let Some(work) = next.take() {
            match work {
                Work::Commit(ops, done) => {
                    commits.push((ops, done));
                    if commits.len() < MAX_GROUP {
                        next = jobs.try_recv().ok();
                    }
                }
                Work::Read(read) => {
                    // Reads see every commit submitted before them.
                    group::commit_group(link, std::mem::take(&mut commits));
                    match link.ready() {
                        Ok(()) => read(&link.runtime, &mut link.client),
                        // Dropping the read drops its answer channel: the reader is told
                        // the store stopped; a lost connection is logged by `ready`.
                        Err(_) => drop(read),
                    }
                }
            }
        }
        group::commit_group(link, commits);
    }
}

/// A database failure, naming the store.
fn database(shown: &str, cause: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        store: shown.to_string(),
        cause: cause.to_string(),
    }
}

/// How every sosqd connection to PostgreSQL is set up: `timeout` on connecting and on
/// each statement (server-side), and no notices below warnings (`CREATE ... IF NOT
/// EXISTS` says "already exists" at every start). Errors: `url` does not parse.
pub fn client_config(
    url: &str,
    timeout: Duration,
) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(timeout);
    config.options(format!(
        "-c statement_timeout={} -c client_min_messages=warning",
        timeout.as_millis()
    ));
    Ok(config)
}

/// `url` without a password, for messages and logs.
pub fn shown(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let user = config.get_user().unwrap_or("?");
            let db = config.get_dbname().unwrap_or("?");
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                #[cfg(unix)]
                Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
                None => "localhost".into(),
            };
            match config.get_ports().first() {
                Some(port) if *port != 5432 => format!("postgres://{user}@{host}:{port}/{db}"),
                _ => format!("postgres://{user}@{host}/{db}"),
            }
        }
        Err(_) => "postgres (an unreadable address)".into(),
    }
}

impl CaseStore for PgStore {
    fn submit(&self, ops: Vec<Persist>) -> CommitTicket {
        let (done, ticket) = CommitTicket::pending();
        if let Some(work) = &self.work {
            // A send error drops the job and its sender: the ticket reports `Stopped`.
            let _ = work.send(Work::Commit(ops, done));
        }
        ticket
    }

    fn get(&self, code: SessionCode) -> Result<Option<CaseRecord>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async {
                let sql = format!("SELECT {} FROM cases WHERE code = $1", rows::CASE_COLUMNS);
                let found = client.query_opt(&sql, &[&rows::code_column(code)]).await?;
                match found {
                    Some(row) => {
                        let mut record = rows::case_from_row(&row)?;
                        record.history = rows::history_of(client, code).await?;
                        Ok(Some(record))
                    }
                    None => Ok(None),
                }
            })
        })
    }

    fn attachments(&self, code: SessionCode) -> Result<Vec<AttachmentInfo>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async { rows::attachments_of(client, code).await })
        })
    }

    fn attachment_part(
        &self,
        code: SessionCode,
        id: u32,
        offset: u64,
        len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async {
                rows::attachment_part(client, code, id, offset, len).await
            })
        })
    }

    fn list(&self, selection: &CaseSelection) -> Result<Vec<CaseRecord>, StoreError> {
        let selection = selection.clone();
        self.read(move |runtime, client| {
            within(runtime, async { listing::list(client, &selection).await })
        })
    }

    fn page(
        &self,
        selection: &CaseSelection,
        after: Option<(Timestamp, SessionCode)>,
        limit: usize,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let selection = selection.clone();
        self.read(move |runtime, client| {
            within(runtime, async {
                listing::page(client, &selection, after, limit).await
            })
        })
    }

    fn count(&self, selection: &CaseSelection, cap: u64) -> Result<u64, StoreError> {
        let selection = selection.clone();
        self.read(move |runtime, client| {
            within(runtime, async {
                listing::count(client, &selection, cap).await
            })
        })
    }

    fn codes(&self, selection: &CaseSelection) -> Result<Vec<SessionCode>, StoreError> {
        let selection = selection.clone();
        self.read(move |runtime, client| {
            within(runtime, async { listing::codes(client, &selection).await })
        })
    }

    fn load_open(&self) -> Result<Vec<CaseRecord>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async {
                let sql = format!(
                    "SELECT {} FROM cases WHERE state IN ('new', 'pending', 'in_progress')",
                    rows::CASE_COLUMNS
                );
                let found = client.query(&sql, &[]).await?;
                rows::with_history(client, &found).await
            })
        })
    }

    fn load_codes(&self, each: &mut dyn FnMut(SessionCode)) -> Result<(), StoreError> {
        // The codes come back in one list: the closure cannot cross to the store's thread.
        let codes = self.read(move |runtime, client| {
            within(runtime, async {
                let found = client.query("SELECT code FROM cases", &[]).await?;
                found
                    .iter()
                    .map(|row| rows::code_from(row, 0))
                    .collect::<Result<Vec<_>, _>>()
            })
        })?;
        codes.into_iter().for_each(each);
        Ok(())
    }

    fn finished_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionCode>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async {
                let found = client
                    .query(
                        "SELECT code FROM cases
                         WHERE state IN ('closed', 'expired') AND updated_at < $1
                         ORDER BY updated_at LIMIT $2",
                        &[
                            &rows::millis(before),
                            &i64::try_from(limit).unwrap_or(i64::MAX),
                        ],
                    )
                    .await?;
                found.iter().map(|row| rows::code_from(row, 0)).collect()
            })
        })
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async {
                let found = client
                    .query(
                        "SELECT at, actor, address, action, selector, count FROM audit ORDER BY id",
                        &[],
                    )
                    .await?;
                found.iter().map(rows::audit_from_row).collect()
            })
        })
    }

    fn first_responses(&self, window: &ReportWindow) -> Result<Vec<FirstResponse>, StoreError> {
        let window = *window;
        self.read(move |runtime, client| within(runtime, reports::first_responses(client, &window)))
    }

    fn outcomes_by_day(&self, window: &ReportWindow) -> Result<Vec<DayOutcomes>, StoreError> {
        let window = *window;
        self.read(move |runtime, client| within(runtime, reports::outcomes_by_day(client, &window)))
    }

    fn queue_length(&self, window: &ReportWindow) -> Result<QueueSeries, StoreError> {
        let window = *window;
        self.read(move |runtime, client| within(runtime, reports::queue_length(client, &window)))
    }

    fn cases_per_expert(
        &self,
        window: &ReportWindow,
        top: usize,
    ) -> Result<ExpertsReport, StoreError> {
        let window = *window;
        self.read(move |runtime, client| {
            within(runtime, reports::cases_per_expert(client, &window, top))
        })
    }

    fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |runtime, client| {
            within(runtime, async {
                listing::audit_page(client, before, limit).await
            })
        })
    }
}
