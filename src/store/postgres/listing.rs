//! The PostgreSQL store's filtered reads: pages, counts and codes of the cases a selection
//! matches ([`Condition`] writes the SQL, as for SQLite), and pages of the audit log.

use sosq::protocol::Timestamp;
use sosq::SessionCode;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use super::rows::{self, Failure, CASE_COLUMNS};
use crate::broker::{CaseRecord, CaseSelection};
use crate::store::{AuditRecord, Condition, Dialect, SqlValue};

/// The values of a condition as `tokio-postgres` binds them.
fn values(condition: &Condition) -> Vec<Box<dyn ToSql + Sync + Send>> {
    condition
        .values
        .iter()
        .map(|value| -> Box<dyn ToSql + Sync + Send> {
            match value {
                SqlValue::Text(text) => Box::new(text.clone()),
                SqlValue::Int(n) => Box::new(*n),
            }
        })
        .collect()
}

/// Runs `sql` with the condition's values.
async fn query(
    client: &impl GenericClient,
    sql: &str,
    condition: &Condition,
) -> Result<Vec<tokio_postgres::Row>, Failure> {
    let owned = values(condition);
    let bound: Vec<&(dyn ToSql + Sync)> = owned
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    Ok(client.query(sql, &bound).await?)
}

/// A count or limit as PostgreSQL's bigint.
fn bound(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Every case the selection matches, with histories, oldest first.
pub async fn list(
    client: &impl GenericClient,
    selection: &CaseSelection,
) -> Result<Vec<CaseRecord>, Failure> {
    let condition = Condition::of(selection, Dialect::Postgres);
    let sql = format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE {} ORDER BY created_at, code",
        condition.sql
    );
    let found = query(client, &sql, &condition).await?;
    rows::with_history(client, &found).await
}

/// One page after `after`, in creation order; the row-value comparison walks the
/// creation index (or a filter index's creation part) from the cursor on.
pub async fn page(
    client: &impl GenericClient,
    selection: &CaseSelection,
    after: Option<(Timestamp, SessionCode)>,
    limit: usize,
) -> Result<Vec<CaseRecord>, Failure> {
    let mut condition = Condition::of(selection, Dialect::Postgres);
    let cursor = match after {
        Some((at, code)) => {
            let at = condition.bind(SqlValue::Int(rows::millis(at)));
            let code = condition.bind(SqlValue::Int(rows::code_column(code)));
            format!("AND (created_at, code) > ({at}::bigint, {code}::bigint)")
        }
        None => String::new(),
    };
    let limit = condition.bind(SqlValue::Int(bound(limit as u64)));
    let sql = format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE {} {cursor}
         ORDER BY created_at, code LIMIT {limit}",
        condition.sql
    );
    let found = query(client, &sql, &condition).await?;
    found.iter().map(rows::case_from_row).collect()
}

/// How many cases match, reading no more than `cap` of them.
pub async fn count(
    client: &impl GenericClient,
    selection: &CaseSelection,
    cap: u64,
) -> Result<u64, Failure> {
    let mut condition = Condition::of(selection, Dialect::Postgres);
    let cap = condition.bind(SqlValue::Int(bound(cap)));
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM cases WHERE {} LIMIT {cap}) AS matched",
        condition.sql
    );
    let found = query(client, &sql, &condition).await?;
    let n: i64 = match found.first() {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Codes of the cases a selection matches.
pub async fn codes(
    client: &impl GenericClient,
    selection: &CaseSelection,
) -> Result<Vec<SessionCode>, Failure> {
    let condition = Condition::of(selection, Dialect::Postgres);
    let sql = format!("SELECT code FROM cases WHERE {}", condition.sql);
    let found = query(client, &sql, &condition).await?;
    found.iter().map(|row| rows::code_from(row, 0)).collect()
}

/// Audit entries with ids below `before`, newest first. Ids come from a sequence: two
/// nodes' entries may commit out of id order, so an entry can appear below a page an
/// admin already read (never twice, never lost to a later page read after both commit).
pub async fn audit_page(
    client: &impl GenericClient,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditRecord>, Failure> {
    let before = before.map_or(i64::MAX, bound);
    let found = client
        .query(
            "SELECT at, actor, address, action, selector, count, id FROM audit
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
            &[&before, &bound(limit as u64)],
        )
        .await?;
    found
        .iter()
        .map(|row| {
            Ok(AuditRecord {
                entry: rows::audit_from_row(row)?,
                id: u64::try_from(row.try_get::<_, i64>(6)?).unwrap_or(0),
            })
        })
        .collect()
}
