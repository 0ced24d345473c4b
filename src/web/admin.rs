//! The admin's views: every stored case in a table with filters, paged by key (creation
//! time and code, the same pages as `sosq cases`), ticked rows or "all that match" deleted
//! after a confirmation that names the count and the filter, a CSV export of the filtered
//! cases. Every read and delete is the wire's request for it; the count of matching
//! cases is the store's, capped (`store::DEFAULT_COUNT_CAP`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use sosq::protocol::{CasesCursor, CasesPage, DeleteSelector, Reply, Request};

use super::auth::Staff;
use super::case_filter::Filter;
use super::layout::{clock_time, page, PageError};
use super::queue::encode;
use super::WebState;

/// Rows per page of the case table.
const PAGE_ROWS: u32 = 50;
/// Cases per page read while exporting CSV (the protocol's largest page).
const EXPORT_PAGE: u32 = sosq::protocol::MAX_PAGE_ITEMS;

/// One page of cases matching `filter`, after `after`.
async fn fetch(
    state: &WebState,
    staff: &Staff,
    filter: &Filter,
    after: Option<CasesCursor>,
    limit: u32,
) -> Result<CasesPage, PageError> {
    let request = Request::Cases {
        filter: filter.to_wire()?,
        after,
        limit,
    };
    match state.run(&staff.caller, request).await {
        Reply::Cases(page) => Ok(page),
        other => Err(PageError::unexpected(&other)),
    }
}

fn cursor(text: &str) -> Result<Option<CasesCursor>, PageError> {
    match text.trim() {
        "" => Ok(None),
        token => token
            .parse()
            .map(Some)
            .map_err(|e: String| PageError::new(StatusCode::BAD_REQUEST, e)),
    }
}

/// "12", or "100,000+" at the count's cap.
fn count_text(count: u64) -> String {
    let mut grouped = sosq::protocol::thousands(count);
    if count >= crate::store::DEFAULT_COUNT_CAP {
        grouped.push('+');
    }
    grouped
}

/// `GET /admin/cases`.
pub async fn cases(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(filter): Query<Filter>,
) -> Result<Markup, PageError> {
    staff.require_admin("listing and deleting all cases")?;
    let page_of = fetch(&state, &staff, &filter, cursor(&filter.after)?, PAGE_ROWS).await?;
    let matching = state
        .shared
        .count_cases(&filter.to_wire()?)
        .await
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e))?;
    let flash = state.sessions.take_flash(&staff.session);
    let query = filter.query();
    let joiner = if query.is_empty() { "" } else { "&" };
    Ok(page(
        "All cases",
        Some(&staff.viewer()),
        flash.as_deref(),
        html! {
            form.filters method="get" action="/admin/cases" {
                (filter.inputs())
                button type="submit" { "Filter" }
                a href={ "/admin/cases.csv?" (query) } download { "Export CSV" }
            }
            p #match-count { (count_text(matching)) " case(s) match: " (filter.describe()) "." }
            form #delete-form method="post" action="/admin/delete" {
                input type="hidden" name="csrf" value=(staff.csrf);
                (filter.hidden())
                table #cases {
                    thead { tr {
                        th { input type="checkbox" #select-page aria-label="select every case on this page"; }
                        th { "Code" } th { "State" } th { "Customer" } th { "Description" } th { "Team" }
                        th { "Priority" } th { "Created" } th { "Last change" }
                    } }
                    tbody {
                        @if page_of.cases.is_empty() { tr { td colspan="9" { "No case matches." } } }
                        @for c in &page_of.cases {
                            tr {
                                td { input type="checkbox" name="code" value=(c.code) aria-label={ "select " (c.code) }; }
                                td { a href={ "/cases/" (c.code) } { (c.code) } }
                                td { (c.state) } td { (c.customer) } td.description { (c.description) }
                                td { (c.group) } td { (c.priority) } td { (clock_time(c.created_at)) } td { (clock_time(c.updated_at)) }
                            }
                        }
                    }
                }
                p.bulk {
                    button type="submit" name="scope" value="ticked" { "Delete ticked cases…" }
                    " "
                    @if !filter.to_wire()?.is_empty() && matching > 0 {
                        button type="submit" name="scope" value="all" { "Delete all " (count_text(matching)) " that match…" }
                    }
                }
            }
            @if let Some(next) = page_of.next {
                p { a #next-page href={ "/admin/cases?" (query) (joiner) "after=" (encode(&next.to_string())) } { "Next page" } }
            }
        },
    ))
}

/// The delete form's fields, read by hand: ticked codes come as repeated `code` fields.
#[derive(Debug, Default)]
struct DeleteForm {
    csrf: String,
    scope: String,
    confirm: bool,
    codes: Vec<String>,
    filter: Filter,
}

impl DeleteForm {
    fn parse(body: &[u8]) -> DeleteForm {
        let mut form = DeleteForm::default();
        for (key, value) in form_urlencoded::parse(body) {
            let value = value.into_owned();
            match key.as_ref() {
                "csrf" => form.csrf = value,
                "scope" => form.scope = value,
                "confirm" => form.confirm = value == "yes",
                "code" if form.codes.len() < sosq::protocol::MAX_CODES_PER_DELETE => {
                    form.codes.push(value)
                }
                name => {
                    form.filter.set(name, value);
                }
            }
        }
        form
    }
}

