//! The admin's views: every stored case in a table with filters, paged by key (creation
//! time and code, the same pages as `sosq cases`), ticked rows or "all that match" deleted
//! after a confirmation that names the count and the filter, a CSV export of the filtered
//! cases, and the audit log. Every read and delete is the wire's request for it.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use sosq::protocol::{
    CaseFilter, CaseInfo, CaseState, CasesCursor, CasesPage, DeleteSelector, Reply, Request,
};

use super::auth::Staff;
use super::layout::{clock_time, page, PageError};
use super::queue::encode;
use super::WebState;

/// Rows per page of the case table.
const PAGE_ROWS: u32 = 50;
/// Cases per page read while exporting CSV (the protocol's largest page).
const EXPORT_PAGE: u32 = sosq::protocol::MAX_PAGE_ITEMS;

/// The case table's filter, from the query string (or the delete form's fields).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filter {
    /// A state name, or empty for all.
    #[serde(default)]
    state: String,
    /// Only cases created more than this long ago ("1d", "36h"), or empty.
    #[serde(default)]
    older: String,
    /// The page: right after this case (the token `sosq cases` prints).
    #[serde(default)]
    after: String,
}

impl Filter {
    fn state(&self) -> Result<Option<CaseState>, PageError> {
        match self.state.trim() {
            "" => Ok(None),
            name => name
                .parse()
                .map(Some)
                .map_err(|e: String| PageError::new(StatusCode::BAD_REQUEST, e)),
        }
    }

    fn older_than_ms(&self) -> Result<Option<u64>, PageError> {
        match self.older.trim() {
            "" => Ok(None),
            text => humantime::parse_duration(text)
                .map(|d| Some(d.as_millis() as u64))
                .map_err(|e| {
                    PageError::new(
                        StatusCode::BAD_REQUEST,
                        format!("{text:?} is not an age such as 1d or 36h: {e}"),
                    )
                }),
        }
    }

    /// The wire's filter.
    fn to_wire(&self) -> Result<CaseFilter, PageError> {
        Ok(CaseFilter {
            state: self.state()?,
            older_than_ms: self.older_than_ms()?,
        })
    }

    /// The filter in words, for the confirmation and the result.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.state.trim().is_empty() {
            parts.push(format!("state {}", self.state.trim()));
        }
        if !self.older.trim().is_empty() {
            parts.push(format!("created more than {} ago", self.older.trim()));
        }
        if parts.is_empty() {
            "no filter (every case)".into()
        } else {
            parts.join(", ")
        }
    }

    /// The query string of this filter without the page.
    fn query(&self) -> String {
        [("state", &self.state), ("older", &self.older)]
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Refuses staff who are not admins, with the wire's words.
fn admin_only(staff: &Staff) -> Result<(), PageError> {
    if staff.is_admin() {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "listing and deleting all cases is for admins; you are signed in as an expert",
        ))
    }
}

