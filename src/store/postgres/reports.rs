//! The Reports page's queries on PostgreSQL: the same figures as the SQLite store's
//! (`store::sqlite::reports`, which explains each), in PostgreSQL's words: `LEAST`, and
//! casts where `sum` of a `bigint` would give a `numeric`. Indexes: `cases_by_creation`,
//! `cases_by_state`, and the report ones (`REPORT_INDEXES` in `rows.rs`).

use sosq::protocol::Priority;
use tokio_postgres::GenericClient;

use super::rows::{millis, Failure};
use crate::store::reports::{
    self, DayOutcomes, ExpertsReport, FirstResponse, QueueSeries, ReportWindow, DAY_MS,
    EXPERT_ATTACHED_SQL, EXPERT_NAME_SQL, RETENTION_ACTOR,
};

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// See [`crate::store::CaseStore::first_responses`].
pub async fn first_responses(
    client: &impl GenericClient,
    window: &ReportWindow,
) -> Result<Vec<FirstResponse>, Failure> {
    let (from, to) = (millis(window.from()), millis(window.to()));
    let counts = client
        .query(
            "SELECT priority, count(*), count(first_response_at),
                    count(CASE WHEN first_response_at <= response_due THEN 1 END)
             FROM cases
             WHERE created_at >= $1 AND created_at < $2 AND response_due IS NOT NULL
             GROUP BY priority",
            &[&from, &to],
        )
        .await?;
    let mut found = Vec::with_capacity(counts.len());
    for row in &counts {
        let priority: String = row.try_get(0)?;
        found.push(FirstResponse {
            priority: priority.parse::<Priority>().map_err(Failure::from_text)?,
            cases: count(row.try_get(1)?),
            responded: count(row.try_get(2)?),
            within_target: count(row.try_get(3)?),
            median_ms: None,
        });
    }
    let medians = client
        .query(
            "WITH ranked AS (
                 SELECT priority, first_response_at - created_at AS ms,
                        row_number() OVER (PARTITION BY priority
                                           ORDER BY first_response_at - created_at) AS i,
                        count(*) OVER (PARTITION BY priority) AS n
                 FROM cases
                 WHERE created_at >= $1 AND created_at < $2 AND response_due IS NOT NULL
                   AND first_response_at IS NOT NULL)
             SELECT priority, (min(ms) + max(ms)) / 2 FROM ranked
             WHERE i IN ((n + 1) / 2, (n + 2) / 2)
             GROUP BY priority",
            &[&from, &to],
        )
        .await?;
    for row in &medians {
        let priority: String = row.try_get(0)?;
        let median: i64 = row.try_get(1)?;
        if let Some(found) = found.iter_mut().find(|f| f.priority.as_str() == priority) {
            found.median_ms = Some(count(median));
        }
    }
    Ok(reports::first_responses(found))
}

/// See [`crate::store::CaseStore::outcomes_by_day`].
pub async fn outcomes_by_day(
    client: &impl GenericClient,
    window: &ReportWindow,
) -> Result<Vec<DayOutcomes>, Failure> {
    let (from, to) = (millis(window.from()), millis(window.to()));
    let day = DAY_MS as i64;
    let ended = client
        .query(
            "SELECT updated_at / $3 * $3, state, count(*) FROM cases
             WHERE state IN ('closed', 'expired') AND updated_at >= $1 AND updated_at < $2
             GROUP BY 1, 2",
            &[&from, &to, &day],
        )
        .await?;
    let (mut closed, mut expired) = (Vec::new(), Vec::new());
    for row in &ended {
        let at = count(row.try_get(0)?);
        let state: String = row.try_get(1)?;
        let n = count(row.try_get(2)?);
        match state.as_str() {
            "closed" => closed.push((at, n)),
            _ => expired.push((at, n)),
        }
    }
    let audited = client
        .query(
            "SELECT at / $3 * $3, sum(count)::bigint FROM audit
             WHERE at >= $1 AND at < $2 AND action = 'delete' AND actor <> $4
             GROUP BY 1",
            &[&from, &to, &day, &RETENTION_ACTOR],
        )
        .await?;
    let deleted = audited
        .iter()
        .map(|row| Ok((count(row.try_get(0)?), count(row.try_get(1)?))))
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(reports::outcome_days(window, &closed, &expired, &deleted))
}

/// See [`crate::store::CaseStore::queue_length`] and the SQLite store's sweep.
pub async fn queue_length(
    client: &impl GenericClient,
    window: &ReportWindow,
) -> Result<QueueSeries, Failure> {
    let step = i64::try_from(window.queue_step_ms()).unwrap_or(i64::MAX);
    let points = i64::try_from(window.queue_points()).unwrap_or(i64::MAX);
    let found = client
        .query(
            "WITH waits AS (
                 SELECT created_at AS start,
                        LEAST(coalesce(first_response_at, expires_at),
                              CASE WHEN state IN ('closed', 'expired') THEN updated_at
                                   ELSE expires_at END,
                              expires_at) AS finish
                 FROM cases
                 WHERE expires_at > $1 AND created_at < $2 AND response_due IS NOT NULL),
             changes AS (
                 SELECT CASE WHEN start <= $1 THEN 0 ELSE (start - $1 + $3 - 1) / $3 END
                            AS point,
                        1 AS change FROM waits
                 UNION ALL
                 SELECT CASE WHEN finish <= $1 THEN 0 ELSE (finish - $1 + $3 - 1) / $3 END,
                        -1 FROM waits)
             SELECT point, (sum(sum(change)) OVER (ORDER BY point))::bigint FROM changes
             WHERE point < $4 GROUP BY point ORDER BY point",
            &[&millis(window.from()), &millis(window.to()), &step, &points],
        )
        .await?;
    let running = found
        .iter()
        .map(|row| Ok((count(row.try_get(0)?), row.try_get::<_, i64>(1)?)))
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(reports::queue_series(window, &running))
}

/// See [`crate::store::CaseStore::cases_per_expert`]. Names sort bytewise (`COLLATE "C"`),
/// as in SQLite and the memory store, whatever the database's locale.
pub async fn cases_per_expert(
    client: &impl GenericClient,
    window: &ReportWindow,
    top: usize,
) -> Result<ExpertsReport, Failure> {
    let (from, to) = (millis(window.from()), millis(window.to()));
    let taken = format!(
        "SELECT DISTINCT h.code, {EXPERT_NAME_SQL} AS expert
         FROM cases c JOIN history h ON h.code = c.code
         WHERE c.created_at >= $1 AND c.created_at < $2 AND {EXPERT_ATTACHED_SQL}"
    );
    let limit = i64::try_from(top).unwrap_or(i64::MAX);
    let busiest = client
        .query(
            &format!(
                "SELECT expert, count(*) AS n FROM ({taken}) AS taken GROUP BY expert
                 ORDER BY n DESC, expert COLLATE \"C\" LIMIT $3"
            ),
            &[&from, &to, &limit],
        )
        .await?;
    let rows = busiest
        .iter()
        .map(|row| Ok((row.try_get::<_, String>(0)?, count(row.try_get(1)?))))
        .collect::<Result<Vec<_>, Failure>>()?;
    let totals = client
        .query_one(
            &format!("SELECT count(*), count(DISTINCT expert) FROM ({taken}) AS taken"),
            &[&from, &to],
        )
        .await?;
    Ok(reports::experts_report(
        rows,
        top,
        count(totals.try_get(0)?),
        count(totals.try_get(1)?),
    ))
}