/// `POST /admin/delete`: first a confirmation naming the count and the filter, then (with
/// `confirm=yes`) the delete, whose result names the count deleted.
pub async fn delete(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = DeleteForm::parse(&body);
    staff.check_csrf(&form.csrf)?;
    staff.require_admin("listing and deleting all cases")?;
    let (selector, what) = match form.scope.as_str() {
        "ticked" if form.codes.is_empty() => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "tick at least one case first",
            ));
        }
        "ticked" => {
            let codes = form
                .codes
                .iter()
                .map(|c| {
                    c.parse().map_err(|e: sosq::code::BadCode| {
                        PageError::new(StatusCode::BAD_REQUEST, e.to_string())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let what = format!("{} ticked case(s): {}", codes.len(), form.codes.join(", "));
            (DeleteSelector::Codes(codes), what)
        }
        "all" => {
            let wire = form.filter.to_wire()?;
            if wire.is_empty() {
                // The daemon refuses it too; say so before a confirmation offers it.
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    "a bulk delete needs a filter; refusing to delete every case (tick the cases instead)",
                ));
            }
            let matching = state
                .shared
                .count_cases(&wire)
                .await
                .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e))?;
            let what = format!(
                "all {} case(s) matching {}",
                count_text(matching),
                form.filter.describe()
            );
            (DeleteSelector::Filter(wire), what)
        }
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "say which cases: the ticked ones or all that match",
            ))
        }
    };
    if !form.confirm {
        return Ok(page(
            "Delete cases?",
            Some(&staff.viewer()),
            None,
            html! {
                p.warning #confirm-what role="alert" { "Delete " (what) "? Open cases among them end their sessions. This cannot be undone." }
                form method="post" action="/admin/delete" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    input type="hidden" name="scope" value=(form.scope);
                    (form.filter.hidden())
                    @for code in &form.codes { input type="hidden" name="code" value=(code); }
                    button.danger type="submit" name="confirm" value="yes" autofocus { "Delete" }
                    " "
                    a href={ "/admin/cases?" (form.filter.query()) } { "Cancel" }
                }
            },
        )
        .into_response());
    }
    let message = match state.run(&staff.caller, Request::Delete(selector)).await {
        Reply::Deleted { count, not_found } if not_found.is_empty() => {
            format!("Deleted {count} case(s) ({what}).")
        }
        Reply::Deleted { count, not_found } => format!(
            "Deleted {count} case(s); {} were already gone.",
            not_found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => return Err(PageError::unexpected(&other)),
    };
    state.sessions.flash(&staff.session, message);
    Ok(Redirect::to(&format!("/admin/cases?{}", form.filter.query())).into_response())
}

/// One CSV cell: quoted, quotes doubled, and a cell a spreadsheet would run as a formula
/// (starting `=`, `+`, `-`, `@`, tab or carriage return; OWASP "CSV injection") prefixed
/// with `'` so it shows as text.
pub fn csv_cell(text: &str) -> String {
    let guarded = match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

pub fn csv_row(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// `GET /admin/cases.csv`: every case matching the filter, read a page at a time as the
/// download goes, so the export holds one page in memory however many cases match. A
/// failure part-way cuts the download off with an error rather than ending it as if
/// complete.
pub async fn cases_csv(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(filter): Query<Filter>,
) -> Result<Response, PageError> {
    staff.require_admin("listing and deleting all cases")?;
    filter.to_wire()?;
    let header_row = csv_row(
        &[
            "code",
            "state",
            "customer",
            "description",
            "team",
            "priority",
            "assigned_to",
            "created_at",
            "updated_at",
            "expires_at",
            "first_response_at",
        ]
        .map(String::from),
    );
    let stream = futures_util::stream::unfold(
        (
            state,
            staff,
            filter,
            None::<CasesCursor>,
            Some(header_row),
            false,
        ),
        move |(state, staff, filter, after, header_row, done)| async move {
            if let Some(row) = header_row {
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(row)),
                    (state, staff, filter, after, None, false),
                ));
            }
            if done {
                return None;
            }
            let page_of = match fetch(&state, &staff, &filter, after, EXPORT_PAGE).await {
                Ok(page_of) => page_of,
                Err(e) => {
                    return Some((
                        Err(std::io::Error::other(e.message)),
                        (state, staff, filter, after, None, true),
                    ))
                }
            };
            let mut chunk = String::new();
            for c in &page_of.cases {
                chunk.push_str(&csv_row(&[
                    c.code.to_string(),
                    c.state.to_string(),
                    c.customer.clone(),
                    c.description.clone(),
                    c.group.clone(),
                    c.priority.to_string(),
                    c.assigned_to.clone().unwrap_or_default(),
                    clock_time(c.created_at),
                    clock_time(c.updated_at),
                    clock_time(c.expires_at),
                    c.first_response_at.map(clock_time).unwrap_or_default(),
                ]));
            }
            let finished = page_of.next.is_none();
            Some((
                Ok(Bytes::from(chunk)),
                (state, staff, filter, page_of.next, None, finished),
            ))
        },
    );
    Ok(csv_download("sosq-cases.csv", Body::from_stream(stream)))
}

/// A CSV download named `name`.
pub fn csv_download(name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}
