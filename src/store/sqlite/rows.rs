//! Cases and history entries to and from rows: one column per field, states and origins
//! as the words the CLI uses, times as milliseconds since the epoch.

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use sosq::protocol::{Actor, AttachmentInfo, CaseState, HistoryEntry, HistoryKind, Priority};
use sosq::SessionCode;

use crate::broker::{AuditEntry, CaseRecord};

pub use crate::store::columns::{actor_columns, code_column, millis, origin_columns, CASE_COLUMNS};
use crate::store::columns::{actor_from_columns, code_from_column, origin_from_columns, timestamp};

fn bad(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, message.into())
}

/// Reads a code column, refusing numbers that are not session codes.
pub fn code_from(row: &Row<'_>, column: usize) -> rusqlite::Result<SessionCode> {
    code_from_column(row.get(column)?).map_err(|e| bad(column, e))
}

fn state_from(row: &Row<'_>, column: usize) -> rusqlite::Result<CaseState> {
    let text: String = row.get(column)?;
    text.parse().map_err(|e: String| bad(column, e))
}

fn priority_from(row: &Row<'_>, column: usize) -> rusqlite::Result<Priority> {
    let text: String = row.get(column)?;
    text.parse().map_err(|e: String| bad(column, e))
}

/// A case row (history not filled in).
pub fn case_from_row(row: &Row<'_>) -> rusqlite::Result<CaseRecord> {
    let origin: String = row.get(1)?;
    let origin = origin_from_columns(&origin, row.get(2)?).map_err(|e| bad(1, e))?;
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
        last_message: row.get(16)?,
        attachments: crate::store::columns::count_from(row.get(17)?),
    })
}

fn actor_from(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<Actor>> {
    actor_from_columns(row.get(column)?, row.get(column + 1)?).map_err(|e| bad(column, e))
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

/// What staff see of one case's attachments, oldest first.
pub fn attachments_of(
    conn: &Connection,
    code: SessionCode,
) -> rusqlite::Result<Vec<AttachmentInfo>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, name, content_type, size, attached_at FROM attachments
         WHERE code = ?1 ORDER BY id",
    )?;
    let infos = statement
        .query_map(params![code_column(code)], |row| {
            Ok(AttachmentInfo {
                id: u32::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                name: row.get(1)?,
                content_type: row.get(2)?,
                size: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                attached_at: timestamp(row.get(4)?),
            })
        })?
        .collect();
    infos
}

/// At most `len` bytes of one attachment from `offset`, with its size (see
/// `CaseStore::attachment_part`).
pub fn attachment_part(
    conn: &Connection,
    code: SessionCode,
    id: u32,
    offset: u64,
    len: usize,
) -> rusqlite::Result<Option<(u64, Vec<u8>)>> {
    // substr() counts bytes of a BLOB from 1; an offset past the end gives none.
    let start = i64::try_from(offset)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1);
    conn.prepare_cached(
        "SELECT size, substr(data, ?3, ?4) FROM attachments WHERE code = ?1 AND id = ?2",
    )?
    .query_row(
        params![
            code_column(code),
            i64::from(id),
            start,
            i64::try_from(len).unwrap_or(i64::MAX)
        ],
        |row| {
            let size = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
            // An empty BLOB slice comes back as NULL or text-less: none.
            let bytes: Option<Vec<u8>> = row.get(1)?;
            Ok((size, bytes.unwrap_or_default()))
        },
    )
    .optional()
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
