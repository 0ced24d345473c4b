//! The cluster: several `sosqd` nodes sharing one PostgreSQL database are one broker.
//!
//! Each node's core (`broker`) holds the cases homed on that node: the node holding the
//! customer's connection, where the relay runs, so no session byte crosses between nodes.
//! What the nodes share lives in rows, and this module is every statement about them:
//!
//! - **Leases.** A node renews its row in `sosq_nodes` every third of `lease`; a case row
//!   names its home node and a fencing `epoch`. A node whose lease lapsed (dead, paused, cut
//!   off from the database) has lost its cases: another node takes one over by bumping its
//!   epoch, after which the old node's writes (which all name the epoch, see
//!   `store::postgres::ledger`) change nothing. Lease times are on the database's clock, so
//!   nodes' clocks need not agree; a node judges its own lease on its monotonic clock from
//!   when it *sent* the renewal, which errs on the safe side.
//! - **Claims.** A pull takes the next waiting case of the expert's queues in the core's
//!   order (priority, deadline, waiting time; the code breaks ties where the core uses
//!   arrival order) with `FOR UPDATE SKIP LOCKED`, so concurrent pulls on every node get
//!   different cases. A claim holds for [`CLAIM_HOLD`]: if the expert never reaches the home
//!   node, the case is offered again.
//! - **Codes.** A node hands out only codes it reserved in `sosq_codes`, so codes are unique
//!   across the cluster although each core draws its own.
//! - **Tickets.** A redirect carries a one-time ticket for the home node, valid for
//!   [`TICKET_LIFETIME`].
//!
//! No advisory locks and no reliance on LISTEN/NOTIFY: nodes poll (a pull waiting for a
//! case re-tries its claim every [`POLL`]), and the SQL keeps to what CockroachDB also runs.

mod lease;
mod queue;

pub use queue::{ClusterSummary, QueueView};

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sosq::SessionCode;
use tokio_postgres::NoTls;

use crate::broker::CaseRecord;
use crate::store::postgres::{rows, QueueWake};
use crate::store::Ledger;

/// How long a claimed case stays reserved for the expert who claimed it.
pub const CLAIM_HOLD: Duration = Duration::from_secs(15);

/// How long a redirect's ticket may be redeemed.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(15);

/// How often a waiting pull looks for a case on other nodes, and how often a node looks
/// for changes it was not told about (cases deleted or taken over elsewhere).
pub const POLL: Duration = Duration::from_millis(250);

/// How long one statement may take before the database counts as unreachable.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The database's clock in milliseconds since the Unix epoch: every lease and claim time.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Whether the home node of the case row aliased `c` holds its lease now (on the
/// database's clock, as [`NOW_MS`]): the test every claim, view and takeover makes.
const HOME_LIVE: &str = "EXISTS (SELECT 1 FROM sosq_nodes n WHERE n.node_id = c.home_node \
     AND n.lease_until > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)";

/// The states of an open case, as stored.
const OPEN: &str = "('new', 'pending', 'in_progress')";

/// Why a cluster statement failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// The database could not be reached, refused, or did not answer in time.
    #[error("the cluster's database ({store}) failed: {cause}")]
    Database {
        /// Where it is, without a password.
        store: String,
        /// What went wrong.
        cause: String,
    },
    /// Another running process renews this node's lease: two daemons with one `node_id`.
    #[error("another sosqd runs as node {0:?} (its lease is renewed by someone else); give every node its own node_id")]
    NodeTaken(String),
}

/// Where a case lives, as the shared store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// No case has this code.
    Missing,
    /// The case is closed or expired.
    Finished,
    /// Homed on this node.
    Here,
    /// Homed on a live node; redirect there.
    Elsewhere {
        /// Its node name.
        node: String,
        /// Where clients reach it.
        address: String,
    },
    /// Homed on a node whose lease lapsed (or never homed): any node may take it over.
    Orphaned,
    /// Homed on a node that stopped renewing but whose lease has not lapsed yet: wait
    /// this long, then it is orphaned.
    Lapsing(Duration),
}

/// A case a pull claimed.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The case.
    pub code: SessionCode,
    /// Its home node, and where clients reach it.
    pub node: String,
    /// The home node's address.
    pub address: String,
}

/// This node's handle on the shared state.
pub struct Cluster {
    pool: Pool,
    node: String,
    address: String,
    lease: Duration,
    ledger: Arc<Ledger>,
    shown: String,
    /// This process's incarnation: the `started_at` it registered with, so a second
    /// process with the same node name cannot renew the first one's lease.
    incarnation: std::sync::atomic::AtomicI64,
}

