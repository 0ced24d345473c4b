//! The expert's live queue: the waiting cases of the viewer's teams (an admin sees every
//! queue), its own assigned cases first, sortable and filterable, kept current by
//! server-sent events. The page is one page of the queue (`Request::Queue`, the same paged
//! request as `sosq queue`); sorting and filtering apply to the cases on that page.
//!
//! The live stream re-renders the table whenever the core says the queue changed (the
//! same signal that drives `sosq queue --watch`), and at least once a second so waiting
//! times run on, a cluster's shared queue shows other nodes' arrivals, and a revoked token
//! ends the stream within a second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::Stream;
use maud::{html, Markup};
use serde::Deserialize;
use sosq::protocol::{QueueCursor, QueueEntry, QueuePage, Reply, Request, Timestamp};

use super::auth::Staff;
use super::layout::{page, span, time_left, PageError};
use super::WebState;

/// How often the live table is refreshed even when the queue did not change.
const LIVE_TICK: Duration = Duration::from_secs(1);

/// Waits for the queue to change or for [`LIVE_TICK`], whichever comes first.
pub async fn wait_for_change(changes: &mut tokio::sync::watch::Receiver<u64>) {
    if let Ok(Err(_)) = tokio::time::timeout(LIVE_TICK, changes.changed()).await {
        // The daemon is going away: no more changes, only the tick.
        tokio::time::sleep(LIVE_TICK).await;
    }
}

/// How the table is ordered and narrowed (query string of the page and of its live
/// stream).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct View {
    /// `queue` (pull order, the default), `waiting` (longest first), `priority`, `due`.
    #[serde(default)]
    sort: String,
    /// Only cases whose code, customer, description or latest message contains this (any
    /// case).
    #[serde(default)]
    q: String,
    /// Only this team's queue.
    #[serde(default)]
    team: String,
    /// The page: right after this place in line (the token `sosq queue` prints).
    #[serde(default)]
    after: String,
}

impl View {
    /// The query string that reproduces this view (for the live stream's URL).
    fn query(&self) -> String {
        let pairs = [
            ("sort", &self.sort),
            ("q", &self.q),
            ("team", &self.team),
            ("after", &self.after),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes a query value (the form encoding browsers send).
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One page of the queue as the viewer may see it.
async fn fetch(state: &WebState, staff: &Staff, view: &View) -> Result<QueuePage, PageError> {
    let after = match view.after.trim() {
        "" => None,
        token => Some(
            token
                .parse::<QueueCursor>()
                .map_err(|e| PageError::new(axum::http::StatusCode::BAD_REQUEST, e))?,
        ),
    };
    match state
        .run(&staff.caller, Request::Queue { after, limit: 0 })
        .await
    {
        Reply::Queue(page) => Ok(page),
        other => Err(PageError::unexpected(&other)),
    }
}

/// The entries to show, in the view's order: the viewer's own assigned cases first, then
/// the rest by the chosen order.
fn arrange<'p>(entries: &'p [QueueEntry], view: &View, me: &str) -> Vec<&'p QueueEntry> {
    let needle = view.q.trim().to_lowercase();
    let mut shown: Vec<&QueueEntry> = entries
        .iter()
        .filter(|e| view.team.is_empty() || e.group == view.team)
        .filter(|e| {
            needle.is_empty()
                || e.customer.to_lowercase().contains(&needle)
                || e.description.to_lowercase().contains(&needle)
                || e.last_message
                    .as_deref()
                    .is_some_and(|message| message.to_lowercase().contains(&needle))
                || e.code.to_string().contains(&needle)
        })
        .collect();
    let mine = |e: &QueueEntry| e.assigned_to.as_deref() != Some(me);
    match view.sort.as_str() {
        "waiting" => shown.sort_by_key(|e| (mine(e), e.waiting_since)),
        "priority" => {
            shown.sort_by_key(|e| (mine(e), std::cmp::Reverse(e.priority), e.waiting_since))
        }
        "due" => shown.sort_by_key(|e| (mine(e), e.response_due)),
        _ => shown.sort_by_key(|e| mine(e)),
    }
    shown
}

/// The table's rows.
fn rows(entries: &[&QueueEntry], now: Timestamp) -> Markup {
    html! {
        @if entries.is_empty() {
            tr { td colspan="9" { "Nobody is waiting in the queues you see." } }
        }
        @for e in entries {
            tr {
                td { @match e.position { Some(p) => (p), None => "offline" } }
                td { a href={ "/cases/" (e.code) } { (e.code) } }
                td { span class={ "priority " (e.priority) } { (e.priority) } }
                td { (e.customer) }
                td.description {
                    (e.description)
                    @if let Some(message) = &e.last_message {
                        br;
                        span.latest-message title="the customer's latest message" { "“" (message) "”" }
                    }
                    @if e.attachments > 0 {
                        br;
                        span.attachments { (e.attachments) (if e.attachments == 1 { " file" } else { " files" }) " attached" }
                    }
                }
                td { (span(e.waiting_since, now)) }
                td { (time_left(e.response_due, now)) }
                td { (e.assigned_to.as_deref().unwrap_or("—")) }
                td { (e.group) }
            }
        }
    }
}

/// `GET /queue`.
pub async fn show(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(view): Query<View>,
) -> Result<Markup, PageError> {
    let queue = fetch(&state, &staff, &view).await?;
    let now = state.shared.now();
    let shown = arrange(&queue.entries, &view, &staff.user.name);
    let flash = state.sessions.take_flash(&staff.session);
    let live = match view.query().as_str() {
        "" => "/queue/live".to_string(),
        query => format!("/queue/live?{query}"),
    };
    let sorts = [
        ("queue", "Pull order"),
        ("waiting", "Longest waiting"),
        ("priority", "Priority"),
        ("due", "Response due"),
    ];
    Ok(page(
        "Queue",
        Some(&staff.viewer()),
        flash.as_deref(),
        html! {
            form.filters method="get" action="/queue" {
                label { "Sort " select name="sort" {
                    @for (value, label) in sorts {
                        option value=(value) selected[view.sort == value || (view.sort.is_empty() && value == "queue")] { (label) }
                    }
                } }
                label { "Search " input type="search" name="q" value=(view.q); }
                label { "Team " input type="text" name="team" value=(view.team) size="12"; }
                button type="submit" { "Apply" }
            }
            p #queue-counts { (counts(&queue)) }
            table #queue data-live=(live) {
                thead { tr {
                    th { "#" } th { "Code" } th { "Priority" } th { "Customer" } th { "Description" }
                    th { "Waiting" } th { "Response due" } th { "Assigned to" } th { "Team" }
                } }
                tbody #queue-rows { (rows(&shown, now)) }
            }
            @if let Some(next) = queue.next {
                p { a href={ "/queue?after=" (encode(&next.to_string())) } { "Next page" } }
            }
            p.hint #live-state { "Live: this table updates by itself." }
        },
    ))
}

