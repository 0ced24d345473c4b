//! The pages anyone may open, without signing in:
//! - `/healthz` for load balancers (200 while serving, 503 once shutdown has begun);
//! - `/status`: whether the service is up, the admin's maintenance notice, and for the
//!   teams an admin marked public how many wait and the typical wait; JSON for monitors
//!   at the same place (`Accept: application/json` or `?format=json`);
//! - `/case`: a customer enters its session code and resume secret (the wrong-code
//!   throttle of the wire applies) and follows its request live: state, place in the
//!   queue, the expert's name once paired, its history without staff-internal notes; it
//!   can close its case there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use sosq::protocol::{CaseState, Reply, Request};
use tokio::time::Instant;

use super::auth::{check_csrf, set_cookie, Follower, Holder, CUSTOMER_COOKIE};
use super::layout::{clock_time, page, span, PageError};
use super::WebState;

/// How long a computed `/status` is served before it is computed again.
const STATUS_TTL: Duration = Duration::from_secs(1);

/// `GET /healthz`.
pub async fn healthz(State(state): State<Arc<WebState>>) -> Response {
    if state.shared.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// What `/status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `up`, or `shutting_down`.
    pub service: &'static str,
    /// The admin's maintenance notice, if one is set.
    pub notice: Option<String>,
    /// The public teams' queues.
    pub teams: Vec<TeamStatus>,
    /// The typical time from asking for help to an expert, over every team since the
    /// daemon started (each team's is in [`TeamStatus`]): the upper bound of the histogram bucket holding the median, in
    /// seconds; none before the first response.
    pub typical_wait_seconds: Option<u64>,
}

/// One public team's queue on `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct TeamStatus {
    /// The team's name.
    pub team: String,
    /// Customers waiting in its queue now.
    pub waiting: usize,
    /// How long the longest of them has waited, in seconds.
    pub longest_wait_seconds: u64,
    /// The typical time from asking for help to an expert in this team since the daemon
    /// started: the upper bound of the histogram bucket holding the median, in seconds;
    /// none before its first response.
    pub typical_wait_seconds: Option<u64>,
}

/// `/status` as last computed.
#[derive(Default)]
pub struct StatusCache(Mutex<Option<(Instant, StatusReport)>>);

impl StatusCache {
    fn get(&self, state: &WebState) -> StatusReport {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, report)) = cached.as_ref() {
            if at.elapsed() < STATUS_TTL {
                return report.clone();
            }
        }
        let report = state.shared.public_status();
        *cached = Some((Instant::now(), report.clone()));
        report
    }
}

/// `?format=json` on `/status`.
#[derive(Debug, Default, Deserialize)]
pub struct Format {
    #[serde(default)]
    format: String,
}

