//! Who is signed in: console sessions (a random id in a `Secure; HttpOnly;
//! SameSite=Strict` cookie, kept only in this daemon's memory), the CSRF token of each
//! session, and the same-origin check on every state-changing request (signing in and
//! out, and the sign-in throttle, are in `signin.rs`).
//!
//! Staff sign in with their access token, the same as `sosq --token`; a session re-checks
//! the account on every request, so a revoked token ends its sessions at their next
//! request, and the live views check every second. A customer following its own case
//! (`/case`) gets a session of its own holding the case's code and resume secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use dashmap::DashMap;
use serde::Deserialize;
use tokio::time::Instant;

use super::layout::PageError;
use super::WebState;
use crate::broker::PartyId;
use crate::server::Caller;
use crate::store::users::{StaffRole, User};

/// The staff session cookie.
pub const STAFF_COOKIE: &str = "sosq_session";
/// The cookie of a customer following its case on `/case`.
pub const CUSTOMER_COOKIE: &str = "sosq_case";
/// The most console sessions held at once; past it the least recently used goes.
const MAX_SESSIONS: usize = 10_000;

/// Whose a session is.
#[derive(Debug, Clone)]
pub enum Holder {
    /// A signed-in expert or admin.
    Staff(User),
    /// A customer following its case by code and resume secret.
    Customer {
        /// The case's code.
        code: sosq::SessionCode,
        /// Its resume secret, as the customer typed it.
        secret: String,
    },
}

/// One console session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Whose it is.
    pub holder: Holder,
    /// The token every form of this session carries.
    pub csrf: String,
    /// The party id the daemon knows this session by (throttles, history).
    pub party: PartyId,
    /// The last request, for the idle limit.
    last_seen: Instant,
    /// A message for the next page this session sees ("note added").
    flash: Option<String>,
}

/// The console sessions of this daemon.
pub struct Sessions {
    by_id: DashMap<String, Session>,
    idle: Duration,
}

impl Sessions {
    /// No sessions; each ends after `idle` without a request.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            by_id: DashMap::new(),
            idle,
        }
    }

    /// Opens a session for `holder` as `party`; returns its id (the cookie's value).
    pub fn open(&self, holder: Holder, party: PartyId) -> String {
        if self.by_id.len() >= MAX_SESSIONS {
            self.evict();
        }
        let id = random_token();
        self.by_id.insert(
            id.clone(),
            Session {
                holder,
                csrf: random_token(),
                party,
                last_seen: Instant::now(),
                flash: None,
            },
        );
        id
    }

    /// The live session `id` names, touched; `None` if there is none or it sat idle too long.
    fn touch(&self, id: &str) -> Option<Session> {
        let mut entry = self.by_id.get_mut(id)?;
        if entry.last_seen.elapsed() > self.idle {
            drop(entry);
            self.by_id.remove(id);
            return None;
        }
        entry.last_seen = Instant::now();
        Some(entry.clone())
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        self.by_id.remove(id);
    }

    /// Leaves `message` for the next page session `id` renders.
    pub fn flash(&self, id: &str, message: impl Into<String>) {
        if let Some(mut session) = self.by_id.get_mut(id) {
            session.flash = Some(message.into());
        }
    }

    /// Takes the message waiting for session `id`, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.by_id.get_mut(id).and_then(|mut s| s.flash.take())
    }

    /// Drops idle sessions, then (if still full) the least recently used tenth.
    fn evict(&self) {
        self.by_id.retain(|_, s| s.last_seen.elapsed() <= self.idle);
        if self.by_id.len() < MAX_SESSIONS {
            return;
        }
        let mut seen: Vec<(Instant, String)> = self
            .by_id
            .iter()
            .map(|s| (s.last_seen, s.key().clone()))
            .collect();
        seen.sort();
        for (_, id) in seen.into_iter().take(MAX_SESSIONS / 10) {
            self.by_id.remove(&id);
        }
    }

    /// Ends every staff session whose account `keep` refuses (a revoked token).
    pub fn retain_staff(&self, keep: impl Fn(&User) -> bool) {
        self.by_id.retain(|_, session| match &session.holder {
            Holder::Staff(user) => keep(user),
            Holder::Customer { .. } => true,
        });
    }
}

