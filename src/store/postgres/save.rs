//! Saving a case: its row and its new history entries, in one statement (two when more
//! entries are new than a save carries); on a cluster node only at the epoch this node
//! holds (see `ledger`).

use sosq::SessionCode;
use tokio_postgres::{Client, GenericClient, Row, Statement};

use super::ledger::Ledger;
use super::rows::{code_column, millis, Failure};
use crate::broker::{CaseRecord, Persist};
use crate::store::columns::{actor_columns, origin_columns};

/// What a `NOTIFY sosq_queue` carries: a case now waits online for `team`'s pulls, or
/// for its `assigned` expert's (the claim's own rule, see `cluster::Cluster::claim_next`),
/// so a node wakes one pull that may take it rather than every pull it has waiting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueWake {
    /// The case's team.
    pub team: String,
    /// The expert it is assigned to, if any.
    pub assigned: Option<String>,
}

/// The wake-ups for the cases `ops` leave waiting online (ones a pull may take), by the
/// ledger; none on a single node.
pub fn queue_wakes(ledger: Option<&Ledger>, ops: &[Persist]) -> Vec<QueueWake> {
    let Some(ledger) = ledger else {
        return Vec::new();
    };
    ops.iter()
        .filter_map(|op| match op {
            Persist::Save(record)
                if ledger.holding(record.code).1 == super::ledger::Queued::Online =>
            {
                Some(QueueWake {
                    team: record.group.clone(),
                    assigned: record.assigned_to.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// How many of a case's last history entries a save sends with its row: a save usually
/// adds one to three, and its statement writes only those the row does not have yet. More
/// new ones than this (rare: a case taken over with a long history to fold) cost one more
/// statement.
const SENT_ENTRIES: usize = 8;

/// The statements of the save path, prepared once per connection: PostgreSQL then parses
/// and plans each once, and a statement costs one round trip instead of two (tokio-postgres
/// prepares a statement given as text before every use).
pub(super) struct Statements {
    upsert_case: Statement,
    insert_node_case: Statement,
    update_node_case: Statement,
    insert_history: Statement,
    /// Wakes the nodes' waiting pulls (see `queue_wakes`).
    pub notify: Statement,
}

impl Statements {
    /// Prepares them on `client` (after the tables are made). Errors: the database's.
    pub(super) async fn prepare(client: &Client) -> Result<Statements, Failure> {
        Ok(Statements {
            upsert_case: client.prepare(&with_entries(UPSERT_CASE, 20)).await?,
            insert_node_case: client.prepare(&with_entries(INSERT_NODE_CASE, 23)).await?,
            update_node_case: client.prepare(&with_entries(UPDATE_NODE_CASE, 24)).await?,
            insert_history: client
                .prepare(&format!("{INSERT_HISTORY} {ENTRY_CONFLICT}"))
                .await?,
            notify: client.prepare(NOTIFY_QUEUE).await?,
        })
    }
}

/// Upserts the case row and writes the history entries not stored yet (rewriting the
/// folding last entry of a full history), as the SQLite store does: one statement, and a
/// second only when more entries are new than it carries ([`SENT_ENTRIES`]). A cluster
/// node (`ledger`) writes only rows it holds at its epoch, and creates new ones at epoch
/// 1; a row it no longer holds fails the save (see `ledger`).
pub(super) async fn save(
    client: &impl GenericClient,
    statements: &Statements,
    ledger: Option<&Ledger>,
    record: &CaseRecord,
    created: &mut Vec<SessionCode>,
) -> Result<(), Failure> {
    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let code = code_column(record.code);
    let (origin, created_by) = origin_columns(&record.origin);
    // The row keeps the longer of its stored length and this one (see the statements).
    let history_len = record.history.len() as i64;
    let (state, priority) = (record.state.as_str(), record.priority.as_str());
    let (created_at, updated_at, expires_at) = (
        millis(record.created_at),
        millis(record.updated_at),
        millis(record.expires_at),
    );
    let waiting_since = record.waiting_since.map(millis);
    let response_due = record.response_due.map(millis);
    let first_response_at = record.first_response_at.map(millis);
    let attachments = i64::from(record.attachments);
    let mut params: Vec<Param<'_>> = vec![
        &code,
        &origin,
        &created_by,
        &record.customer,
        &record.description,
        &state,
        &created_at,
        &updated_at,
        &expires_at,
        &waiting_since,
        &record.resume_secret_hash,
        &history_len,
        &record.group,
        &record.assigned_to,
        &priority,
        &response_due,
        &first_response_at,
        &record.last_message,
        &attachments,
    ];
    // A full history's last entry folds every later event into itself (see
    // `CaseRecord::note`), so it is written again whenever it changed: entries from
    // `fold_at` on are written whatever the row holds.
    let len = record.history.len();
    let fold_at = if len >= crate::broker::MAX_HISTORY_ENTRIES {
        len - 1
    } else {
        len
    };
    let sent_from = len.saturating_sub(SENT_ENTRIES).min(fold_at);
    let sent = HistoryColumns::of(record, sent_from..len);
    let fold_at_column = fold_at as i64;
    let entries: [Param<'_>; 9] = [
        &sent.seq,
        &sent.at,
        &sent.state,
        &sent.kind,
        &sent.event,
        &sent.actor,
        &sent.actor_name,
        &sent.address,
        &fold_at_column,
    ];
    // Each statement hands back the history length stored before it (0 for a new row),
    // or no row when it wrote nothing (a row another node holds now).
    let stored_before = |row: Option<Row>| -> Option<usize> {
        row.map(|row| {
            row.try_get::<_, Option<i64>>(0)
                .ok()
                .flatten()
                .map_or(0, |n| usize::try_from(n).unwrap_or(0))
        })
    };
    let stored = match ledger {
        None => {
            params.extend(entries);
            stored_before(client.query_opt(&statements.upsert_case, &params).await?)
        }
        Some(ledger) => {
            let (epoch, queued, expert) = ledger.holding(record.code);
            // A row this transaction created is at epoch 1, though the ledger says so only
            // once it commits.
            let epoch = match epoch {
                0 if created.contains(&record.code) => 1,
                epoch => epoch,
            };
            let queued = queued.column();
            let node = ledger.node();
            params.extend([&node as Param<'_>, &queued, &expert]);
            if epoch == 0 {
                params.extend(entries);
                let written = stored_before(
                    client
                        .query_opt(&statements.insert_node_case, &params)
                        .await?,
                );
                if written.is_some() {
                    // Held once the transaction commits (see `commit_group`): before,
                    // the row is not there for the node's own checks.
                    created.push(record.code);
                }
                written
            } else {
                params.push(&epoch);
                params.extend(entries);
                stored_before(
                    client
                        .query_opt(&statements.update_node_case, &params)
                        .await?,
                )
            }
        }
    };
    let Some(stored) = stored else {
        return Err(Failure::from_text(format!(
            "case {} is served by another node now; this node's change was not written",
            record.code
        )));
    };
    // The statement wrote the entries it carried from `stored` (or `fold_at`) on; new
    // ones before those it did not carry.
    let first_new = stored.min(fold_at);
    if first_new >= sent_from {
        return Ok(());
    }
    let missing = HistoryColumns::of(record, first_new..sent_from);
    client
        .execute(
            &statements.insert_history,
            &[
                &code,
                &missing.seq,
                &missing.at,
                &missing.state,
                &missing.kind,
                &missing.event,
                &missing.actor,
                &missing.actor_name,
                &missing.address,
            ],
        )
        .await?;
    Ok(())
}

/// History entries of one save, column by column (for `unnest`).
#[derive(Default)]
struct HistoryColumns<'a> {
    seq: Vec<i64>,
    at: Vec<i64>,
    state: Vec<&'a str>,
    kind: Vec<&'a str>,
    event: Vec<&'a str>,
    actor: Vec<Option<&'a str>>,
    actor_name: Vec<Option<&'a str>>,
    address: Vec<Option<&'a str>>,
}

impl<'a> HistoryColumns<'a> {
    /// The entries `seqs` of `record`'s history.
    fn of(record: &'a CaseRecord, seqs: std::ops::Range<usize>) -> HistoryColumns<'a> {
        let mut columns = HistoryColumns::default();
        for (seq, entry) in record
            .history
            .iter()
            .enumerate()
            .take(seqs.end)
            .skip(seqs.start)
        {
            let (role, name) = actor_columns(entry.actor.as_ref());
            columns.seq.push(seq as i64);
            columns.at.push(millis(entry.at));
            columns.state.push(entry.state.as_str());
            columns.kind.push(entry.kind.as_str());
            columns.event.push(entry.event.as_str());
            columns.actor.push(role);
            columns.actor_name.push(name);
            columns.address.push(entry.address.as_deref());
        }
        columns
    }
}

/// What every write of history entries does with an entry already stored: rewrites it
/// (only a full history's folding last entry changes after it is written).
const ENTRY_CONFLICT: &str = "ON CONFLICT (code, seq) DO UPDATE SET
         at = excluded.at, state = excluded.state, kind = excluded.kind,
         event = excluded.event, actor = excluded.actor,
         actor_name = excluded.actor_name, address = excluded.address";

/// The history entries a save did not carry (see [`SENT_ENTRIES`]), in one statement
/// (with [`ENTRY_CONFLICT`]).
const INSERT_HISTORY: &str =
    "INSERT INTO history (code, seq, at, state, kind, event, actor, actor_name, address)
     SELECT $1, * FROM unnest($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[],
         $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[])";

/// A case statement (`saved`: a data-modifying statement `RETURNING code`, with `old` the
/// row's stored history length) made into a whole save: it also writes the carried
/// history entries (parameters `$first` to `$first+7`, one array per column) that the row
/// does not hold yet, or from `$first+8` (where a full history folds) on, and returns the
/// history length stored before; no row if `saved` wrote nothing (then neither does it).
fn with_entries(saved: &str, first: usize) -> String {
    let [seq, at, state, kind, event, actor, actor_name, address, fold_at] =
        std::array::from_fn::<usize, 9, _>(|i| first + i);
    format!(
        "WITH old AS (SELECT history_len FROM cases WHERE code = $1),
         saved AS ({saved} RETURNING code),
         entries AS (
             INSERT INTO history (code, seq, at, state, kind, event, actor, actor_name, address)
             SELECT $1, e.seq, e.at, e.state, e.kind, e.event, e.actor, e.actor_name, e.address
             FROM unnest(${seq}::BIGINT[], ${at}::BIGINT[], ${state}::TEXT[], ${kind}::TEXT[],
                 ${event}::TEXT[], ${actor}::TEXT[], ${actor_name}::TEXT[], ${address}::TEXT[])
                 AS e(seq, at, state, kind, event, actor, actor_name, address)
             WHERE EXISTS (SELECT 1 FROM saved)
               AND e.seq >= LEAST(COALESCE((SELECT history_len FROM old), 0), ${fold_at}::BIGINT)
             {ENTRY_CONFLICT})
         SELECT COALESCE((SELECT history_len FROM old), 0) FROM saved"
    )
}

/// Tells every node's waiting pulls which cases wait online now (`$1`: [`QueueWake`]s as
/// JSON). PostgreSQL sends identical notifications of one transaction once; a woken pull
/// that takes a case wakes the next (see `server::waiting_pulls`).
const NOTIFY_QUEUE: &str = "SELECT pg_notify('sosq_queue', wake) FROM unnest($1::TEXT[]) AS wake";

/// A single node's save: insert, or replace every column.
const UPSERT_CASE: &str = "INSERT INTO cases (code, origin, created_by, customer, description,
        state, created_at, updated_at, expires_at, waiting_since, resume_secret_hash,
        history_len, team, assigned_to, priority, response_due, first_response_at,
        last_message, attachments)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        $18, $19)
     ON CONFLICT (code) DO UPDATE SET
         last_message = excluded.last_message, attachments = excluded.attachments,
         origin = excluded.origin, created_by = excluded.created_by,
         customer = excluded.customer, description = excluded.description,
         state = excluded.state, created_at = excluded.created_at,
         updated_at = excluded.updated_at, expires_at = excluded.expires_at,
         waiting_since = excluded.waiting_since,
         resume_secret_hash = excluded.resume_secret_hash,
         history_len = GREATEST(cases.history_len, excluded.history_len), team = excluded.team,
         assigned_to = excluded.assigned_to, priority = excluded.priority,
         response_due = excluded.response_due,
         first_response_at = excluded.first_response_at";

/// A cluster node's first save of a case it created: epoch 1, homed here. A code already
/// in a row writes nothing (codes are reserved first, so this means a bug, not a race).
const INSERT_NODE_CASE: &str = "INSERT INTO cases (code, origin, created_by, customer,
        description, state, created_at, updated_at, expires_at, waiting_since,
        resume_secret_hash, history_len, team, assigned_to, priority, response_due,
        first_response_at, last_message, attachments, home_node, queued, expert, epoch)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        $18, $19, $20, $21, $22, 1)
     ON CONFLICT (code) DO NOTHING";

/// A cluster node's later saves: only while the row is still homed here at its epoch. A
/// case that left the queue (paired, closed) drops its claim, so if it comes back (its
/// expert left) the next pull may take it at once.
const UPDATE_NODE_CASE: &str = "UPDATE cases SET origin = $2, created_by = $3, customer = $4,
        description = $5, state = $6, created_at = $7, updated_at = $8, expires_at = $9,
        waiting_since = $10, resume_secret_hash = $11,
        history_len = GREATEST(history_len, $12), team = $13,
        assigned_to = $14, priority = $15, response_due = $16, first_response_at = $17,
        last_message = $18, attachments = $19, queued = $21, expert = $22,
        claimed_by = CASE WHEN $21::TEXT IS NULL THEN NULL ELSE claimed_by END,
        claim_until = CASE WHEN $21::TEXT IS NULL THEN NULL ELSE claim_until END
     WHERE code = $1 AND home_node = $20 AND epoch = $23";