/// One page of cases matching `filter`, after `after`.
async fn fetch(
    state: &WebState,
    staff: &Staff,
    filter: &Filter,
    after: Option<CasesCursor>,
    limit: u32,
) -> Result<CasesPage, PageError> {
    let request = Request::Cases {
        state: filter.state()?,
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

/// `GET /admin/cases`.
pub async fn cases(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(filter): Query<Filter>,
) -> Result<Markup, PageError> {
    admin_only(&staff)?;
    let older = filter.older_than_ms()?;
    let now = state.shared.now();
    let page_of = fetch(&state, &staff, &filter, cursor(&filter.after)?, PAGE_ROWS).await?;
    // `Request::Cases` filters by state; the age filter narrows the page (cases are in
    // creation order, so once one is too young every later one is too).
    let shown: Vec<&CaseInfo> = page_of
        .cases
        .iter()
        .filter(|c| older.is_none_or(|ms| c.created_at.0 < now.0.saturating_sub(ms)))
        .collect();
    let more = page_of.next.filter(|_| shown.len() == page_of.cases.len());
    let flash = state.sessions.take_flash(&staff.session);
    let query = filter.query();
    Ok(page(
        "All cases",
        Some(&staff.viewer()),
        flash.as_deref(),
        html! {
            form.filters method="get" action="/admin/cases" {
                label { "State " select name="state" {
                    option value="" { "any" }
                    @for s in CaseState::ALL { option value=(s) selected[filter.state == s.as_str()] { (s) } }
                } }
                label { "Created more than " input type="text" name="older" value=(filter.older) size="6" placeholder="1d"; " ago" }
                button type="submit" { "Filter" }
                a href={ "/admin/cases.csv?" (query) } download { "Export CSV" }
            }
            form #delete-form method="post" action="/admin/delete" {
                input type="hidden" name="csrf" value=(staff.csrf);
                input type="hidden" name="state" value=(filter.state);
                input type="hidden" name="older" value=(filter.older);
                table #cases {
                    thead { tr {
                        th { input type="checkbox" #select-page aria-label="select every case on this page"; }
                        th { "Code" } th { "State" } th { "Customer" } th { "Description" } th { "Team" }
                        th { "Priority" } th { "Created" } th { "Last change" }
                    } }
                    tbody {
                        @if shown.is_empty() { tr { td colspan="9" { "No case matches." } } }
                        @for c in &shown {
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
                    button type="submit" name="scope" value="all" { "Delete all that match the filter…" }
                }
            }
            @if let Some(next) = more {
                p { a href={ "/admin/cases?" (query) (if query.is_empty() { "" } else { "&" }) "after=" (encode(&next.to_string())) } { "Next page" } }
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
                "state" => form.filter.state = value,
                "older" => form.filter.older = value,
                _ => {}
            }
        }
        form
    }
}

/// `POST /admin/delete`: first a confirmation naming what goes, then (with `confirm=yes`)
/// the delete, whose result names the count.
pub async fn delete(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = DeleteForm::parse(&body);
    staff.check_csrf(&form.csrf)?;
    admin_only(&staff)?;
    let selector = match form.scope.as_str() {
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
            DeleteSelector::Codes(codes)
        }
        "all" => DeleteSelector::Filter(form.filter.to_wire()?),
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "say which cases: the ticked ones or all that match",
            ))
        }
    };
    let what = match &selector {
        DeleteSelector::Codes(codes) => {
            format!("{} ticked case(s): {}", codes.len(), form.codes.join(", "))
        }
        DeleteSelector::Filter(_) => format!("every case matching {}", form.filter.describe()),
    };
    if !form.confirm {
        return Ok(page(
            "Delete cases?",
            Some(&staff.viewer()),
            None,
            html! {
                p.warning role="alert" { "Delete " (what) "? Open cases among them end their sessions. This cannot be undone." }
                form method="post" action="/admin/delete" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    input type="hidden" name="scope" value=(form.scope);
                    input type="hidden" name="state" value=(form.filter.state);
                    input type="hidden" name="older" value=(form.filter.older);
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

fn csv_row(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// `GET /admin/cases.csv`: every case matching the filter, read page by page as the
/// download goes, so the export holds one page in memory however many cases match.
pub async fn cases_csv(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(filter): Query<Filter>,
) -> Result<Response, PageError> {
    admin_only(&staff)?;
    let older = filter.older_than_ms()?;
    filter.state()?;
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
            let now = state.shared.now();
            let page_of = match fetch(&state, &staff, &filter, after, EXPORT_PAGE).await {
                Ok(page_of) => page_of,
                // Cut the download off with an error rather than end it as if complete.
                Err(e) => {
                    return Some((
                        Err(std::io::Error::other(e.message)),
                        (state, staff, filter, after, None, true),
                    ))
                }
            };
            let mut chunk = String::new();
            let mut finished = page_of.next.is_none();
            for c in &page_of.cases {
                if older.is_some_and(|ms| c.created_at.0 >= now.0.saturating_sub(ms)) {
                    finished = true;
                    break;
                }
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
            Some((
                Ok(Bytes::from(chunk)),
                (state, staff, filter, page_of.next, None, finished),
            ))
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sosq-cases.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /admin/audit`: the latest entries of the audit log, newest first.
pub async fn audit(State(state): State<Arc<WebState>>, staff: Staff) -> Result<Markup, PageError> {
    admin_only(&staff)?;
    let entries = state
        .shared
        .audit_tail(200)
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(page(
        "Audit log",
        Some(&staff.viewer()),
        None,
        html! {
            table #audit {
                thead { tr { th { "When" } th { "Who" } th { "From" } th { "Action" } th { "What" } th { "Cases" } } }
                tbody {
                    @if entries.is_empty() { tr { td colspan="6" { "Nothing yet." } } }
                    @for e in &entries {
                        tr { td { (clock_time(e.at)) } td { (e.actor) } td { (e.address.as_deref().unwrap_or("")) } td { (e.action) } td { (e.selector) } td { (e.count) } }
                    }
                }
            }
        },
    ))
}
