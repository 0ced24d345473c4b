//! The page shell every console page renders into (head, navigation, the signed-in user,
//! a one-time message), the error page, the embedded assets, and how times read on a page.
//! maud escapes every interpolated value, so text from customers shows as text.

use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use sosq::protocol::{ErrorKind, Timestamp};

/// The console's style sheet, embedded in the binary.
const STYLE: &str = include_str!("assets/console.css");
/// The console's one script (live updates, select-all, copy), embedded in the binary.
const SCRIPT: &str = include_str!("assets/console.js");
/// The chat's script (the customer's `/help` page and the chat panel of a case's page).
const CHAT_SCRIPT: &str = include_str!("assets/chat.js");

/// Who a page is rendered for, to show in the header and pick the navigation.
pub struct Viewer<'a> {
    /// The staff member's name, or none on a public page.
    pub name: Option<&'a str>,
    /// Whether the viewer is an admin (admin navigation).
    pub admin: bool,
    /// The CSRF token for the sign-out form (and every form on the page).
    pub csrf: &'a str,
}

/// A whole page: `title`, the navigation for `viewer`, a one-time `flash` message, `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, flash: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sosq" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
                script src="/assets/chat.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "sosq" }
                    nav {
                        @if let Some(viewer) = viewer {
                            a href="/queue" { "Queue" }
                            @if viewer.admin {
                                a href="/admin/cases" { "Cases" }
                                a href="/admin/reports" { "Reports" }
                                a href="/admin/audit" { "Audit log" }
                                a href="/admin/users" { "Users" }
                                a href="/admin/teams" { "Teams" }
                                a href="/admin/profiles" { "Profiles" }
                            }
                            a href="/status" { "Status" }
                            span.who { (viewer.name.unwrap_or("")) }
                            form.inline method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(viewer.csrf);
                                button type="submit" { "Sign out" }
                            }
                        } @else {
                            a href="/status" { "Status" }
                            a href="/case" { "My request" }
                            a href="/signin" { "Staff sign-in" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(flash) = flash {
                        p.flash role="status" { (flash) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A refusal or failure shown as a page with its HTTP status.
#[derive(Debug)]
pub struct PageError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words for the person reading the page.
    pub message: String,
}

impl PageError {
    /// A page error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    /// The daemon's refusal of a request, with the HTTP status its kind maps to.
    pub fn from_reply(kind: ErrorKind, message: String) -> PageError {
        let status = match kind {
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::UnknownCode => StatusCode::NOT_FOUND,
            ErrorKind::IllegalTransition | ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        PageError::new(status, message)
    }

    /// An answer the page did not expect from the daemon (a bug, never a peer's doing).
    pub fn unexpected(reply: &sosq::protocol::Reply) -> PageError {
        match reply {
            sosq::protocol::Reply::Error(e) => PageError::from_reply(e.kind, e.message.clone()),
            other => {
                tracing::error!(?other, "the console got an unexpected reply");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unexpected answer from the broker",
                )
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = page(
            self.status.canonical_reason().unwrap_or("Error"),
            None,
            None,
            html! {
                p.error role="alert" { (self.message) }
                p { a href="/" { "Back to the start" } }
            },
        );
        (self.status, body).into_response()
    }
}

/// Turns the framework's own plain-text refusals (a query string or form that does not
/// parse: "Failed to deserialize form body: missing field `public`") into the console's
/// error page, with words for people.
pub async fn styled_refusals(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let status = response.status();
    if !plain || !status.is_client_error() {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let said = String::from_utf8_lossy(&body);
    PageError::new(
        status,
        format!(
            "this request's fields could not be read ({}); go back and check them",
            said.trim()
        ),
    )
    .into_response()
}

/// Any path the console does not serve.
pub async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "there is no such page")
}

/// `/assets/{file}`: the embedded style sheet and script, cacheable for an hour.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "chat.js" => (CHAT_SCRIPT, "text/javascript; charset=utf-8"),
        _ => return not_found().await.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// `2026-11-25 20:14:03 UTC`.
pub fn clock_time(at: Timestamp) -> String {
    format!(
        "{} UTC",
        at.rfc3339().trim_end_matches('Z').replace('T', " ")
    )
}

/// "3m 12s": how long from `since` to `now` (whole seconds).
pub fn span(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.0.saturating_sub(since.0) / 1000;
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// "4m 10s" until `due`, or "overdue".
pub fn time_left(due: Timestamp, now: Timestamp) -> String {
    if now >= due {
        "overdue".into()
    } else {
        span(now, due)
    }
}
