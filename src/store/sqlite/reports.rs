//! The Reports page's queries on SQLite (see `store::reports` for what each counts). Each
//! reads a bounded result through an index: cases by creation (`cases_by_creation`),
//! finished cases by their end (`cases_finished`), cases by expiry and the audit log by
//! time (`reports_by_expiry`, `audit_by_time`: schema 4), history by its key.

use rusqlite::{params, Connection};
use sosq::protocol::Priority;

use super::rows::millis;
use crate::store::reports::{
    self, DayOutcomes, ExpertsReport, FirstResponse, QueueSeries, ReportWindow, DAY_MS,
    EXPERT_ATTACHED_SQL, EXPERT_NAME_SQL, RETENTION_ACTOR,
};

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn bad(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

/// See [`crate::store::CaseStore::first_responses`]. The median comes from the one or two
/// middle rows of each priority by `row_number()`, so no case leaves the database.
pub fn first_responses(
    conn: &Connection,
    window: &ReportWindow,
) -> rusqlite::Result<Vec<FirstResponse>> {
    let (from, to) = (millis(window.from()), millis(window.to()));
    let mut counts = conn.prepare_cached(
        "SELECT priority, count(*), count(first_response_at),
                count(CASE WHEN first_response_at <= response_due THEN 1 END)
         FROM cases
         WHERE created_at >= ?1 AND created_at < ?2 AND response_due IS NOT NULL
         GROUP BY priority",
    )?;
    let mut found = counts
        .query_map(params![from, to], |row| {
            let priority: String = row.get(0)?;
            Ok(FirstResponse {
                priority: priority.parse::<Priority>().map_err(|e| bad(0, e))?,
                cases: count(row.get(1)?),
                responded: count(row.get(2)?),
                within_target: count(row.get(3)?),
                median_ms: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut medians = conn.prepare_cached(
        "WITH ranked AS (
             SELECT priority, first_response_at - created_at AS ms,
                    row_number() OVER (PARTITION BY priority
                                       ORDER BY first_response_at - created_at) AS i,
                    count(*) OVER (PARTITION BY priority) AS n
             FROM cases
             WHERE created_at >= ?1 AND created_at < ?2 AND response_due IS NOT NULL
               AND first_response_at IS NOT NULL)
         SELECT priority, (min(ms) + max(ms)) / 2 FROM ranked
         WHERE i IN ((n + 1) / 2, (n + 2) / 2)
         GROUP BY priority",
    )?;
    let mut rows = medians.query(params![from, to])?;
    while let Some(row) = rows.next()? {
        let priority: String = row.get(0)?;
        let median: i64 = row.get(1)?;
        if let Some(found) = found.iter_mut().find(|f| f.priority.as_str() == priority) {
            found.median_ms = Some(count(median));
        }
    }
    Ok(reports::first_responses(found))
}

/// See [`crate::store::CaseStore::outcomes_by_day`].
pub fn outcomes_by_day(
    conn: &Connection,
    window: &ReportWindow,
) -> rusqlite::Result<Vec<DayOutcomes>> {
    let (from, to) = (millis(window.from()), millis(window.to()));
    let day = DAY_MS as i64;
    // The condition on state is the one `cases_finished` is partial on, so it is used.
    let mut ended = conn.prepare_cached(
        "SELECT updated_at / ?3 * ?3, state, count(*) FROM cases
         WHERE state IN ('closed', 'expired') AND updated_at >= ?1 AND updated_at < ?2
         GROUP BY 1, 2",
    )?;
    let (mut closed, mut expired) = (Vec::new(), Vec::new());
    let mut rows = ended.query(params![from, to, day])?;
    while let Some(row) = rows.next()? {
        let at = count(row.get(0)?);
        let state: String = row.get(1)?;
        let n = count(row.get(2)?);
        match state.as_str() {
            "closed" => closed.push((at, n)),
            _ => expired.push((at, n)),
        }
    }
    let mut audited = conn.prepare_cached(
        "SELECT at / ?3 * ?3, sum(count) FROM audit
         WHERE at >= ?1 AND at < ?2 AND action = 'delete' AND actor <> ?4
         GROUP BY 1",
    )?;
    let deleted = audited
        .query_map(params![from, to, day, RETENTION_ACTOR], |row| {
            Ok((count(row.get(0)?), count(row.get(1)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(reports::outcome_days(window, &closed, &expired, &deleted))
}

/// See [`crate::store::CaseStore::queue_length`]. A sweep: each case that can have waited
/// in the window (its expiry after the window's start, found through
/// `reports_by_expiry`) adds 1 at the first point at or after its creation and takes 1
/// away at the first point at or after its wait ended (first response, close or expiry,
/// whichever came first); a running sum over the points is the queue. It costs those
/// cases plus the points, not the points times the cases.
pub fn queue_length(conn: &Connection, window: &ReportWindow) -> rusqlite::Result<QueueSeries> {
    let step = i64::try_from(window.queue_step_ms()).unwrap_or(i64::MAX);
    let points = i64::try_from(window.queue_points()).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "WITH waits AS (
             SELECT created_at AS start,
                    min(coalesce(first_response_at, expires_at),
                        CASE WHEN state IN ('closed', 'expired') THEN updated_at
                             ELSE expires_at END,
                        expires_at) AS finish
             FROM cases
             -- `+` keeps SQLite off the creation index, which would walk every older case.
             WHERE expires_at > ?1 AND +created_at < ?2 AND response_due IS NOT NULL),
         changes AS (
             SELECT CASE WHEN start <= ?1 THEN 0 ELSE (start - ?1 + ?3 - 1) / ?3 END AS point,
                    1 AS change FROM waits
             UNION ALL
             SELECT CASE WHEN finish <= ?1 THEN 0 ELSE (finish - ?1 + ?3 - 1) / ?3 END,
                    -1 FROM waits)
         SELECT point, sum(sum(change)) OVER (ORDER BY point) FROM changes
         WHERE point < ?4 GROUP BY point ORDER BY point",
    )?;
    let running = statement
        .query_map(
            params![millis(window.from()), millis(window.to()), step, points],
            |row| Ok((count(row.get(0)?), row.get::<_, i64>(1)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(reports::queue_series(window, &running))
}

/// See [`crate::store::CaseStore::cases_per_expert`].
pub fn cases_per_expert(
    conn: &Connection,
    window: &ReportWindow,
    top: usize,
) -> rusqlite::Result<ExpertsReport> {
    let (from, to) = (millis(window.from()), millis(window.to()));
    let taken = format!(
        "SELECT DISTINCT h.code, {EXPERT_NAME_SQL} AS expert
         FROM cases c JOIN history h ON h.code = c.code
         WHERE c.created_at >= ?1 AND c.created_at < ?2 AND {EXPERT_ATTACHED_SQL}"
    );
    let mut busiest = conn.prepare_cached(&format!(
        "SELECT expert, count(*) AS n FROM ({taken}) GROUP BY expert
         ORDER BY n DESC, expert LIMIT ?3"
    ))?;
    let limit = i64::try_from(top).unwrap_or(i64::MAX);
    let rows = busiest
        .query_map(params![from, to, limit], |row| {
            Ok((row.get::<_, String>(0)?, count(row.get(1)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (total, experts) = conn
        .prepare_cached(&format!(
            "SELECT count(*), count(DISTINCT expert) FROM ({taken})"
        ))?
        .query_row(params![from, to], |row| {
            Ok((count(row.get(0)?), count(row.get(1)?)))
        })?;
    Ok(reports::experts_report(rows, top, total, experts))
}
