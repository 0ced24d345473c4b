//! Cases, history entries and the audit log to and from PostgreSQL rows, the same columns
//! and words as the SQLite store (`store::sqlite::rows`), and the changes a commit applies.

use sosq::protocol::{CaseState, HistoryEntry, HistoryKind, Priority, Timestamp};
use sosq::SessionCode;
use tokio_postgres::{GenericClient, Row};

use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};
use crate::store::CommitReport;

/// Why a statement or a row failed: the database's words, or a value no sosqd writes.
#[derive(Debug)]
pub struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Failure {
        // The server's own message (with its detail) says more than the wrapper's Display.
        match error.as_db_error() {
            Some(db) => Failure(format!("{}: {}", db.severity(), db.message())),
            None => Failure(error.to_string()),
        }
    }
}

/// The schema version this build writes (`sosq_meta`); a newer database is refused.
const SCHEMA_VERSION: i32 = 1;

/// Makes the tables if missing (in `schema`, made if missing, when given) and checks the
/// version. Errors: the database refuses, or it was written by a newer sosqd.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: Option<&str>,
) -> Result<(), Failure> {
    if let Some(schema) = schema {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Failure(format!("{schema:?} is not a plain schema name")));
        }
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))
            .await?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS sosq_meta (version INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS cases (
                 code BIGINT PRIMARY KEY,
                 origin TEXT NOT NULL,
                 created_by TEXT,
                 customer TEXT NOT NULL,
                 description TEXT NOT NULL,
                 state TEXT NOT NULL,
                 created_at BIGINT NOT NULL,
                 updated_at BIGINT NOT NULL,
                 expires_at BIGINT NOT NULL,
                 waiting_since BIGINT,
                 resume_secret_hash TEXT,
                 history_len BIGINT NOT NULL,
                 team TEXT NOT NULL,
                 assigned_to TEXT,
                 priority TEXT NOT NULL,
                 response_due BIGINT,
                 first_response_at BIGINT
             );
             CREATE INDEX IF NOT EXISTS cases_by_creation ON cases (created_at, code);
             CREATE INDEX IF NOT EXISTS cases_by_state ON cases (state, updated_at);
             CREATE TABLE IF NOT EXISTS history (
                 code BIGINT NOT NULL REFERENCES cases (code) ON DELETE CASCADE,
                 seq BIGINT NOT NULL,
                 at BIGINT NOT NULL,
                 state TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 event TEXT NOT NULL,
                 actor TEXT,
                 actor_name TEXT,
                 address TEXT,
                 PRIMARY KEY (code, seq)
             );
             CREATE TABLE IF NOT EXISTS audit (
                 id BIGSERIAL PRIMARY KEY,
                 at BIGINT NOT NULL,
                 actor TEXT NOT NULL,
                 address TEXT,
                 action TEXT NOT NULL,
                 selector TEXT NOT NULL,
                 count BIGINT NOT NULL
             );",
        )
        .await?;
    let version: Option<i32> = client
        .query_opt("SELECT version FROM sosq_meta", &[])
        .await?
        .map(|row| row.get(0));
    match version {
        None => {
            client
                .execute(
                    "INSERT INTO sosq_meta (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await?;
            Ok(())
        }
        Some(version) if version > SCHEMA_VERSION => Err(Failure(format!(
            "the database holds case store schema {version}, newer than this sosqd's \
             {SCHEMA_VERSION}: run a sosqd at least as new as the one that wrote it"
        ))),
        Some(_) => Ok(()),
    }
}

use crate::store::columns::{
    actor_columns, actor_from_columns, code_from_column, origin_columns, origin_from_columns,
    timestamp,
};
pub use crate::store::columns::{code_column, millis, CASE_COLUMNS};

/// Reads a code column, refusing numbers that are not session codes.
pub fn code_from(row: &Row, column: usize) -> Result<SessionCode, Failure> {
    code_from_column(row.try_get(column)?).map_err(Failure)
}

