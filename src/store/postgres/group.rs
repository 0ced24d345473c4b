//! Committing a group of submissions (group commit, as the SQLite writer does): one
//! transaction for the lot. On a cluster node, a group of saves only (intake, pairing,
//! departures: the common case) sends the saves of different cases side by side, so
//! tokio-postgres pipelines them over the one connection (BEGIN and the wake-up with
//! them) and the group costs about one round trip per save of its busiest case, plus the
//! COMMIT, not one per statement.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use sosq::SessionCode;
use tokio_postgres::{Client, GenericClient};

use super::save::Statements;
use super::{database, rows, Done, Ledger, Link, QUERY_TIMEOUT, STALLED};
use crate::broker::{CaseRecord, Persist};
use crate::store::CommitReport;

/// Commits a group of submissions in one transaction, each in a savepoint so that one
/// failing submission fails alone; answers each ticket. A lost or stalled connection
/// fails the whole group with the reason (nothing of it is acknowledged).
pub(super) fn commit_group(link: &mut Link, group: Vec<(Vec<Persist>, Done)>) {
    if group.is_empty() {
        return;
    }
    if let Err(error) = link.ready() {
        for (_, done) in group {
            let _ = done.send(Err(error.clone()));
        }
        return;
    }
    let shown = link.shown.clone();
    let ledger = link.ledger.clone();
    let client = &mut link.client;
    let statements = &link.statements;
    let outcomes = link.runtime.block_on(async {
        let work = async {
            // Fast path: the whole group in one transaction without savepoints, which
            // would double its round trips. A submission failing (a fenced write) sends
            // the group to the careful path below, each submission in a savepoint.
            let mut created = Vec::new();
            let fast =
                commit_fast(client, statements, ledger.as_deref(), &group, &mut created).await;
            if let Ok(reports) = fast {
                if let Some(ledger) = &ledger {
                    for code in created {
                        ledger.hold(code, 1);
                    }
                }
                return Ok(reports.into_iter().map(Ok).collect());
            }
            created.clear();
            let mut tx = client.transaction().await?;
            let mut outcomes = Vec::with_capacity(group.len());
            for (ops, _) in &group {
                let savepoint = tx.savepoint("submission").await?;
                let before = created.len();
                match rows::apply(&savepoint, statements, ledger.as_deref(), ops, &mut created)
                    .await
                {
                    Ok(report) => {
                        savepoint.commit().await?;
                        outcomes.push(Ok(report));
                    }
                    Err(error) => {
                        savepoint.rollback().await?;
                        created.truncate(before);
                        outcomes.push(Err(database(&shown, error)));
                    }
                }
            }
            notify_if_waiting(&tx, statements, ledger.as_deref(), &group).await?;
            tx.commit().await?;
            // Only now are the new rows there for this node's own checks (`cluster_node`).
            if let Some(ledger) = &ledger {
                for code in created {
                    ledger.hold(code, 1);
                }
            }
            Ok::<_, rows::Failure>(outcomes)
        };
        tokio::time::timeout(QUERY_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| {
                STALLED.with(|stalled| stalled.set(true));
                Err(rows::Failure::timed_out("committing"))
            })
    });
    match outcomes {
        Ok(outcomes) => {
            for ((_, done), outcome) in group.into_iter().zip(outcomes) {
                let _ = done.send(outcome);
            }
        }
        Err(error) => {
            let error = database(&shown, error);
            tracing::error!(%error, "case store commit failed");
            // Whatever the server did with a stalled transaction, it never committed it
            // for us: `ready` starts over on a fresh connection.
            for (_, done) in group {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}

/// The fast path of [`commit_group`]: the whole group in one transaction, no savepoints;
/// rolled back if any statement fails. The new rows go to `created`.
async fn commit_fast(
    client: &Client,
    statements: &Statements,
    ledger: Option<&Ledger>,
    group: &[(Vec<Persist>, Done)],
    created: &mut Vec<SessionCode>,
) -> Result<Vec<CommitReport>, rows::Failure> {
    let changes = async {
        match ledger {
            Some(ledger) if only_saves(group) => {
                saves_side_by_side(client, statements, ledger, group, created).await
            }
            _ => {
                let mut reports = Vec::with_capacity(group.len());
                for (ops, _) in group {
                    reports.push(rows::apply(client, statements, ledger, ops, created).await?);
                }
                Ok(reports)
            }
        }
    };
    // BEGIN goes out with the group's first statements (polled in this order, each sends
    // its request at once), not a round trip ahead of them. BEGIN only fails with the
    // connection, and then so does everything after it.
    let (begun, notified, reports) = tokio::join!(
        biased;
        client.batch_execute("BEGIN"),
        notify_if_waiting(client, statements, ledger, group),
        changes,
    );
    let outcome = begun
        .map_err(rows::Failure::from)
        .and(notified)
        .and(reports);
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    client.batch_execute(end).await?;
    outcome
}

/// The cases that now wait online wake the nodes' waiting pulls when the transaction
/// commits (LISTEN/NOTIFY is only a wake-up: they also poll).
async fn notify_if_waiting(
    tx: &impl GenericClient,
    statements: &Statements,
    ledger: Option<&Ledger>,
    group: &[(Vec<Persist>, Done)],
) -> Result<(), rows::Failure> {
    let mut wakes: Vec<String> = group
        .iter()
        .flat_map(|(ops, _)| super::save::queue_wakes(ledger, ops))
        .filter_map(|wake| serde_json::to_string(&wake).ok())
        .collect();
    wakes.sort_unstable();
    wakes.dedup();
    if !wakes.is_empty() {
        tx.execute(&statements.notify, &[&wakes]).await?;
    }
    Ok(())
}

/// Whether every change in the group is a case save.
fn only_saves(group: &[(Vec<Persist>, Done)]) -> bool {
    group
        .iter()
        .all(|(ops, _)| ops.iter().all(|op| matches!(op, Persist::Save(_))))
}

/// The group's saves, each case's in order, different cases side by side; the new rows
/// are added to `created`. One report (empty: saves delete nothing) per submission.
async fn saves_side_by_side(
    tx: &impl GenericClient,
    statements: &Statements,
    ledger: &Ledger,
    group: &[(Vec<Persist>, Done)],
    created: &mut Vec<SessionCode>,
) -> Result<Vec<CommitReport>, rows::Failure> {
    let mut chains: Vec<(SessionCode, Vec<&CaseRecord>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (ops, _) in group {
        for op in ops {
            if let Persist::Save(record) = op {
                let at = *index.entry(record.code).or_insert_with(|| {
                    chains.push((record.code, Vec::new()));
                    chains.len() - 1
                });
                chains[at].1.push(record);
            }
        }
    }
    type Chain<'a> = Pin<Box<dyn Future<Output = Result<Vec<SessionCode>, rows::Failure>> + 'a>>;
    let runs: Vec<Chain<'_>> = chains
        .into_iter()
        .map(|(_, records)| {
            Box::pin(async move {
                let mut made = Vec::new();
                for record in records {
                    super::save::save(tx, statements, Some(ledger), record, &mut made).await?;
                }
                Ok(made)
            }) as Chain<'_>
        })
        .collect();
    for made in join_all(runs).await {
        created.extend(made?);
    }
    Ok(group.iter().map(|_| CommitReport::default()).collect())
}

/// Polls every future until all are done; their outputs in order.
async fn join_all<T>(mut futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