/// `GET /status`.
pub async fn status(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(format): Query<Format>,
) -> Response {
    let report = state.status.get(&state);
    let wants_json = format.format == "json"
        || headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Json(report).into_response();
    }
    let up = report.service == "up";
    page(
        "Service status",
        None,
        None,
        html! {
            p #service class=(if up { "up" } else { "down" }) {
                @if up { "The support service is up." } @else { "The support service is restarting; try again in a moment." }
            }
            @if let Some(notice) = &report.notice {
                p.notice role="status" { (notice) }
            }
            @if let Some(seconds) = report.typical_wait_seconds {
                p { "Typical wait for an expert: under " (humantime::format_duration(Duration::from_secs(seconds))) "." }
            }
            @if !report.teams.is_empty() {
                table #teams {
                    thead { tr { th { "Team" } th { "Waiting" } th { "Longest wait now" } th { "Typical wait" } } }
                    tbody {
                        @for team in &report.teams {
                            tr {
                                td { (team.team) }
                                td { (team.waiting) }
                                td { (humantime::format_duration(Duration::from_secs(team.longest_wait_seconds))) }
                                td { @match team.typical_wait_seconds {
                                    Some(s) => { "under " (humantime::format_duration(Duration::from_secs(s))) }
                                    None => "no answer yet",
                                } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /case`: the form.
pub async fn case_form() -> Markup {
    case_form_page(None)
}

fn case_form_page(error: Option<&str>) -> Markup {
    page(
        "Follow your request",
        None,
        None,
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/case" {
                label for="code" { "Session code" }
                input #code type="text" name="code" required placeholder="s123-456-789" autocomplete="off";
                label for="secret" { "Resume secret" }
                input #secret type="password" name="secret" required autocomplete="off";
                p.hint { "Both were shown when you asked for help (" code { "sosq request" } ")." }
                button type="submit" { "Show my request" }
            }
        },
    )
}

/// The `/case` form's fields.
#[derive(Deserialize)]
pub struct CaseForm {
    code: String,
    secret: String,
}

/// `POST /case`: checks code and secret the way the wire does (throttled; a wrong one is
/// charged to the address), then opens a session that follows the case.
pub async fn case_open(
    State(state): State<Arc<WebState>>,
    ConnectInfo(address): ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<CaseForm>,
) -> Response {
    let party = state.shared.new_party();
    let caller = super::console_caller(party, None, address);
    let request = Request::Status {
        code: form.code.clone(),
        resume_secret: Some(form.secret.clone()),
    };
    let reply = state.run(&caller, request).await;
    // The address's budget stays charged; this one-request party's own budget goes.
    state.shared.forget_party(party);
    match reply {
        Reply::Case(case) => {
            let id = state.sessions.open(
                Holder::Customer {
                    code: case.code,
                    secret: form.secret,
                },
                party,
            );
            (
                [(header::SET_COOKIE, set_cookie(CUSTOMER_COOKIE, &id))],
                Redirect::to("/case/view"),
            )
                .into_response()
        }
        Reply::Error(e) => {
            let status = PageError::from_reply(e.kind, String::new()).status;
            (status, case_form_page(Some(&e.message))).into_response()
        }
        other => PageError::unexpected(&other).into_response(),
    }
}

/// The part of the follow page that updates live.
fn case_fragment(state: &WebState, follower: &Follower) -> Markup {
    let now = state.shared.now();
    match state
        .shared
        .customer_case(follower.caller.party, follower.code, &follower.secret)
    {
        Ok(view) => html! {
            dl.case {
                dt { "Code" } dd { (view.info.code) }
                dt { "State" } dd #case-state { (describe(view.info.state)) }
                @if let Some(position) = view.position {
                    dt { "Place in the queue" } dd #position { (position) }
                }
                @if !view.info.customer_online && view.info.state.is_open() {
                    dt { "Your sosq" } dd #offline { "not connected: your request keeps its place while sosq reconnects (or run " code { "sosq join " (view.info.code) " --secret …" } ")" }
                }
                @if let Some(expert) = &view.info.expert {
                    dt { "Expert" } dd #expert { (expert) }
                }
                dt { "Asked for help" } dd { (clock_time(view.info.created_at)) " (" (span(view.info.created_at, now)) " ago)" }
            }
            h2 { "History" }
            table #history {
                thead { tr { th { "When" } th { "What" } } }
                tbody {
                    @for entry in &view.history {
                        tr { td { (clock_time(entry.at)) } td { (entry.event) } }
                    }
                }
            }
        },
        Err(message) => html! { p #case-state.ended role="status" { (message) } },
    }
}

fn describe(state: CaseState) -> &'static str {
    match state {
        CaseState::New => "waiting for you to start the session",
        CaseState::Pending => "waiting for an expert",
        CaseState::InProgress => "an expert is with you",
        CaseState::Closed => "closed",
        CaseState::Expired => "expired",
    }
}

/// `GET /case/view`.
pub async fn case_view(State(state): State<Arc<WebState>>, follower: Follower) -> Markup {
    page(
        "Your request",
        None,
        None,
        html! {
            div #follow data-live="/case/live" { (case_fragment(&state, &follower)) }
            form method="post" action="/case/close" {
                input type="hidden" name="csrf" value=(follower.csrf);
                button type="submit" { "Close my request" }
                span.hint { " if you no longer need help" }
            }
        },
    )
}

/// `GET /case/live`: the follow page's fragment whenever it changes (checked on every
/// queue change and at least once a second).
pub async fn case_live(
    State(state): State<Arc<WebState>>,
    follower: Follower,
) -> impl IntoResponse {
    let changes = state.shared.queue_changes();
    let stream = futures_util::stream::unfold(
        (state, follower, changes, String::new()),
        |(state, follower, mut changes, mut last)| async move {
            loop {
                if !last.is_empty() {
                    super::queue::wait_for_change(&mut changes).await;
                }
                let rendered = case_fragment(&state, &follower).into_string();
                if rendered != last {
                    let event = Event::default().event("case").data(rendered.clone());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (state, follower, changes, rendered),
                    ));
                }
                last = rendered;
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `POST /case/close`: the customer closes its own case (the wire's `Close` with the
/// resume secret).
pub async fn case_close(
    State(state): State<Arc<WebState>>,
    follower: Follower,
    Form(form): Form<super::auth::Csrf>,
) -> Result<Markup, PageError> {
    check_csrf(&follower.csrf, &form.csrf)?;
    let request = Request::Close {
        code: follower.code.to_string(),
        resume_secret: Some(follower.secret.clone()),
    };
    match state.run(&follower.caller, request).await {
        Reply::Case(_) | Reply::Deleted { .. } => {}
        Reply::Error(e) => return Err(PageError::from_reply(e.kind, e.message)),
        _ => {}
    }
    state.sessions.close(&follower.session);
    Ok(page(
        "Request closed",
        None,
        None,
        html! { p role="status" { "Your request " (follower.code) " is closed. Thank you." } },
    ))
}