fn parsed<T: std::str::FromStr<Err = String>>(row: &Row, column: usize) -> Result<T, Failure> {
    let text: String = row.try_get(column)?;
    text.parse().map_err(Failure)
}

/// A case row (history not filled in).
pub fn case_from_row(row: &Row) -> Result<CaseRecord, Failure> {
    let origin: String = row.try_get(1)?;
    let origin = origin_from_columns(&origin, row.try_get(2)?).map_err(Failure)?;
    let time = |column| -> Result<Option<Timestamp>, Failure> {
        Ok(row.try_get::<_, Option<i64>>(column)?.map(timestamp))
    };
    Ok(CaseRecord {
        code: code_from(row, 0)?,
        origin,
        customer: row.try_get(3)?,
        description: row.try_get(4)?,
        state: parsed::<CaseState>(row, 5)?,
        created_at: timestamp(row.try_get(6)?),
        updated_at: timestamp(row.try_get(7)?),
        expires_at: timestamp(row.try_get(8)?),
        waiting_since: time(9)?,
        resume_secret_hash: row.try_get(10)?,
        group: row.try_get(11)?,
        assigned_to: row.try_get(12)?,
        priority: parsed::<Priority>(row, 13)?,
        response_due: time(14)?,
        first_response_at: time(15)?,
        history: Vec::new(),
    })
}

/// The history of one case, oldest first.
pub async fn history_of(
    client: &impl GenericClient,
    code: SessionCode,
) -> Result<Vec<HistoryEntry>, Failure> {
    let found = client
        .query(
            "SELECT at, state, kind, event, actor, actor_name, address FROM history
             WHERE code = $1 ORDER BY seq",
            &[&code_column(code)],
        )
        .await?;
    found
        .iter()
        .map(|row| {
            let actor = actor_from_columns(row.try_get(4)?, row.try_get(5)?).map_err(Failure)?;
            Ok(HistoryEntry {
                at: timestamp(row.try_get(0)?),
                state: parsed::<CaseState>(row, 1)?,
                kind: HistoryKind::named(&row.try_get::<_, String>(2)?),
                event: row.try_get(3)?,
                actor,
                address: row.try_get(6)?,
            })
        })
        .collect()
}

/// Case rows, each with its history.
pub async fn with_history(
    client: &impl GenericClient,
    found: &[Row],
) -> Result<Vec<CaseRecord>, Failure> {
    let mut records = Vec::with_capacity(found.len());
    for row in found {
        let mut record = case_from_row(row)?;
        record.history = history_of(client, record.code).await?;
        records.push(record);
    }
    Ok(records)
}

/// An audit row.
pub fn audit_from_row(row: &Row) -> Result<AuditEntry, Failure> {
    Ok(AuditEntry {
        at: timestamp(row.try_get(0)?),
        actor: row.try_get(1)?,
        address: row.try_get(2)?,
        action: row.try_get(3)?,
        selector: row.try_get(4)?,
        count: u64::try_from(row.try_get::<_, i64>(5)?).unwrap_or(0),
    })
}

/// Codes of the cases a selection matches.
pub async fn selected(
    client: &impl GenericClient,
    selection: &CaseSelection,
) -> Result<Vec<SessionCode>, Failure> {
    let state = selection.state.map(|state| state.as_str());
    let before = selection.created_before.map(millis);
    let found = client
        .query(
            "SELECT code FROM cases
             WHERE ($1::text IS NULL OR state = $1) AND ($2::bigint IS NULL OR created_at < $2)",
            &[&state, &before],
        )
        .await?;
    found.iter().map(|row| code_from(row, 0)).collect()
}

