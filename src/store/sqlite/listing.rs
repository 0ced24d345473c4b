//! The SQLite store's filtered reads: pages, counts and codes of the cases a selection
//! matches ([`Condition`] writes the SQL), and pages of the audit log.

use rusqlite::{params, params_from_iter, types, Connection};
use sosq::protocol::Timestamp;
use sosq::SessionCode;

use super::rows::{
    audit_from_row, case_from_row, cases_with_history, code_column, code_from, millis, CASE_COLUMNS,
};
use crate::broker::{CaseRecord, CaseSelection};
use crate::store::{AuditRecord, Condition, Dialect, SqlValue};

/// The values of a condition as SQLite takes them.
fn values(condition: &Condition) -> impl Iterator<Item = types::Value> + '_ {
    condition.values.iter().map(|value| match value {
        SqlValue::Text(text) => types::Value::Text(text.clone()),
        SqlValue::Int(n) => types::Value::Integer(*n),
    })
}

/// A count or limit as SQLite's integer.
fn bound(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Every case the selection matches, with histories, oldest first.
pub fn list(conn: &Connection, selection: &CaseSelection) -> rusqlite::Result<Vec<CaseRecord>> {
    let condition = Condition::of(selection, Dialect::Sqlite);
    let sql = format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE {} ORDER BY created_at, code",
        condition.sql
    );
    cases_with_history(conn, &sql, params_from_iter(values(&condition)))
}

/// One page after `after`, in creation order. The row-value comparison walks the creation
/// index (or a filter index's creation part) from the cursor on, so a page deep into a
/// million cases costs the page, not the cases before it.
pub fn page(
    conn: &Connection,
    selection: &CaseSelection,
    after: Option<(Timestamp, SessionCode)>,
    limit: usize,
) -> rusqlite::Result<Vec<CaseRecord>> {
    let mut condition = Condition::of(selection, Dialect::Sqlite);
    let cursor = match after {
        Some((at, code)) => {
            let at = condition.bind(SqlValue::Int(millis(at)));
            let code = condition.bind(SqlValue::Int(code_column(code)));
            format!("AND (created_at, code) > ({at}, {code})")
        }
        None => String::new(),
    };
    let limit = condition.bind(SqlValue::Int(bound(limit as u64)));
    let sql = format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE {} {cursor}
         ORDER BY created_at, code LIMIT {limit}",
        condition.sql
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let records = statement
        .query_map(params_from_iter(values(&condition)), case_from_row)?
        .collect();
    records
}

/// How many cases match, reading no more than `cap` of them.
pub fn count(conn: &Connection, selection: &CaseSelection, cap: u64) -> rusqlite::Result<u64> {
    let mut condition = Condition::of(selection, Dialect::Sqlite);
    let cap = condition.bind(SqlValue::Int(bound(cap)));
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM cases WHERE {} LIMIT {cap}) AS matched",
        condition.sql
    );
    let found: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(values(&condition)), |row| row.get(0))?;
    Ok(u64::try_from(found).unwrap_or(0))
}

/// Codes of the cases a selection matches.
pub fn codes(conn: &Connection, selection: &CaseSelection) -> rusqlite::Result<Vec<SessionCode>> {
    let condition = Condition::of(selection, Dialect::Sqlite);
    let sql = format!("SELECT code FROM cases WHERE {}", condition.sql);
    let mut statement = conn.prepare_cached(&sql)?;
    let codes = statement
        .query_map(params_from_iter(values(&condition)), |row| {
            code_from(row, 0)
        })?
        .collect();
    codes
}

/// Audit entries with ids below `before`, newest first. `id` is the table's rowid: audit
/// rows are never deleted, so it only grows.
pub fn audit_page(
    conn: &Connection,
    before: Option<u64>,
    limit: usize,
) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT at, actor, address, action, selector, count, id FROM audit
         WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let before = before.map_or(i64::MAX, bound);
    let entries = statement
        .query_map(params![before, bound(limit as u64)], |row| {
            Ok(AuditRecord {
                entry: audit_from_row(row)?,
                id: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
            })
        })?
        .collect();
    entries
}
