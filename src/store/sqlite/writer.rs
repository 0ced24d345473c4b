//! The writer thread: the one connection that writes. It takes every batch queued since
//! its last commit, applies them in submission order inside one transaction (each batch in
//! its own savepoint, so a failing batch does not take the others down), commits once
//! (WAL, `synchronous = FULL`: on disk when it returns) and then resolves every ticket.
//! A burst of a thousand submissions costs a handful of fsyncs, not a thousand.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::rows::{actor_columns, code_column, millis, origin_columns};
use crate::broker::{AuditEntry, CaseRecord, Persist};
use crate::store::{CommitReport, StoreError};

/// The most batches committed in one transaction; bounds the latency of the first.
const MAX_GROUP: usize = 4_096;

/// One submission: its changes and where to report the outcome.
pub struct Job {
    /// The changes, in order.
    pub ops: Vec<Persist>,
    /// Resolved after the commit.
    pub done: oneshot::Sender<Result<CommitReport, StoreError>>,
}

/// The writer's nice value. Its work comes in bursts (a commit's pages and fsync, about a
/// millisecond of CPU every few) that would otherwise delay the connection threads
/// sharing its core; what waits for it already waits for a disk. README "Scale" has
/// the trials: a small gain in pairing p99, intake unchanged.
const WRITER_NICENESS: i32 = 10;

/// Runs until every sender is gone.
pub fn run(mut conn: Connection, path: PathBuf, jobs: mpsc::Receiver<Job>) {
    yield_to_connections();
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &path, group);
    }
    checkpoint_on_stop(&conn, &path);
}

/// Copies every commit from the WAL into `cases.sqlite3` and empties the WAL, so a
/// stopped daemon's store is whole in its one file: a `cp` of it after `systemctl stop`
/// is a complete copy (README "Backups"). Failing leaves the WAL, which the next start
/// reads as usual, so it is only logged.
fn checkpoint_on_stop(conn: &Connection, path: &Path) {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(0) => tracing::debug!(path = %path.display(), "case store checkpointed at stop"),
        Ok(_) => tracing::warn!(
            path = %path.display(),
            "case store not fully checkpointed at stop (a reader held it); its -wal file stays beside it"
        ),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "case store checkpoint at stop failed; its -wal file stays beside it")
        }
    }
}

/// Lowers this thread's priority to [`WRITER_NICENESS`] (Linux only; raising a nice value
/// needs no privilege). Failing leaves it at the daemon's own, which is merely slower.
fn yield_to_connections() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on this thread's own id; no memory is shared with them.
        let failed = unsafe {
            let me = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, me, WRITER_NICENESS) != 0
        };
        if failed {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the store writer's priority");
        }
    }
}

fn io_error(path: &Path, cause: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        cause: cause.to_string(),
    }
}

/// Applies a group of jobs in one transaction and tells each how it went.
fn commit_group(conn: &mut Connection, path: &Path, group: Vec<Job>) {
    let committed = (|| -> Result<Vec<Result<CommitReport, StoreError>>, StoreError> {
        let io = |e: rusqlite::Error| io_error(path, e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(io)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for job in &group {
            // Each job in its own savepoint, through cached statements: rusqlite's own
            // savepoints parse their SQL anew each time, twice per job.
            run_cached(&tx, "SAVEPOINT job").map_err(io)?;
            match apply(&tx, &job.ops) {
                Ok(report) => {
                    run_cached(&tx, "RELEASE job").map_err(io)?;
                    outcomes.push(Ok(report));
                }
                // On a full disk or an I/O error SQLite may roll back the whole transaction:
                // then every batch of the group is lost and all must hear it.
                Err(e) if tx.is_autocommit() => return Err(io(e)),
                Err(e) => {
                    // Roll this job back and keep the others.
                    run_cached(&tx, "ROLLBACK TO job").map_err(io)?;
                    run_cached(&tx, "RELEASE job").map_err(io)?;
                    tracing::error!(path = %path.display(), error = %e, "a case store batch failed");
                    outcomes.push(Err(io(e)));
                }
            }
        }
        tx.commit().map_err(io)?;
        Ok(outcomes)
    })();
    match committed {
        Ok(outcomes) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.done.send(outcome);
            }
        }
        Err(error) => {
            tracing::error!(error = %error, "case store commit failed");
            for job in group {
                let _ = job.done.send(Err(error.clone()));
            }
        }
    }
}

/// Runs one statement without parameters or rows, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Applies one submission's changes in order.
fn apply(conn: &Connection, ops: &[Persist]) -> rusqlite::Result<CommitReport> {
    let mut report = CommitReport::default();
    for op in ops {
        match op {
            Persist::Save(record) => save(conn, record)?,
            Persist::Delete(codes) => {
                for &code in codes {
                    if delete(conn, code)? {
                        report.deleted.push(code);
                    }
                }
            }
            Persist::DeleteWhere(selection) => {
                for code in super::listing::codes(conn, selection)? {
                    if delete(conn, code)? {
                        report.deleted.push(code);
                    }
                }
            }
            Persist::Note { code, entry } => note(conn, *code, entry)?,
            Persist::Attach { code, attachment } => attach(conn, *code, attachment)?,
            Persist::Audit(entry) => audit(conn, entry, entry.count + report.deleted.len() as u64)?,
        }
    }
    Ok(report)
}