/// Applies one submission's changes in order.
pub async fn apply(client: &impl GenericClient, ops: &[Persist]) -> Result<CommitReport, Failure> {
    let mut report = CommitReport::default();
    for op in ops {
        match op {
            Persist::Save(record) => save(client, record).await?,
            Persist::Delete(codes) => {
                for &code in codes {
                    if delete(client, code).await? {
                        report.deleted.push(code);
                    }
                }
            }
            Persist::DeleteWhere(selection) => {
                for code in selected(client, selection).await? {
                    if delete(client, code).await? {
                        report.deleted.push(code);
                    }
                }
            }
            Persist::Audit(entry) => {
                let count = entry.count + report.deleted.len() as u64;
                client
                    .execute(
                        "INSERT INTO audit (at, actor, address, action, selector, count)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &millis(entry.at),
                            &entry.actor,
                            &entry.address,
                            &entry.action,
                            &entry.selector,
                            &(count as i64),
                        ],
                    )
                    .await?;
            }
        }
    }
    Ok(report)
}

/// Upserts the case row and writes the history entries not stored yet (rewriting the
/// folding last entry of a full history), as the SQLite store does.
async fn save(client: &impl GenericClient, record: &CaseRecord) -> Result<(), Failure> {
    let code = code_column(record.code);
    let stored = client
        .query_opt("SELECT history_len FROM cases WHERE code = $1", &[&code])
        .await?
        .map(|row| row.get::<_, i64>(0))
        .map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let (origin, created_by) = origin_columns(&record.origin);
    let history_len = stored.max(record.history.len()) as i64;
    client
        .execute(
            "INSERT INTO cases (code, origin, created_by, customer, description, state,
                 created_at, updated_at, expires_at, waiting_since, resume_secret_hash,
                 history_len, team, assigned_to, priority, response_due, first_response_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (code) DO UPDATE SET
                 origin = excluded.origin, created_by = excluded.created_by,
                 customer = excluded.customer, description = excluded.description,
                 state = excluded.state, created_at = excluded.created_at,
                 updated_at = excluded.updated_at, expires_at = excluded.expires_at,
                 waiting_since = excluded.waiting_since,
                 resume_secret_hash = excluded.resume_secret_hash,
                 history_len = excluded.history_len, team = excluded.team,
                 assigned_to = excluded.assigned_to, priority = excluded.priority,
                 response_due = excluded.response_due,
                 first_response_at = excluded.first_response_at",
            &[
                &code,
                &origin,
                &created_by,
                &record.customer,
                &record.description,
                &record.state.as_str(),
                &millis(record.created_at),
                &millis(record.updated_at),
                &millis(record.expires_at),
                &record.waiting_since.map(millis),
                &record.resume_secret_hash,
                &history_len,
                &record.group,
                &record.assigned_to,
                &record.priority.as_str(),
                &record.response_due.map(millis),
                &record.first_response_at.map(millis),
            ],
        )
        .await?;
    // A full history's last entry folds every later event into itself (see
    // `CaseRecord::note`), so it is written again whenever it changed.
    let first_new = if record.history.len() >= crate::broker::MAX_HISTORY_ENTRIES {
        stored.min(record.history.len() - 1)
    } else {
        stored
    };
    for (seq, entry) in record.history.iter().enumerate().skip(first_new) {
        let (role, name) = actor_columns(entry.actor.as_ref());
        client
            .execute(
                "INSERT INTO history (code, seq, at, state, kind, event, actor, actor_name, address)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (code, seq) DO UPDATE SET
                     at = excluded.at, state = excluded.state, kind = excluded.kind,
                     event = excluded.event, actor = excluded.actor,
                     actor_name = excluded.actor_name, address = excluded.address",
                &[
                    &code,
                    &(seq as i64),
                    &millis(entry.at),
                    &entry.state.as_str(),
                    &entry.kind.as_str(),
                    &entry.event,
                    &role,
                    &name,
                    &entry.address,
                ],
            )
            .await?;
    }
    Ok(())
}

/// Deletes a case (its history goes with it); whether there was one.
async fn delete(client: &impl GenericClient, code: SessionCode) -> Result<bool, Failure> {
    let removed = client
        .execute("DELETE FROM cases WHERE code = $1", &[&code_column(code)])
        .await?;
    Ok(removed > 0)
}