/// `GET /queue/live`: server-sent events, each a `queue` event carrying the table's rows
/// (HTML, escaped) when they changed, until the session ends or the token is revoked.
pub async fn live(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(view): Query<View>,
) -> impl IntoResponse {
    Sse::new(updates(state, staff, view)).keep_alive(KeepAlive::default())
}

fn updates(
    state: Arc<WebState>,
    staff: Staff,
    view: View,
) -> impl Stream<Item = Result<Event, Infallible>> {
    /// What the stream carries from one step to the next.
    struct Live {
        state: Arc<WebState>,
        staff: Staff,
        view: View,
        changes: tokio::sync::watch::Receiver<u64>,
        /// The rows and counts last sent.
        last: String,
        /// The counts event that goes right after the rows event.
        counts: Option<Event>,
        ended: bool,
    }
    let live = Live {
        changes: state.shared.queue_changes(),
        state,
        staff,
        view,
        last: String::new(),
        counts: None,
        ended: false,
    };
    futures_util::stream::unfold(live, |mut live| async move {
        if let Some(counts) = live.counts.take() {
            return Some((Ok(counts), live));
        }
        if live.ended {
            return None;
        }
        loop {
            if !live.last.is_empty() {
                wait_for_change(&mut live.changes).await;
            }
            if !live.state.shared.still_authorized(Some(&live.staff.user)) {
                live.state.sessions.close(&live.staff.session);
                live.ended = true;
                let event = Event::default()
                    .event("signedout")
                    .data("your access token was revoked; sign in again");
                return Some((Ok(event), live));
            }
            let (rows_html, counts_html) = match fetch(&live.state, &live.staff, &live.view).await {
                Ok(queue) => {
                    let now = live.state.shared.now();
                    let shown = arrange(&queue.entries, &live.view, &live.staff.user.name);
                    (
                        rows(&shown, now).into_string(),
                        counts(&queue).into_string(),
                    )
                }
                Err(e) => (
                    html! { tr { td colspan="9" { (e.message) } } }.into_string(),
                    String::new(),
                ),
            };
            let rendered = format!("{rows_html}{counts_html}");
            if rendered != live.last {
                live.last = rendered;
                live.counts = Some(Event::default().event("counts").data(counts_html));
                return Some((Ok(Event::default().event("queue").data(rows_html)), live));
            }
        }
    })
}

/// "3 waiting online, 1 offline."
fn counts(queue: &QueuePage) -> Markup {
    html! { (queue.online) " waiting online, " (queue.offline) " offline." }
}
