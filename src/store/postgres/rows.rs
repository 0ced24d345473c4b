//! Cases, history entries and the audit log to and from PostgreSQL rows, the same columns
//! and words as the SQLite store (`store::sqlite::rows`), and the changes a commit applies.

use sosq::protocol::{CaseState, HistoryEntry, HistoryKind, Priority, Timestamp};
use sosq::SessionCode;
use tokio_postgres::{GenericClient, Row};

use super::ledger::Ledger;
use crate::broker::{AuditEntry, CaseRecord, Persist};
use crate::store::CommitReport;

/// Why a statement or a row failed: the database's words, or a value no sosqd writes.
#[derive(Debug)]
pub struct Failure(String, FailureKind);

/// Whether a failure was another session's concurrent schema change.
#[derive(Debug, Default)]
pub struct FailureKind {
    raced: bool,
}

impl std::ops::Deref for Failure {
    type Target = FailureKind;
    fn deref(&self) -> &FailureKind {
        &self.1
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Failure {
    /// A value that did not read back (a word no sosqd writes).
    pub fn from_text(text: String) -> Failure {
        Failure(text, FailureKind::default())
    }

    /// A query or connection attempt that got no answer in time.
    pub fn timed_out(doing: &str) -> Failure {
        Failure::from_text(format!(
            "PostgreSQL did not answer in time while {doing} (unreachable or overloaded)"
        ))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Failure {
        // The server's own message (with its detail) says more than the wrapper's Display.
        use tokio_postgres::error::SqlState;
        let raced = matches!(
            error.code(),
            Some(
                &SqlState::UNIQUE_VIOLATION
                    | &SqlState::DUPLICATE_TABLE
                    | &SqlState::DUPLICATE_OBJECT
            )
        );
        let kind = FailureKind { raced };
        match error.as_db_error() {
            Some(db) => Failure(format!("{}: {}", db.severity(), db.message()), kind),
            // "error connecting to server" says little; its source says why.
            None => match std::error::Error::source(&error) {
                Some(cause) => Failure(format!("{error}: {cause}"), kind),
                None => Failure(error.to_string(), kind),
            },
        }
    }
}

/// The schema version this build writes (`sosq_meta`); a newer database is refused.
const SCHEMA_VERSION: i32 = 4;

/// Makes the tables if missing (in `schema`, made if missing, when given) and checks the
/// version. Errors: the database refuses, or it was written by a newer sosqd.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: Option<&str>,
) -> Result<(), Failure> {
    // Nodes starting together race on `CREATE ... IF NOT EXISTS` (PostgreSQL checks the
    // catalog before inserting into it); the loser finds everything made on a second go.
    let mut tries = 0;
    loop {
        match migrate_once(client, schema).await {
            Err(error) if error.raced && tries < 5 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            other => return other,
        }
    }
}

async fn migrate_once(
    client: &mut tokio_postgres::Client,
    schema: Option<&str>,
) -> Result<(), Failure> {
    if let Some(schema) = schema {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Failure::from_text(format!(
                "{schema:?} is not a plain schema name"
            )));
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
    if version.is_some_and(|version| version > SCHEMA_VERSION) {
        return Err(newer(version.unwrap_or_default()));
    }
    // Version 2: what a cluster shares besides the cases (see `cluster`). Plain DDL that
    // CockroachDB runs too; `IF NOT EXISTS` makes a half-done step safe to run again.
    client.batch_execute(CLUSTER_TABLES).await?;
    client.batch_execute(REPORT_INDEXES).await?;
    client.batch_execute(FILTER_INDEXES).await?;
    client.batch_execute(ATTACHMENTS).await?;
    if version.is_none_or(|version| version < 4) {
        client.batch_execute(ATTACHMENTS_STORAGE).await?;
    }
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
        Some(version) if version < SCHEMA_VERSION => {
            client
                .execute("UPDATE sosq_meta SET version = $1", &[&SCHEMA_VERSION])
                .await?;
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

fn newer(version: i32) -> Failure {
    Failure::from_text(format!(
        "the database holds case store schema {version}, newer than this sosqd's \
         {SCHEMA_VERSION}: run a sosqd at least as new as the one that wrote it"
    ))
}

/// The cluster's columns and tables (schema version 2). A case row says which node serves
/// it (`home_node`) under which fencing `epoch`, whether it waits in a queue (`queued`:
/// 'online' or 'away', NULL when not), the expert in it and who claimed it from the shared queue until when.
/// Nodes renew `sosq_nodes.lease_until` (milliseconds on the database's clock); codes are
/// reserved in `sosq_codes` before a node hands them out; redirects carry one-time
/// `sosq_tickets`. `cases_waiting_online` holds only what a pull may claim, so a claim
/// reads a handful of index entries however many cases wait away or are closed (without
/// it, planning and running a claim took 0.8 ms of PostgreSQL's CPU with 2,000 cases
/// waiting in another team; with it 0.2 ms).
const CLUSTER_TABLES: &str = "
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS home_node TEXT;
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS queued TEXT;
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS expert TEXT;
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS claimed_by TEXT;
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS claim_until BIGINT;
    CREATE INDEX IF NOT EXISTS cases_by_home ON cases (home_node) WHERE home_node IS NOT NULL;
    CREATE INDEX IF NOT EXISTS cases_in_queue ON cases (team, assigned_to) WHERE queued IS NOT NULL;
    CREATE INDEX IF NOT EXISTS cases_waiting_online ON cases (team, assigned_to)
        WHERE queued = 'online' AND state = 'pending';
    CREATE TABLE IF NOT EXISTS sosq_nodes (
        node_id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        lease_until BIGINT NOT NULL,
        started_at BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS sosq_codes (
        code BIGINT PRIMARY KEY,
        node_id TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS sosq_tickets (
        ticket TEXT PRIMARY KEY,
        code BIGINT NOT NULL,
        node_id TEXT NOT NULL,
        staff TEXT,
        expires_at BIGINT NOT NULL
    );";

/// The indexes the Reports page's queries need (`store::postgres::reports`): cases by
/// expiry for the queue-length sweep, the audit log by time for deletions per day. Only
/// indexes, which an older sosqd reading the same database neither needs nor minds, so the
/// schema version stays (a bump would make older nodes refuse the database mid-upgrade).
const REPORT_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS reports_by_expiry ON cases (expires_at);
    CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);";
/// Version 3: the admin table's filters (`store::filter_sql`), as in the SQLite store's
/// schema 4: each index leads with the column an equality filter names and goes on in
/// creation order, so a filtered page walks one index from its cursor. Closing-time ranges
/// use `cases_by_state` (state, updated_at). Plain `CREATE INDEX` holds writes to `cases`
/// while it builds, once, on the first start of this version.
const FILTER_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS cases_by_state_creation ON cases (state, created_at, code);
    CREATE INDEX IF NOT EXISTS cases_by_team_creation ON cases (team, created_at, code);
    CREATE INDEX IF NOT EXISTS cases_by_priority_creation ON cases (priority, created_at, code);";

/// Version 4: customers' messages and attachments, as in the SQLite store's schema 6: the
/// case keeps its latest message and how many files it holds; the files are rows of their
/// own, deleted with their case (by the foreign key, as the history is). Their bytes are
/// stored `EXTERNAL` (out of line, uncompressed): images and PDFs are compressed already,
/// and an uncompressed value lets `substring` fetch only the part a reader asks for.
const ATTACHMENTS: &str = "
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS last_message TEXT;
    ALTER TABLE cases ADD COLUMN IF NOT EXISTS attachments BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE IF NOT EXISTS attachments (
        code BIGINT NOT NULL REFERENCES cases (code) ON DELETE CASCADE,
        id BIGINT NOT NULL,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size BIGINT NOT NULL,
        attached_at BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (code, id)
    );";

/// Run once, when the table is made (version 4): an `ALTER TABLE` takes the table's lock,
/// which every start of every node need not take again.
const ATTACHMENTS_STORAGE: &str = "ALTER TABLE attachments ALTER COLUMN data SET STORAGE EXTERNAL";

pub use crate::store::columns::timestamp;
use crate::store::columns::{actor_from_columns, code_from_column, origin_from_columns};
pub use crate::store::columns::{code_column, millis, CASE_COLUMNS};

/// Reads a code column, refusing numbers that are not session codes.
pub fn code_from(row: &Row, column: usize) -> Result<SessionCode, Failure> {
    code_from_column(row.try_get(column)?).map_err(Failure::from_text)
}

fn parsed<T: std::str::FromStr<Err = String>>(row: &Row, column: usize) -> Result<T, Failure> {
    let text: String = row.try_get(column)?;
    text.parse().map_err(Failure::from_text)
}

/// A case row (history not filled in).
pub fn case_from_row(row: &Row) -> Result<CaseRecord, Failure> {
    case_from_row_at(row, 0)
}

/// A case row whose [`CASE_COLUMNS`] start at column `at` (history not filled in).
pub fn case_from_row_at(row: &Row, at: usize) -> Result<CaseRecord, Failure> {
    let origin: String = row.try_get(at + 1)?;
    let origin = origin_from_columns(&origin, row.try_get(at + 2)?).map_err(Failure::from_text)?;
    let time = |column| -> Result<Option<Timestamp>, Failure> {
        Ok(row.try_get::<_, Option<i64>>(at + column)?.map(timestamp))
    };
    Ok(CaseRecord {
        code: code_from(row, at)?,
        origin,
        customer: row.try_get(at + 3)?,
        description: row.try_get(at + 4)?,
        state: parsed::<CaseState>(row, at + 5)?,
        created_at: timestamp(row.try_get(at + 6)?),
        updated_at: timestamp(row.try_get(at + 7)?),
        expires_at: timestamp(row.try_get(at + 8)?),
        waiting_since: time(9)?,
        resume_secret_hash: row.try_get(at + 10)?,
        group: row.try_get(at + 11)?,
        assigned_to: row.try_get(at + 12)?,
        priority: parsed::<Priority>(row, at + 13)?,
        response_due: time(14)?,
        first_response_at: time(15)?,
        history: Vec::new(),
        last_message: row.try_get(at + 16)?,
        attachments: crate::store::columns::count_from(row.try_get(at + 17)?),
    })
}

/// [`CASE_COLUMNS`] of the table aliased `c`.
pub const CASE_COLUMNS_PREFIXED: &str = "c.code, c.origin, c.created_by, c.customer, \
     c.description, c.state, c.created_at, c.updated_at, c.expires_at, c.waiting_since, \
     c.resume_secret_hash, c.team, c.assigned_to, c.priority, c.response_due, c.first_response_at, \
     c.last_message, c.attachments";

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
            let actor =
                actor_from_columns(row.try_get(4)?, row.try_get(5)?).map_err(Failure::from_text)?;
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

/// Applies one submission's changes in order.
/// A cluster node's new rows are added to `created` (the transaction's so far), which the
/// caller notes in the ledger once the transaction commits.
pub(super) async fn apply(
    client: &impl GenericClient,
    statements: &super::save::Statements,
    ledger: Option<&Ledger>,
    ops: &[Persist],
    created: &mut Vec<SessionCode>,
) -> Result<CommitReport, Failure> {
    let mut report = CommitReport::default();
    for op in ops {
        match op {
            Persist::Save(record) => {
                super::save::save(client, statements, ledger, record, created).await?
            }
            Persist::Delete(codes) => {
                for &code in codes {
                    if delete(client, code).await? {
                        report.deleted.push(code);
                    }
                }
            }
            Persist::DeleteWhere(selection) => {
                for code in super::listing::codes(client, selection).await? {
                    if delete(client, code).await? {
                        report.deleted.push(code);
                    }
                }
            }
            Persist::Note { code, entry } => note(client, *code, entry).await?,
            Persist::Attach { code, attachment } => attach(client, *code, attachment).await?,
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

/// Appends a staff note to a stored case's history, after whatever it holds now; nothing
/// when the case is gone or its history is full (see `Persist::Note`). One statement, so
/// the entry and the row's length change together.
async fn note(
    client: &impl GenericClient,
    code: SessionCode,
    entry: &sosq::protocol::HistoryEntry,
) -> Result<(), Failure> {
    let (role, name) = crate::store::columns::actor_columns(entry.actor.as_ref());
    client
        .execute(
            "WITH grown AS (
                 UPDATE cases SET history_len = history_len + 1
                 WHERE code = $1 AND history_len < $9
                 RETURNING history_len - 1 AS seq)
             INSERT INTO history (code, seq, at, state, kind, event, actor, actor_name, address)
             SELECT $1, seq, $2, $3, $4, $5, $6, $7, $8 FROM grown",
            &[
                &code_column(code),
                &millis(entry.at),
                &entry.state.as_str(),
                &entry.kind.as_str(),
                &entry.event,
                &role,
                &name,
                &entry.address,
                &(crate::broker::MAX_HISTORY_ENTRIES as i64),
            ],
        )
        .await?;
    Ok(())
}

/// Keeps an attachment of a stored case; nothing when the case is gone (see
/// `Persist::Attach`).
async fn attach(
    client: &impl GenericClient,
    code: SessionCode,
    attachment: &crate::broker::StoredAttachment,
) -> Result<(), Failure> {
    let info = &attachment.info;
    client
        .execute(
            "INSERT INTO attachments (code, id, name, content_type, size, attached_at, data)
             SELECT code, $2, $3, $4, $5, $6, $7 FROM cases WHERE code = $1
             ON CONFLICT (code, id) DO UPDATE SET name = excluded.name,
                 content_type = excluded.content_type, size = excluded.size,
                 attached_at = excluded.attached_at, data = excluded.data",
            &[
                &code_column(code),
                &i64::from(info.id),
                &info.name,
                &info.content_type,
                &i64::try_from(info.size).unwrap_or(i64::MAX),
                &millis(info.attached_at),
                &attachment.bytes.as_slice(),
            ],
        )
        .await?;
    Ok(())
}

/// What staff see of one case's attachments, oldest first.
pub async fn attachments_of(
    client: &impl GenericClient,
    code: SessionCode,
) -> Result<Vec<sosq::protocol::AttachmentInfo>, Failure> {
    let rows = client
        .query(
            "SELECT id, name, content_type, size, attached_at FROM attachments
             WHERE code = $1 ORDER BY id",
            &[&code_column(code)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(sosq::protocol::AttachmentInfo {
                id: u32::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                name: row.try_get(1)?,
                content_type: row.try_get(2)?,
                size: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
                attached_at: timestamp(row.try_get(4)?),
            })
        })
        .collect()
}

/// At most `len` bytes of one attachment from `offset`, with its size (see
/// `CaseStore::attachment_part`).
pub async fn attachment_part(
    client: &impl GenericClient,
    code: SessionCode,
    id: u32,
    offset: u64,
    len: usize,
) -> Result<Option<(u64, Vec<u8>)>, Failure> {
    // substring() counts bytes from 1; a start past the end gives none.
    let start = i64::try_from(offset)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1);
    let row = client
        .query_opt(
            "SELECT size, substring(data FROM $3::BIGINT::INT FOR $4::BIGINT::INT)
             FROM attachments WHERE code = $1 AND id = $2",
            &[
                &code_column(code),
                &i64::from(id),
                &start.min(i64::from(i32::MAX)),
                &i64::try_from(len)
                    .unwrap_or(i64::MAX)
                    .min(i64::from(i32::MAX)),
            ],
        )
        .await?;
    row.map(|row| {
        let size = u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0);
        Ok((size, row.try_get::<_, Vec<u8>>(1)?))
    })
    .transpose()
}

/// Deletes a case (its history goes with it); whether there was one.
async fn delete(client: &impl GenericClient, code: SessionCode) -> Result<bool, Failure> {
    let removed = client
        .execute("DELETE FROM cases WHERE code = $1", &[&code_column(code)])
        .await?;
    // The code may be handed out again, on any node.
    client
        .execute(
            "DELETE FROM sosq_codes WHERE code = $1",
            &[&code_column(code)],
        )
        .await?;
    Ok(removed > 0)
}
