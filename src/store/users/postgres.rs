//! The cluster's user directory, in its PostgreSQL store.
//!
//! The daemon checks users on request paths and every staff connection once a second, from
//! synchronous code inside its tokio runtime. So those reads never touch the database: they
//! answer from an in-memory copy of the whole directory, which a thread of its own reloads
//! with one query every [`REFRESH_EVERY`]. A revoke on any node or by `sosqd user revoke`
//! is therefore seen everywhere within that time (and the daemon's once-a-second check then
//! closes the connections). If the copy grows older than [`STALE_AFTER`] because the
//! database does not answer, every read fails: no staff token is accepted until it answers
//! again, since a revoke made meanwhile could not be seen (fail closed).
//!
//! Writes go to the same thread, each in a transaction, and reload the copy before they
//! return, so a directory reads its own writes. The thread owns the connection and a
//! single-threaded runtime for `tokio-postgres`, as the case store's does (`PgStore`):
//! blocking on a runtime from inside another one panics.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

use super::profiles::Checked;
use super::sql::{self, Write, Written};
use super::{Notice, Profile, Roster, User, UserError};

/// How often the in-memory copy is reloaded.
pub(super) const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// How old the copy may get (the database not answering) before reads fail.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(3);

/// The longest a connection attempt, a reload or a write may take before it counts as
/// failed: a database behind a dead link answers nothing, not even an error.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The longest wait between reconnection attempts while the database is unreachable.
const MOST_BACKOFF: Duration = Duration::from_secs(2);

/// How often the error is logged again while the database stays unreachable.
const REMIND_EVERY: Duration = Duration::from_secs(30);

/// The copy the daemon reads, and when it was loaded.
struct Snapshot {
    roster: Arc<Roster>,
    loaded_at: Instant,
}

/// A write for the thread, and where its outcome goes.
type Job = (Write, mpsc::Sender<Result<Written, UserError>>);

/// A user directory in a PostgreSQL database. See the module documentation.
pub(super) struct PgUsers {
    snapshot: Arc<RwLock<Snapshot>>,
    work: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Where it is, without the password, for messages.
    shown: String,
}

