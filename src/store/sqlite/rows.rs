//! Cases and history entries to and from rows: one column per field, states and origins
//! as the words the CLI uses, times as milliseconds since the epoch.

use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};
use sosq::protocol::{
    Actor, ActorRole, CaseOrigin, CaseState, HistoryEntry, HistoryKind, Priority, Timestamp,
};
use sosq::SessionCode;

use crate::broker::{AuditEntry, CaseRecord};

/// The columns of `cases`, in the order [`case_from_row`] reads them.
pub const CASE_COLUMNS: &str = "code, origin, created_by, customer, description, state, \
     created_at, updated_at, expires_at, waiting_since, resume_secret_hash, team, assigned_to, \
     priority, response_due, first_response_at";

/// A stored time.
pub fn millis(at: Timestamp) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

fn timestamp(value: i64) -> Timestamp {
    Timestamp(u64::try_from(value).unwrap_or(0))
}

/// A stored code.
pub fn code_column(code: SessionCode) -> i64 {
    code.number() as i64
}

fn bad(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, message.into())
}

/// Reads a code column, refusing numbers that are not session codes.
pub fn code_from(row: &Row<'_>, column: usize) -> rusqlite::Result<SessionCode> {
    let n: i64 = row.get(column)?;
    u64::try_from(n)
        .ok()
        .and_then(SessionCode::from_number)
        .ok_or_else(|| bad(column, format!("{n} is not a session code")))
}

fn state_from(row: &Row<'_>, column: usize) -> rusqlite::Result<CaseState> {
    let text: String = row.get(column)?;
    text.parse().map_err(|e: String| bad(column, e))
}

fn priority_from(row: &Row<'_>, column: usize) -> rusqlite::Result<Priority> {
    let text: String = row.get(column)?;
    text.parse().map_err(|e: String| bad(column, e))
}

/// The origin as (origin, created_by) columns.
pub fn origin_columns(origin: &CaseOrigin) -> (&'static str, Option<&str>) {
    match origin {
        CaseOrigin::Sos => ("sos", None),
        CaseOrigin::CreatedByExpert(expert) => ("expert", Some(expert.as_str())),
    }
}

/// A case row (history not filled in).
pub fn case_from_row(row: &Row<'_>) -> rusqlite::Result<CaseRecord> {
    let origin: String = row.get(1)?;
    let origin = match (origin.as_str(), row.get::<_, Option<String>>(2)?) {
        ("sos", _) => CaseOrigin::Sos,
        ("expert", Some(expert)) => CaseOrigin::CreatedByExpert(expert),
        (other, _) => return Err(bad(1, format!("unknown case origin {other:?}"))),
    };
    Ok(CaseRecord {
        code: code_from(row, 0)?,
        origin,
        customer: row.get(3)?,
        description: row.get(4)?,
        state: state_from(row, 5)?,
        created_at: timestamp(row.get(6)?),
        updated_at: timestamp(row.get(7)?),
        expires_at: timestamp(row.get(8)?),
        waiting_since: row.get::<_, Option<i64>>(9)?.map(timestamp),
        resume_secret_hash: row.get(10)?,
        group: row.get(11)?,
        assigned_to: row.get(12)?,
        priority: priority_from(row, 13)?,
        response_due: row.get::<_, Option<i64>>(14)?.map(timestamp),
        first_response_at: row.get::<_, Option<i64>>(15)?.map(timestamp),
        history: Vec::new(),
    })
}

/// An actor as (role, name) columns.
pub fn actor_columns(actor: Option<&Actor>) -> (Option<&'static str>, Option<&str>) {
    match actor {
        Some(actor) => (Some(actor.role.as_str()), actor.name.as_deref()),
        None => (None, None),
    }
}

fn actor_from(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<Actor>> {
    let Some(role) = row.get::<_, Option<String>>(column)? else {
        return Ok(None);
    };
    let role: ActorRole = role.parse().map_err(|e: String| bad(column, e))?;
    Ok(Some(Actor {
        role,
        name: row.get(column + 1)?,
    }))
}

/// The history of one case, oldest first.
pub fn history_of(conn: &Connection, code: SessionCode) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut statement = conn.prepare_cached(
        "SELECT at, state, kind, event, actor, actor_name, address FROM history
         WHERE code = ?1 ORDER BY seq",
    )?;
    let entries = statement
        .query_map(params![code_column(code)], |row| {
            Ok(HistoryEntry {
                at: timestamp(row.get(0)?),
                state: state_from(row, 1)?,
                kind: HistoryKind::named(&row.get::<_, String>(2)?),
                event: row.get(3)?,
                actor: actor_from(row, 4)?,
                address: row.get(6)?,
            })
        })?
        .collect();
    entries
}

/// Cases from a query over `cases` selecting [`CASE_COLUMNS`], each with its history.
pub fn cases_with_history(
    conn: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
) -> rusqlite::Result<Vec<CaseRecord>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut records = statement
        .query_map(values, case_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for record in &mut records {
        record.history = history_of(conn, record.code)?;
    }
    Ok(records)
}

/// An audit row.
pub fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: timestamp(row.get(0)?),
        actor: row.get(1)?,
        address: row.get(2)?,
        action: row.get(3)?,
        selector: row.get(4)?,
        count: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
    })
}