/// 32 bytes from the operating system's CSPRNG, hex: a session id or a CSRF token.
pub fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // The system RNG failing is not something a daemon can serve through.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    sosq::tls::hex(&bytes)
}

/// The value of cookie `name` in a request's headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that gives the browser session `id` under `name`.
pub fn set_cookie(name: &str, id: &str) -> String {
    format!("{name}={id}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A signed-in staff member, for a handler: its caller (for the daemon's dispatch), its
/// session's CSRF token, and the message waiting for its next page.
pub struct Staff {
    /// Who the daemon sees.
    pub caller: Caller,
    /// The session id (the cookie's value).
    pub session: String,
    /// The token every form of the page must carry back.
    pub csrf: String,
    /// The staff account.
    pub user: User,
}

impl Staff {
    /// Whether this staff member is an admin.
    pub fn is_admin(&self) -> bool {
        self.user.role == StaffRole::Admin
    }

    /// Refuses staff who are not admins: `what` (in words, "the audit log") is for admins.
    /// The console's admin pages mirror `sosqd` commands, which the role matrix does not
    /// cover; their requests to the daemon are checked by it again.
    pub fn require_admin(&self, what: &str) -> Result<(), PageError> {
        if self.is_admin() {
            return Ok(());
        }
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            format!("{what}: for admins; you are signed in as an expert"),
        ))
    }

    /// Refuses a state-changing request whose form does not carry this session's token.
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        check_csrf(&self.csrf, token)
    }

    /// The page header's view of this staff member.
    pub fn viewer(&self) -> super::layout::Viewer<'_> {
        super::layout::Viewer {
            name: Some(&self.user.name),
            admin: self.is_admin(),
            csrf: &self.csrf,
        }
    }
}

/// Refuses `token` unless it is `expected` (a missing token included).
pub fn check_csrf(expected: &str, token: &str) -> Result<(), PageError> {
    if token.is_empty() || !crate::store::users::same_hash(expected, token) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form is out of date or did not come from this console (CSRF token missing or wrong); reload the page and try again",
        ));
    }
    Ok(())
}

/// Why a request has no staff session: sent to sign in (pages) or refused (everything else).
pub struct NotSignedIn {
    page: bool,
    why: &'static str,
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        if self.page {
            Redirect::to("/signin").into_response()
        } else {
            PageError::new(StatusCode::UNAUTHORIZED, self.why).into_response()
        }
    }
}

impl FromRequestParts<Arc<WebState>> for Staff {
    type Rejection = NotSignedIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Staff, NotSignedIn> {
        let page = parts.method == Method::GET
            && !parts.uri.path().ends_with("/live")
            && !parts.uri.path().ends_with(".csv");
        let refuse = |why| NotSignedIn { page, why };
        let id = cookie(&parts.headers, STAFF_COOKIE).ok_or(refuse("sign in first"))?;
        let session = state
            .sessions
            .touch(id)
            .ok_or(refuse("your console session ended; sign in again"))?;
        let Holder::Staff(user) = session.holder else {
            return Err(refuse("sign in first"));
        };
        if !state.shared.still_authorized(Some(&user)) {
            state.sessions.close(id);
            return Err(refuse("your access token was revoked"));
        }
        let address = peer(parts);
        Ok(Staff {
            caller: super::console_caller(session.party, Some(&user), address),
            session: id.to_string(),
            csrf: session.csrf,
            user,
        })
    }
}