/// Upserts the case row and appends the history entries not stored yet (rewriting the
/// folding last entry of a full history).
fn save(conn: &Connection, record: &CaseRecord) -> rusqlite::Result<()> {
    let code = code_column(record.code);
    let stored: usize = conn
        .prepare_cached("SELECT history_len FROM cases WHERE code = ?1")?
        .query_row(params![code], |row| row.get::<_, i64>(0))
        .optional()?
        .map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let (origin, created_by) = origin_columns(&record.origin);
    let history_len = stored.max(record.history.len());
    conn.prepare_cached(
        "INSERT INTO cases (code, origin, created_by, customer, description, state, created_at,
             updated_at, expires_at, waiting_since, resume_secret_hash, history_len, team,
             assigned_to, priority, response_due, first_response_at, last_message, attachments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19)
         ON CONFLICT (code) DO UPDATE SET
             last_message = excluded.last_message, attachments = excluded.attachments,
             team = excluded.team, assigned_to = excluded.assigned_to,
             priority = excluded.priority, response_due = excluded.response_due,
             first_response_at = excluded.first_response_at,
             origin = excluded.origin, created_by = excluded.created_by,
             customer = excluded.customer, description = excluded.description,
             state = excluded.state, created_at = excluded.created_at,
             updated_at = excluded.updated_at, expires_at = excluded.expires_at,
             waiting_since = excluded.waiting_since,
             resume_secret_hash = excluded.resume_secret_hash,
             history_len = excluded.history_len",
    )?
    .execute(params![
        code,
        origin,
        created_by,
        record.customer,
        record.description,
        record.state.as_str(),
        millis(record.created_at),
        millis(record.updated_at),
        millis(record.expires_at),
        record.waiting_since.map(millis),
        record.resume_secret_hash,
        history_len as i64,
        record.group,
        record.assigned_to,
        record.priority.as_str(),
        record.response_due.map(millis),
        record.first_response_at.map(millis),
        record.last_message,
        i64::from(record.attachments),
    ])?;
    // A full history's last entry folds every later event into itself (see
    // `CaseRecord::note`), so it is written again whenever it changed.
    let first_new = if record.history.len() >= crate::broker::MAX_HISTORY_ENTRIES {
        stored.min(record.history.len() - 1)
    } else {
        stored
    };
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO history
             (code, seq, at, state, kind, event, actor, actor_name, address)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (seq, entry) in record.history.iter().enumerate().skip(first_new) {
        let (role, name) = actor_columns(entry.actor.as_ref());
        insert.execute(params![
            code,
            seq as i64,
            millis(entry.at),
            entry.state.as_str(),
            entry.kind.as_str(),
            entry.event,
            role,
            name,
            entry.address,
        ])?;
    }
    Ok(())
}

/// Appends a staff note to a stored case's history, after whatever it holds now; nothing
/// when the case is gone or its history is full (see `Persist::Note`).
fn note(
    conn: &Connection,
    code: sosq::SessionCode,
    entry: &sosq::protocol::HistoryEntry,
) -> rusqlite::Result<()> {
    let code = code_column(code);
    let (role, name) = actor_columns(entry.actor.as_ref());
    let added = conn
        .prepare_cached(
            "INSERT INTO history (code, seq, at, state, kind, event, actor, actor_name, address)
             SELECT code, history_len, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM cases
             WHERE code = ?1 AND history_len < ?9",
        )?
        .execute(params![
            code,
            millis(entry.at),
            entry.state.as_str(),
            entry.kind.as_str(),
            entry.event,
            role,
            name,
            entry.address,
            crate::broker::MAX_HISTORY_ENTRIES as i64,
        ])?;
    if added > 0 {
        conn.prepare_cached("UPDATE cases SET history_len = history_len + 1 WHERE code = ?1")?
            .execute(params![code])?;
    }
    Ok(())
}

/// Keeps an attachment of a stored case; nothing when the case is gone (see
/// `Persist::Attach`).
fn attach(
    conn: &Connection,
    code: sosq::SessionCode,
    attachment: &crate::broker::StoredAttachment,
) -> rusqlite::Result<()> {
    let info = &attachment.info;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO attachments
             (code, id, name, content_type, size, attached_at, data)
         SELECT code, ?2, ?3, ?4, ?5, ?6, ?7 FROM cases WHERE code = ?1",
    )?
    .execute(params![
        code_column(code),
        i64::from(info.id),
        info.name,
        info.content_type,
        i64::try_from(info.size).unwrap_or(i64::MAX),
        millis(info.attached_at),
        attachment.bytes.as_slice(),
    ])?;
    Ok(())
}

/// Deletes a case, its history and its attachments; whether there was one.
fn delete(conn: &Connection, code: sosq::SessionCode) -> rusqlite::Result<bool> {
    let code = code_column(code);
    conn.prepare_cached("DELETE FROM history WHERE code = ?1")?
        .execute(params![code])?;
    conn.prepare_cached("DELETE FROM attachments WHERE code = ?1")?
        .execute(params![code])?;
    let removed = conn
        .prepare_cached("DELETE FROM cases WHERE code = ?1")?
        .execute(params![code])?;
    Ok(removed > 0)
}

fn audit(conn: &Connection, entry: &AuditEntry, count: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, address, action, selector, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        millis(entry.at),
        entry.actor,
        entry.address,
        entry.action,
        entry.selector,
        count as i64,
    ])?;
    Ok(())
}