impl PgUsers {
    /// Connects to `url`, makes the tables if missing (in `schema` if given), reads the
    /// directory once, and starts the thread that keeps it fresh.
    ///
    /// Errors: [`UserError::Database`] if any of that fails.
    pub(super) fn open(url: &str, schema: Option<&str>) -> Result<PgUsers, UserError> {
        let shown = crate::store::postgres::shown(url);
        let database = |cause: String| UserError::Database {
            store: shown.clone(),
            cause,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| database(format!("unreadable address: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(ANSWER_WITHIN);
        }
        if config.get_application_name().is_none() {
            config.application_name("sosqd users");
        }
        if config.get_options().is_none() {
            // `CREATE ... IF NOT EXISTS` notices are not news at every start.
            config.options("-c client_min_messages=warning");
        }
        let (work, jobs) = mpsc::channel();
        let (opened, open_result) = mpsc::channel();
        let mut worker = Worker {
            runtime: None,
            config,
            schema: schema.map(str::to_string),
            shown: shown.clone(),
            connection: None,
            backoff: Duration::ZERO,
            retry_at: Instant::now(),
            failing: None,
        };
        let snapshot_slot: Arc<RwLock<Snapshot>> = Arc::new(RwLock::new(Snapshot {
            roster: Arc::new(Roster::default()),
            // Stale until the first read succeeds: nothing is accepted before that.
            loaded_at: Instant::now()
                .checked_sub(STALE_AFTER * 2)
                .unwrap_or_else(Instant::now),
        }));
        let snapshot = snapshot_slot.clone();
        // Connecting runs on the thread too: the caller may be inside a runtime.
        let thread = std::thread::Builder::new()
            .name("sosqd-pg-users".into())
            .spawn(move || {
                let first = worker.start().and_then(|()| worker.reload(&snapshot));
                let ok = first.is_ok();
                let _ = opened.send(first);
                if ok {
                    worker.serve(&snapshot, &jobs);
                }
            })
            .map_err(|e| database(format!("cannot start its thread: {e}")))?;
        let first = open_result
            .recv()
            .map_err(|_| database("its thread stopped while connecting".into()))?;
        if let Err(cause) = first {
            let _ = thread.join();
            return Err(database(cause));
        }
        Ok(PgUsers {
            snapshot: snapshot_slot,
            work: Some(work),
            thread: Some(thread),
            shown,
        })
    }

    /// The database's address without its password.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// Answers from the in-memory copy; an error if it is older than [`STALE_AFTER`].
    pub(super) fn read<T>(&self, answer: impl FnOnce(&Roster) -> T) -> Result<T, UserError> {
        let roster = {
            let snapshot = self
                .snapshot
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let age = snapshot.loaded_at.elapsed();
            if age > STALE_AFTER {
                return Err(UserError::Unavailable {
                    store: self.shown.clone(),
                    seconds: age.as_secs(),
                });
            }
            snapshot.roster.clone()
        };
        Ok(answer(&roster))
    }

    /// Adds a checked new user; see [`super::UserDirectory::add_in_groups`].
    pub(super) fn insert_user(&self, user: User) -> Result<(), UserError> {
        self.write(Write::AddUser(user)).map(drop)
    }

    /// See [`super::UserDirectory::set_groups`].
    pub(super) fn set_groups(&self, name: &str, groups: &[String]) -> Result<User, UserError> {
        match self.write(Write::SetGroups(name.to_string(), groups.to_vec()))? {
            Written::User(user) => Ok(user),
            _ => Err(self.database("the update returned no user".into())),
        }
    }

    /// Saves a checked profile (see [`super::UserDirectory::save_profile`]).
    pub(super) fn save_profile(&self, checked: Checked) -> Result<Profile, UserError> {
        match self.write(Write::SaveProfile(checked))? {
            Written::Profile(profile) => Ok(profile),
            _ => Err(self.database("the save returned no profile".into())),
        }
    }

    /// Removes a profile, returning it.
    pub(super) fn remove_profile(&self, name: &str) -> Result<Profile, UserError> {
        match self.write(Write::RemoveProfile(name.to_string()))? {
            Written::Profile(profile) => Ok(profile),
            _ => Err(self.database("the delete returned no profile".into())),
        }
    }

    /// Adds a checked team name that is not `general`, public or not.
    pub(super) fn insert_group(&self, name: &str, public: bool) -> Result<(), UserError> {
        self.write(Write::AddGroup(name.to_string(), public))
            .map(drop)
    }

    /// See [`super::UserDirectory::set_group_public`].
    pub(super) fn set_public(&self, name: &str, public: bool) -> Result<(), UserError> {
        self.write(Write::SetPublic(name.to_string(), public))
            .map(drop)
    }

    /// Sets or removes the maintenance notice (already checked).
    pub(super) fn set_notice(&self, notice: Option<Notice>) -> Result<(), UserError> {
        self.write(Write::SetNotice(notice)).map(drop)
    }

    /// Removes a user, returning it.
    pub(super) fn remove_user(&self, name: &str) -> Result<User, UserError> {
        match self.write(Write::Revoke(name.to_string()))? {
            Written::User(user) => Ok(user),
            _ => Err(self.database("the delete returned no user".into())),
        }
    }

    /// Runs `write` on the thread and waits for its outcome.
    fn write(&self, write: Write) -> Result<Written, UserError> {
        let stopped = || self.database("the directory's thread has stopped".into());
        let Some(work) = &self.work else {
            return Err(stopped());
        };
        let (done, outcome) = mpsc::channel();
        work.send((write, done)).map_err(|_| stopped())?;
        outcome.recv().map_err(|_| stopped())?
    }

    fn database(&self, cause: String) -> UserError {
        UserError::Database {
            store: self.shown.clone(),
            cause,
        }
    }
}

impl Drop for PgUsers {
    /// Lets the thread finish a write in progress, then stops it.
    fn drop(&mut self) {
        self.work.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's state: its runtime, the connection and how reconnecting goes.
struct Worker {
    runtime: Option<Runtime>,
    config: tokio_postgres::Config,
    schema: Option<String>,
    shown: String,
    /// The client and the task driving its connection (aborted when given up on).
    connection: Option<(Client, tokio::task::JoinHandle<()>)>,
    backoff: Duration,
    retry_at: Instant,
    /// Since when reloads fail, and when that was last logged.
    failing: Option<(Instant, Instant)>,
}

impl Worker {
    /// Makes the runtime and connects.
    fn start(&mut self) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        self.runtime = Some(runtime);
        self.connect()
    }

    /// Reloads every [`REFRESH_EVERY`] and runs writes as they come, until the directory
    /// is dropped.
    fn serve(&mut self, snapshot: &RwLock<Snapshot>, jobs: &mpsc::Receiver<Job>) {
        let mut next_reload = Instant::now() + REFRESH_EVERY;
        loop {
            let wait = next_reload.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok((write, done)) => {
                    let outcome = self.write(write);
                    // Before answering: the writer then reads its own write.
                    if let Err(cause) = self.reload(snapshot) {
                        self.reload_failed(snapshot, cause);
                    }
                    let _ = done.send(outcome);
                }
                Err(RecvTimeoutError::Timeout) => {
                    next_reload = Instant::now() + REFRESH_EVERY;
                    if self.connection.is_none() && Instant::now() < self.retry_at {
                        continue;
                    }
                    if let Err(cause) = self.reload(snapshot) {
                        self.reload_failed(snapshot, cause);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Connects (again) and brings the tables up to date; on failure, waits longer before
    /// the next attempt.
    fn connect(&mut self) -> Result<(), String> {
        self.drop_connection();
        let Some(runtime) = &self.runtime else {
            return Err("no runtime".into());
        };
        let (config, schema) = (&self.config, self.schema.as_deref());
        let connected = runtime.block_on(async {
            let (mut client, connection) =
                within(config.connect(NoTls)).await?.map_err(sql::failure)?;
            let driver = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "user directory connection to PostgreSQL ended");
                }
            });
            match within(sql::migrate(&mut client, schema)).await {
                Ok(Ok(())) => Ok((client, driver)),
                Ok(Err(e)) | Err(e) => {
                    driver.abort();
                    Err(e)
                }
            }
        });
        match connected {
            Ok(connection) => {
                self.connection = Some(connection);
                self.backoff = Duration::ZERO;
                Ok(())
            }
            Err(cause) => {
                self.backoff = (self.backoff * 2).max(REFRESH_EVERY).min(MOST_BACKOFF);
                self.retry_at = Instant::now() + self.backoff;
                Err(cause)
            }
        }
    }

    /// The live client, connecting first if there is none.
    fn client(&mut self) -> Result<(), String> {
        match &self.connection {
            Some((client, _)) if !client.is_closed() => Ok(()),
            _ => self.connect(),
        }
    }

    /// Loads the whole directory into `snapshot`.
    fn reload(&mut self, snapshot: &RwLock<Snapshot>) -> Result<(), String> {
        self.client()?;
        let (Some(runtime), Some((client, _))) = (&self.runtime, &self.connection) else {
            return Err("not connected".into());
        };
        // The copy being replaced: its logos need not be fetched again.
        let known = snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .roster
            .clone();
        let roster = match runtime.block_on(within(sql::roster(client, &known))) {
            Ok(Ok(roster)) => roster,
            Ok(Err(cause)) | Err(cause) => {
                self.drop_connection();
                return Err(cause);
            }
        };
        *snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Snapshot {
            roster: Arc::new(roster),
            loaded_at: Instant::now(),
        };
        if let Some((since, _)) = self.failing.take() {
            tracing::info!(
                store = %self.shown,
                after = ?since.elapsed(),
                "user directory readable again"
            );
        }
        Ok(())
    }

    /// Logs a failed reload: a warning at first, an error once reads fail closed, and a
    /// reminder every [`REMIND_EVERY`] after that.
    fn reload_failed(&mut self, snapshot: &RwLock<Snapshot>, cause: String) {
        let now = Instant::now();
        let age = snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .loaded_at
            .elapsed();
        let stale = age > STALE_AFTER;
        match &mut self.failing {
            None => {
                tracing::warn!(
                    store = %self.shown,
                    %cause,
                    "cannot reload the user directory; retrying (staff tokens are refused if \
                     it stays unreadable for {}s)",
                    STALE_AFTER.as_secs()
                );
                self.failing = Some((now, now));
            }
            Some((since, logged)) => {
                let crossed = stale && logged.duration_since(*since) <= STALE_AFTER;
                if crossed || now.duration_since(*logged) >= REMIND_EVERY {
                    tracing::error!(
                        store = %self.shown,
                        %cause,
                        unreadable_for = ?since.elapsed(),
                        "user directory unreadable: every staff token is refused and staff \
                         connections are closed until PostgreSQL answers"
                    );
                    *logged = now;
                }
            }
        }
    }

    /// Runs one write in its transaction.
    fn write(&mut self, write: Write) -> Result<Written, UserError> {
        let shown = self.shown.clone();
        let database = |cause: String| UserError::Database {
            store: shown.clone(),
            cause,
        };
        self.client().map_err(database)?;
        let (Some(runtime), Some((client, _))) = (&self.runtime, &mut self.connection) else {
            return Err(database("not connected".into()));
        };
        match runtime.block_on(within(sql::apply(client, write))) {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(cause)) => Err(database(cause)),
            Err(cause) => {
                self.drop_connection();
                Err(database(format!(
                    "{cause}; the change may or may not have been made: check with \
                     `sosqd user list`, `sosqd group list` or `sosqd profile list`"
                )))
            }
        }
    }

    /// Gives up on the connection (a dead link would otherwise keep its task forever).
    fn drop_connection(&mut self) {
        if let Some((_, driver)) = self.connection.take() {
            driver.abort();
        }
    }
}

/// `work`, or an error if it takes longer than [`ANSWER_WITHIN`].
async fn within<T>(work: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(ANSWER_WITHIN, work)
        .await
        .map_err(|_| format!("no answer within {}s", ANSWER_WITHIN.as_secs()))
}