/// A customer following its case on `/case`, for a handler.
pub struct Follower {
    /// Who the daemon sees (an anonymous customer).
    pub caller: Caller,
    /// The session id.
    pub session: String,
    /// The CSRF token of the session's forms.
    pub csrf: String,
    /// The case's code.
    pub code: sosq::SessionCode,
    /// The resume secret the customer gave.
    pub secret: String,
}

impl FromRequestParts<Arc<WebState>> for Follower {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Follower, Response> {
        let session = cookie(&parts.headers, CUSTOMER_COOKIE)
            .and_then(|id| Some((id.to_string(), state.sessions.touch(id)?)));
        let Some((
            id,
            Session {
                holder: Holder::Customer { code, secret },
                csrf,
                party,
                ..
            },
        )) = session
        else {
            return Err(
                if parts.method == Method::GET && !parts.uri.path().ends_with("/live") {
                    Redirect::to("/case").into_response()
                } else {
                    PageError::new(
                        StatusCode::UNAUTHORIZED,
                        "enter your session code and secret first",
                    )
                    .into_response()
                },
            );
        };
        Ok(Follower {
            caller: super::console_caller(party, None, peer(parts)),
            session: id,
            csrf,
            code,
            secret,
        })
    }
}

/// Where a request came from (the TCP peer).
pub fn peer(parts: &Parts) -> SocketAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Refuses a state-changing request sent by another site: its `Origin` (or, without one or
/// with `Origin: null`, `Sec-Fetch-Site`) must be this console. The CSRF token is the main defence; this one
/// also covers the sign-in form, which has no session yet.
pub async fn same_origin(request: axum::extract::Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross_site = match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        // A browser sends `Origin: null` for a form on a page whose referrer policy is
        // `no-referrer` (the console's pages say `same-origin`, but another site's page may
        // say anything): then only the browser's `Sec-Fetch-Site` can vouch for it.
        Some("null") => fetch_site != Some("same-origin"),
        Some(origin) => host.is_none_or(|host| origin != format!("https://{host}")),
        None => fetch_site.is_some_and(|site| site == "cross-site"),
    };
    if cross_site {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "a request from another site was refused (it did not come from this console)",
        )
        .into_response();
    }
    next.run(request).await
}

/// A form that carries only the session's CSRF token (sign-out, close).
#[derive(Deserialize)]
pub struct Csrf {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

impl axum::extract::OptionalFromRequestParts<Arc<WebState>> for Staff {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Option<Staff>, Self::Rejection> {
        Ok(
            <Staff as FromRequestParts<Arc<WebState>>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    /// The status a POST to the console at `localhost:8443` gets through [`super::same_origin`]
    /// with these `Origin` and `Sec-Fetch-Site` headers.
    async fn post_with(origin: Option<&str>, fetch_site: Option<&str>) -> StatusCode {
        let app = Router::new()
            .route("/signin", post(|| async { "ok" }))
            .layer(axum::middleware::from_fn(super::same_origin));
        let mut request = Request::post("/signin").header("host", "localhost:8443");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_form_of_the_console_passes_and_another_sites_is_refused() {
        let ok = StatusCode::OK;
        let refused = StatusCode::FORBIDDEN;
        assert_eq!(post_with(Some("https://localhost:8443"), None).await, ok);
        assert_eq!(
            post_with(Some("https://evil.example"), Some("same-origin")).await,
            refused
        );
        // What Chromium sends with the console's own forms under `no-referrer`.
        assert_eq!(post_with(Some("null"), Some("same-origin")).await, ok);
        // `Origin: null` from anywhere else, or with nothing to vouch for it.
        assert_eq!(post_with(Some("null"), Some("cross-site")).await, refused);
        assert_eq!(post_with(Some("null"), Some("same-site")).await, refused);
        assert_eq!(post_with(Some("null"), None).await, refused);
        // No Origin at all (not a browser): only a browser saying cross-site is refused.
        assert_eq!(post_with(None, None).await, ok);
        assert_eq!(post_with(None, Some("cross-site")).await, refused);
    }
}
