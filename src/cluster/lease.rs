//! A node's lease on its name and its cases: joining the cluster, renewing every third
//! of the lease, giving it up at a clean stop, and what the rows say this node serves.

use sosq::SessionCode;

use super::{millis, Cluster, ClusterError, NOW_MS, OPEN, QUERY_TIMEOUT};
use crate::store::postgres::rows;

impl Cluster {
    /// Joins the cluster: waits out the lease of an earlier process with this node name
    /// (one killed a moment ago), takes the name, and frees the codes an earlier process
    /// reserved but never used. The tables are the node's store's to make: open it
    /// (`PgStore::open_node`) first.
    ///
    /// Errors: the database fails, or another live process keeps renewing this name.
    pub async fn register(&self) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + 2 * self.lease + QUERY_TIMEOUT;
        loop {
            let taken = self
                .with(async |client| {
                    let sql = format!(
                        "INSERT INTO sosq_nodes (node_id, address, lease_until, started_at)
                         VALUES ($1, $2, {NOW_MS} + $3, {NOW_MS})
                         ON CONFLICT (node_id) DO UPDATE SET address = excluded.address,
                             lease_until = excluded.lease_until, started_at = excluded.started_at
                         WHERE sosq_nodes.lease_until < {NOW_MS}
                         RETURNING started_at"
                    );
                    let row = client
                        .query_opt(&sql, &[&self.node, &self.address, &millis(self.lease)])
                        .await?;
                    Ok(row.map(|row| row.get::<_, i64>(0)))
                })
                .await?;
            if let Some(started) = taken {
                self.incarnation
                    .store(started, std::sync::atomic::Ordering::Relaxed);
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::NodeTaken(self.node.clone()));
            }
            tracing::warn!(node = %self.node, "this node name's lease is still held (a process killed a moment ago, or another one running); waiting for it to lapse");
            tokio::time::sleep(self.lease / 3).await;
        }
        self.with(async |client| {
            client
                .execute(
                    "DELETE FROM sosq_codes s WHERE s.node_id = $1
                     AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.code = s.code)",
                    &[&self.node],
                )
                .await?;
            Ok(())
        })
        .await?;
        self.nobody_here().await
    }

    /// Marks every case homed on this node that the rows show waiting online as waiting
    /// offline: this process holds none of their customers (it just started, or it let
    /// every party go when its lease lapsed), so no pull must be handed them until their
    /// customers are back.
    pub async fn nobody_here(&self) -> Result<(), ClusterError> {
        self.with(async |client| {
            client
                .execute(
                    "UPDATE cases SET queued = 'away' WHERE home_node = $1 AND queued = 'online'",
                    &[&self.node],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Renews this node's lease. Errors: the database fails (the caller keeps its lease
    /// only as long as its last renewal allows), or another process took the node's name.
    pub async fn renew(&self) -> Result<(), ClusterError> {
        let incarnation = self.incarnation.load(std::sync::atomic::Ordering::Relaxed);
        let renewed = self
            .with(async |client| {
                let sql = format!(
                    "UPDATE sosq_nodes SET lease_until = {NOW_MS} + $2, address = $3
                     WHERE node_id = $1 AND started_at = $4"
                );
                Ok(client
                    .execute(
                        &sql,
                        &[&self.node, &millis(self.lease), &self.address, &incarnation],
                    )
                    .await?)
            })
            .await?;
        if renewed == 0 {
            return Err(ClusterError::NodeTaken(self.node.clone()));
        }
        Ok(())
    }

    /// Gives up the lease at a clean shutdown, so other nodes take the cases over at once.
    pub async fn resign(&self) -> Result<(), ClusterError> {
        let incarnation = self.incarnation.load(std::sync::atomic::Ordering::Relaxed);
        self.with(async |client| {
            client
                .execute(
                    "UPDATE sosq_nodes SET lease_until = 0 WHERE node_id = $1 AND started_at = $2",
                    &[&self.node, &incarnation],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// The open cases the store says this node serves, with their epochs.
    pub async fn homed_here(&self) -> Result<Vec<(SessionCode, i64)>, ClusterError> {
        self.with(async |client| {
            let sql =
                format!("SELECT code, epoch FROM cases WHERE home_node = $1 AND state IN {OPEN}");
            let found = client.query(&sql, &[&self.node]).await?;
            found
                .iter()
                .map(|row| Ok((rows::code_from(row, 0)?, row.try_get::<_, i64>(1)?)))
                .collect()
        })
        .await
    }
}
