//! The admin's audit log: newest first, a page at a time by entry id (the store's
//! `audit_page`), and its CSV export, read page by page as the download goes.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::admin::{csv_download, csv_row};
use super::auth::Staff;
use super::layout::{clock_time, page, PageError};
use super::WebState;

/// Entries per page of the audit log.
const PAGE_ENTRIES: usize = 100;
/// Entries per read while exporting.
const EXPORT_PAGE: usize = 1_000;

/// Which page of the log.
#[derive(Debug, Default, Deserialize)]
pub struct AuditView {
    /// Entries with ids below this one (the last id of the previous page).
    before: Option<u64>,
}

/// `GET /admin/audit`.
pub async fn show(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(view): Query<AuditView>,
) -> Result<Markup, PageError> {
    staff.require_admin("the audit log")?;
    let entries = state
        .shared
        .audit_page(view.before, PAGE_ENTRIES)
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let next = (entries.len() == PAGE_ENTRIES)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(page(
        "Audit log",
        Some(&staff.viewer()),
        None,
        html! {
            p { a href="/admin/audit.csv" download { "Export CSV" } }
            table #audit {
                thead { tr { th { "When" } th { "Who" } th { "From" } th { "Action" } th { "What" } th { "Cases" } } }
                tbody {
                    @if entries.is_empty() { tr { td colspan="6" { "Nothing yet." } } }
                    @for record in &entries {
                        @let e = &record.entry;
                        tr { td { (clock_time(e.at)) } td { (e.actor) } td { (e.address.as_deref().unwrap_or("")) } td { (e.action) } td { (e.selector) } td { (e.count) } }
                    }
                }
            }
            @if let Some(next) = next {
                p { a href={ "/admin/audit?before=" (next) } { "Older entries" } }
            }
        },
    ))
}

/// `GET /admin/audit.csv`: the whole log, newest first.
pub async fn csv(State(state): State<Arc<WebState>>, staff: Staff) -> Result<Response, PageError> {
    staff.require_admin("the audit log")?;
    let header_row =
        csv_row(&["at", "actor", "address", "action", "selector", "count"].map(String::from));
    let stream = futures_util::stream::unfold(
        (state, None::<u64>, Some(header_row), false),
        |(state, before, header_row, done)| async move {
            if let Some(row) = header_row {
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(row)),
                    (state, before, None, false),
                ));
            }
            if done {
                return None;
            }
            let entries = match state.shared.audit_page(before, EXPORT_PAGE).await {
                Ok(entries) => entries,
                Err(e) => {
                    return Some((Err(std::io::Error::other(e)), (state, before, None, true)))
                }
            };
            let mut chunk = String::new();
            for record in &entries {
                let e = &record.entry;
                chunk.push_str(&csv_row(&[
                    clock_time(e.at),
                    e.actor.clone(),
                    e.address.clone().unwrap_or_default(),
                    e.action.clone(),
                    e.selector.clone(),
                    e.count.to_string(),
                ]));
            }
            let finished = entries.len() < EXPORT_PAGE;
            let next = entries.last().map(|r| r.id).or(before);
            Some((Ok(Bytes::from(chunk)), (state, next, None, finished)))
        },
    );
    Ok(csv_download("sosq-audit.csv", Body::from_stream(stream)))
}