impl Cluster {
    /// A handle for node `node`, reached by clients at `address`, over a pool of at most
    /// `pool_size` connections to `url`, whose case writes `ledger` fences. Nothing is
    /// contacted until [`Cluster::register`].
    ///
    /// Errors: [`ClusterError::Database`] when `url` is not a PostgreSQL address.
    pub fn new(
        url: &str,
        node: &str,
        address: &str,
        lease: Duration,
        pool_size: usize,
        ledger: Arc<Ledger>,
    ) -> Result<Cluster, ClusterError> {
        let shown = crate::store::postgres::shown(url);
        let failed = |cause: String| ClusterError::Database {
            store: shown.clone(),
            cause,
        };
        let config = crate::store::postgres::client_config(url, QUERY_TIMEOUT)
            .map_err(|e| failed(e.to_string()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(QUERY_TIMEOUT))
            .create_timeout(Some(QUERY_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        Ok(Cluster {
            pool,
            node: node.to_string(),
            address: address.to_string(),
            lease,
            ledger,
            shown,
            incarnation: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The address clients reach this node at.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// How long a lease lasts.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The cases this node serves, with their epochs.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    fn failed(&self, cause: impl std::fmt::Display) -> ClusterError {
        ClusterError::Database {
            store: self.shown.clone(),
            cause: cause.to_string(),
        }
    }

    /// Runs `work` on a pooled connection within [`QUERY_TIMEOUT`].
    async fn with<T>(
        &self,
        work: impl AsyncFnOnce(&deadpool_postgres::Client) -> Result<T, rows::Failure>,
    ) -> Result<T, ClusterError> {
        let attempt = async {
            let client = self.pool.get().await.map_err(|e| self.failed(e))?;
            work(&client).await.map_err(|e| self.failed(e))
        };
        tokio::time::timeout(QUERY_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(self.failed("no answer in time (unreachable or overloaded)")))
    }

    /// Reserves those of `candidates` no case or node holds yet; returns them.
    pub async fn reserve_codes(
        &self,
        candidates: &[SessionCode],
    ) -> Result<Vec<SessionCode>, ClusterError> {
        let numbers: Vec<i64> = candidates.iter().map(|c| rows::code_column(*c)).collect();
        self.with(async |client| {
            let found = client
                .query(
                    "INSERT INTO sosq_codes (code, node_id)
                     SELECT x, $2 FROM unnest($1::BIGINT[]) AS x
                     WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.code = x)
                     ON CONFLICT (code) DO NOTHING RETURNING code",
                    &[&numbers, &self.node],
                )
                .await?;
            found.iter().map(|row| rows::code_from(row, 0)).collect()
        })
        .await
    }

    /// Claims the next case waiting online in `expert`'s queues (its teams' and its own
    /// assigned cases) on any live node, in queue order; `None` when there is none.
    pub async fn claim_next(
        &self,
        expert: &str,
        teams: &[String],
    ) -> Result<Option<Claim>, ClusterError> {
        self.with(async |client| {
            let sql = format!(
                "WITH claimed AS (
                     UPDATE cases SET claimed_by = $1, claim_until = {NOW_MS} + $3
                     WHERE code = (
                         SELECT c.code FROM cases c
                         WHERE c.queued = 'online' AND c.state = 'pending'
                           AND ((c.assigned_to IS NULL AND c.team = ANY($2)) OR c.assigned_to = $1)
                           AND (c.claim_until IS NULL OR c.claim_until < {NOW_MS})
                           AND {HOME_LIVE}
                         ORDER BY {ORDER}
                         LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING code, home_node)
                 SELECT claimed.code, claimed.home_node, n.address
                 FROM claimed JOIN sosq_nodes n ON n.node_id = claimed.home_node",
                ORDER = queue::ORDER_C
            );
            let claim = client.prepare_cached(&sql).await?;
            let found = client
                .query_opt(&claim, &[&expert, &teams, &millis(CLAIM_HOLD)])
                .await?;
            found
                .map(|row| {
                    Ok(Claim {
                        code: rows::code_from(&row, 0)?,
                        node: row.try_get(1)?,
                        address: row.try_get(2)?,
                    })
                })
                .transpose()
        })
        .await
    }

    /// Gives a claim back (the case could not be paired after all), so the next pull may
    /// take it at once.
    pub async fn release_claim(&self, code: SessionCode) -> Result<(), ClusterError> {
        self.with(async |client| {
            client
                .execute(
                    "UPDATE cases SET claimed_by = NULL, claim_until = NULL WHERE code = $1",
                    &[&rows::code_column(code)],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Where the case with this code lives.
    pub async fn locate(&self, code: SessionCode) -> Result<Home, ClusterError> {
        self.with(async |client| {
            let sql = format!(
                "SELECT c.state IN {OPEN}, c.home_node, n.address, n.lease_until - {NOW_MS}
                 FROM cases c LEFT JOIN sosq_nodes n ON n.node_id = c.home_node
                 WHERE c.code = $1"
            );
            let statement = client.prepare_cached(&sql).await?;
            let Some(row) = client
                .query_opt(&statement, &[&rows::code_column(code)])
                .await?
            else {
                return Ok(Home::Missing);
            };
            let open: bool = row.try_get(0)?;
            let node: Option<String> = row.try_get(1)?;
            let address: Option<String> = row.try_get(2)?;
            let left_ms: Option<i64> = row.try_get(3)?;
            Ok(match (open, node, address, left_ms) {
                (false, ..) => Home::Finished,
                (true, Some(node), _, _) if node == self.node => Home::Here,
                (true, Some(node), Some(address), Some(left)) if left > 0 => {
                    if node_stopped_renewing(left, self.lease) {
                        Home::Lapsing(Duration::from_millis(left as u64))
                    } else {
                        Home::Elsewhere { node, address }
                    }
                }
                _ => Home::Orphaned,
            })
        })
        .await
    }

    /// Whether the customer of `code` is connected to its (live) home node, as the rows
    /// say (waiting online in a queue, or in a session), and the expert in the case.
    pub async fn presence(
        &self,
        code: SessionCode,
    ) -> Result<(bool, Option<String>), ClusterError> {
        self.with(async |client| {
            let sql = format!(
                "SELECT c.queued = 'online' OR c.state = 'in_progress', c.expert, {HOME_LIVE}
                 FROM cases c WHERE c.code = $1"
            );
            let statement = client.prepare_cached(&sql).await?;
            let Some(row) = client
                .query_opt(&statement, &[&rows::code_column(code)])
                .await?
            else {
                return Ok((false, None));
            };
            let connected = row.try_get::<_, Option<bool>>(0)?.unwrap_or(false);
            let live: bool = row.try_get(2)?;
            let expert: Option<String> = row.try_get(1)?;
            Ok((connected && live, expert.filter(|_| live)))
        })
        .await
    }

    /// Takes an open case over for this node if its home node's lease lapsed (or it is
    /// already homed here, e.g. by an earlier process with this name): bumps its epoch,
    /// so its old home can no longer write it, and returns it with its history. `None`
    /// when the case is gone, finished or served by a live node.
    pub async fn take_over(&self, code: SessionCode) -> Result<Option<CaseRecord>, ClusterError> {
        let taken = self
            .with(async |client| {
                let sql = format!(
                    "UPDATE cases c SET home_node = $2, epoch = c.epoch + 1,
                         claimed_by = NULL, claim_until = NULL
                     WHERE c.code = $1 AND c.state IN {OPEN}
                       AND (c.home_node IS NULL OR c.home_node = $2 OR NOT {HOME_LIVE})
                     RETURNING c.epoch, {}",
                    crate::store::postgres::rows::CASE_COLUMNS_PREFIXED
                );
                let Some(row) = client
                    .query_opt(&sql, &[&rows::code_column(code), &self.node])
                    .await?
                else {
                    return Ok(None);
                };
                let epoch: i64 = row.try_get(0)?;
                let mut record = rows::case_from_row_at(&row, 1)?;
                record.history = rows::history_of(&***client, code).await?;
                Ok(Some((epoch, record)))
            })
            .await?;
        Ok(taken.map(|(epoch, record)| {
            self.ledger.hold(record.code, epoch);
            record
        }))
    }

    /// Up to `limit` open cases past their expiry whose home node's lease lapsed: nobody
    /// else will expire them, so a live node takes them over and its core expires them.
    pub async fn orphans_due(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<SessionCode>, ClusterError> {
        self.with(async |client| {
            let sql = format!(
                "SELECT c.code FROM cases c
                 WHERE c.state IN {OPEN} AND c.expires_at <= $1
                   AND NOT {HOME_LIVE}
                 ORDER BY c.expires_at LIMIT $2"
            );
            let found = client.query(&sql, &[&now_ms, &limit]).await?;
            found.iter().map(|row| rows::code_from(row, 0)).collect()
        })
        .await
    }

    /// A one-time ticket for `staff` (none for a customer) to redeem on `node` for `code`.
    pub async fn issue_ticket(
        &self,
        code: SessionCode,
        node: &str,
        staff: Option<&str>,
    ) -> Result<String, ClusterError> {
        let ticket = new_ticket();
        self.with(async |client| {
            let sql = format!(
                "INSERT INTO sosq_tickets (ticket, code, node_id, staff, expires_at)
                 VALUES ($1, $2, $3, $4, {NOW_MS} + $5)"
            );
            let insert = client.prepare_cached(&sql).await?;
            client
                .execute(
                    &insert,
                    &[
                        &ticket,
                        &rows::code_column(code),
                        &node,
                        &staff,
                        &millis(TICKET_LIFETIME),
                    ],
                )
                .await?;
            // Expired tickets of anyone's go too: the table stays as small as the traffic.
            let sql = format!("DELETE FROM sosq_tickets WHERE expires_at < {NOW_MS} - 60000");
            client
                .execute(&client.prepare_cached(&sql).await?, &[])
                .await?;
            Ok(())
        })
        .await?;
        Ok(ticket)
    }

    /// Redeems a ticket on this node: the case it was issued for, if it is valid (issued
    /// for this node and `staff`, not used, not expired). Used up either way.
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
        staff: Option<&str>,
    ) -> Result<Option<SessionCode>, ClusterError> {
        self.with(async |client| {
            let sql = format!(
                "DELETE FROM sosq_tickets WHERE ticket = $1
                 RETURNING code, node_id, staff, expires_at > {NOW_MS}"
            );
            let statement = client.prepare_cached(&sql).await?;
            let Some(row) = client.query_opt(&statement, &[&ticket]).await? else {
                return Ok(None);
            };
            let code = rows::code_from(&row, 0)?;
            let node: String = row.try_get(1)?;
            let owner: Option<String> = row.try_get(2)?;
            let fresh: bool = row.try_get(3)?;
            Ok((fresh && node == self.node && owner.as_deref() == staff).then_some(code))
        })
        .await
    }
}

/// Calls `woken` with the case's team (see [`QueueWake`]; `None` if the notification
/// cannot be read) whenever any node commits a case that waits online (`NOTIFY
/// sosq_queue`), over a connection of its own; returns when that connection ends (the
/// caller reconnects). A wake-up only: pulls poll as well, since notifications sent while
/// the connection was down are lost.
///
/// Errors: the connection cannot be made or the LISTEN fails.
pub async fn listen_for_cases(
    url: &str,
    woken: impl Fn(Option<QueueWake>),
) -> Result<(), ClusterError> {
    let failed = |e: &dyn std::fmt::Display| ClusterError::Database {
        store: crate::store::postgres::shown(url),
        cause: e.to_string(),
    };
    let mut config =
        crate::store::postgres::client_config(url, QUERY_TIMEOUT).map_err(|e| failed(&e))?;
    config.keepalives_idle(Duration::from_secs(5));
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| failed(&e))?;
    let listen = async {
        client
            .batch_execute("LISTEN sosq_queue")
            .await
            .map_err(|e| failed(&e))
    };
    // The connection must be polled for the LISTEN to complete and for notifications.
    let mut messages = std::pin::pin!(std::future::poll_fn(|cx| {
        loop {
            match connection.poll_message(cx) {
                std::task::Poll::Ready(Some(Ok(tokio_postgres::AsyncMessage::Notification(
                    note,
                )))) => woken(serde_json::from_str(note.payload()).ok()),
                std::task::Poll::Ready(Some(Ok(_))) => {}
                std::task::Poll::Ready(Some(Err(e))) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(())),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }));
    tokio::select! {
        listened = listen => listened?,
        ended = &mut messages => return ended.map_err(|e| failed(&e)),
    }
    messages.await.map_err(|e| failed(&e))
}

/// Whether a node whose lease ends in `left_ms` has missed renewals: a live node renews
/// every third of the lease, so its lease always has more than a third left... give or
/// take a slow round trip. Below a quarter, it is taken for stopped.
fn node_stopped_renewing(left_ms: i64, lease: Duration) -> bool {
    (left_ms as u128) < lease.as_millis() / 4
}

/// A duration in milliseconds, as the tables keep times.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// 128 random bits as hex: a ticket nobody can guess.
fn new_ticket() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    sosq::tls::hex(&bytes)
}
