//! The shared queue as experts and admins see it: one page of the waiting cases of every
//! node, in the core's pull order, read from the case rows (see `cluster`).

use sosq::codec::PageBudget;
use sosq::protocol::{Priority, QueueCursor, QueueEntry, QueuePage};

use super::{Cluster, ClusterError, HOME_LIVE, NOW_MS};
use crate::store::postgres::rows;

/// A priority's place in pull order, most urgent first (as `Priority`'s own order).
const RANK: &str =
    "CASE c.priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END";

/// The pull order of case rows aliased `c`: priority, response deadline (the expiry when
/// there is none), waiting time, then the code where the core uses arrival order.
pub(super) const ORDER_C: &str = "CASE c.priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
     WHEN 'normal' THEN 2 ELSE 3 END, COALESCE(c.response_due, c.expires_at), \
     COALESCE(c.waiting_since, c.created_at), c.code";

/// Whose queue a page shows.
#[derive(Debug, Clone, Copy)]
pub enum QueueView<'a> {
    /// An admin: every queue.
    Everyone,
    /// An expert: its teams' queues and the cases assigned to it.
    Expert {
        /// Its name.
        name: &'a str,
        /// Its teams.
        teams: &'a [String],
    },
}

impl Cluster {
    /// One page of the shared queue for `view`, starting after `after`, with at most
    /// `limit` entries (and at most what fits a frame). An entry is online when its
    /// customer waits connected to a live node; positions count the online cases of each
    /// line (a team's queue, or one expert's assigned cases) before it, that one included.
    pub async fn queue_page(
        &self,
        view: QueueView<'_>,
        after: Option<&QueueCursor>,
        limit: usize,
    ) -> Result<QueuePage, ClusterError> {
        let (everyone, name, teams) = match view {
            QueueView::Everyone => (true, String::new(), Vec::new()),
            QueueView::Expert { name, teams } => (false, name.to_string(), teams.to_vec()),
        };
        let (rank, due, since, code) = match after {
            Some(cursor) => (
                priority_rank(cursor.priority),
                i64::try_from(cursor.response_due.0).unwrap_or(i64::MAX),
                i64::try_from(cursor.waiting_since.0).unwrap_or(i64::MAX),
                i64::try_from(cursor.arrival).unwrap_or(i64::MAX),
            ),
            None => (-1, i64::MIN, i64::MIN, i64::MIN),
        };
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        self.with(async |client| {
            let shown = format!(
                "SELECT c.code, c.customer, c.description,
                     COALESCE(c.waiting_since, c.created_at) AS since, c.priority,
                     COALESCE(c.response_due, c.expires_at) AS due, c.team, c.assigned_to,
                     c.queued = 'online' AND {HOME_LIVE} AS online,
                     {RANK} AS rank, c.last_message, c.attachments
                 FROM cases c
                 WHERE c.queued IS NOT NULL AND c.state = 'pending'
                   AND ($1 OR (c.assigned_to IS NULL AND c.team = ANY($2)) OR c.assigned_to = $3)"
            );
            // A position counts the online cases of the entry's line up to it, so the
            // window runs over the whole of each line before the cursor cuts the page.
            let sql = format!(
                "WITH shown AS ({shown}),
                 placed AS (
                     SELECT s.*, count(*) FILTER (WHERE s.online) OVER (
                         PARTITION BY COALESCE('e:' || s.assigned_to, 't:' || s.team)
                         ORDER BY s.rank, s.due, s.since, s.code
                         ROWS UNBOUNDED PRECEDING) AS position
                     FROM shown s)
                 SELECT code, customer, description, since, priority, due, team, assigned_to,
                        online, position, last_message, attachments
                 FROM placed
                 WHERE (rank, due, since, code) > ($4, $5, $6, $7)
                 ORDER BY rank, due, since, code
                 LIMIT $8"
            );
            let found = client
                .query(
                    &sql,
                    &[&everyone, &teams, &name, &rank, &due, &since, &code, &fetch],
                )
                .await?;
            let counted = client
                .query_one(
                    &format!(
                        "SELECT count(*) FILTER (WHERE online), count(*) FILTER (WHERE NOT online)
                         FROM ({shown}) s"
                    ),
                    &[&everyone, &teams, &name],
                )
                .await?;
            let mut budget = PageBudget::new(limit);
            let mut entries = Vec::new();
            let mut next = None;
            let mut more = false;
            for row in &found {
                let online: bool = row.try_get(8)?;
                let position: i64 = row.try_get(9)?;
                let priority: Priority = row
                    .try_get::<_, String>(4)?
                    .parse()
                    .map_err(rows::Failure::from_text)?;
                let entry = QueueEntry {
                    position: online.then(|| u32::try_from(position).unwrap_or(u32::MAX)),
                    code: rows::code_from(row, 0)?,
                    customer: row.try_get(1)?,
                    description: row.try_get(2)?,
                    waiting_since: rows::timestamp(row.try_get(3)?),
                    priority,
                    response_due: rows::timestamp(row.try_get(5)?),
                    group: row.try_get(6)?,
                    assigned_to: row.try_get(7)?,
                    online,
                    last_message: row
                        .try_get::<_, Option<String>>(10)?
                        .as_deref()
                        .map(sosq::protocol::queue_message),
                    attachments: u32::try_from(row.try_get::<_, i64>(11)?).unwrap_or(0),
                };
                if !budget.admit(&entry) {
                    more = true;
                    break;
                }
                next = Some(QueueCursor {
                    priority: entry.priority,
                    response_due: entry.response_due,
                    waiting_since: entry.waiting_since,
                    arrival: entry.code.number(),
                });
                entries.push(entry);
            }
            if entries.len() < found.len() {
                more = true;
            }
            let online: i64 = counted.try_get(0)?;
            let offline: i64 = counted.try_get(1)?;
            Ok(QueuePage {
                entries,
                online: u32::try_from(online).unwrap_or(u32::MAX),
                offline: u32::try_from(offline).unwrap_or(u32::MAX),
                next: next.filter(|_| more),
            })
        })
        .await
    }
}

/// The shared state in numbers, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ClusterSummary {
    /// Nodes whose lease holds.
    pub live_nodes: u64,
    /// Waiting cases per team queue: team, online (a pull may take them), count.
    pub waiting: Vec<(String, bool, u64)>,
}

impl Cluster {
    /// Live nodes and the shared queue's length per team: two counting queries.
    pub async fn summary(&self) -> Result<ClusterSummary, ClusterError> {
        self.with(async |client| {
            let live: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM sosq_nodes WHERE lease_until > {NOW_MS}"),
                    &[],
                )
                .await?
                .try_get(0)?;
            let found = client
                .query(
                    &format!(
                        "SELECT c.team, c.queued = 'online' AND {HOME_LIVE} AS online,
                             count(*)
                         FROM cases c WHERE c.queued IS NOT NULL AND c.state = 'pending'
                         GROUP BY 1, 2 ORDER BY 1, 2"
                    ),
                    &[],
                )
                .await?;
            let mut waiting = Vec::with_capacity(found.len());
            for row in &found {
                let count: i64 = row.try_get(2)?;
                waiting.push((row.try_get(0)?, row.try_get(1)?, count.max(0) as u64));
            }
            Ok(ClusterSummary {
                live_nodes: live.max(0) as u64,
                waiting,
            })
        })
        .await
    }
}

/// `priority`'s rank in [`RANK`].
fn priority_rank(priority: Priority) -> i32 {
    match priority {
        Priority::Critical => 0,
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
    }
}
