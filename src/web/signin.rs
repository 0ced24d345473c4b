//! Signing in and out: the sign-in page and form (a staff token opens a console session),
//! the throttle on failed sign-ins per address, sign-out, and `/` (where a visitor goes).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use tokio::time::Instant;

use super::auth::{clear_cookie, set_cookie, Csrf, Holder, Staff, STAFF_COOKIE};
use super::layout::{page, PageError};
use super::WebState;
use crate::store::users::StaffRole;

/// The most addresses the sign-in throttle remembers; past it, sign-ins from new
/// addresses wait like a throttled one (so a flood from many addresses cannot grow it).
const MAX_THROTTLED_ADDRESSES: usize = 10_000;
/// The sign-in throttle's window.
const SIGNIN_WINDOW: Duration = Duration::from_secs(60);

/// Failed sign-ins per address in the current window.
pub struct SignInThrottle {
    allowed: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInThrottle {
    /// `allowed` failed sign-ins per address per minute.
    pub fn new(allowed: u32) -> SignInThrottle {
        SignInThrottle {
            allowed,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(how long to wait)` while `address` has used up its failures.
    fn check(&self, address: IpAddr) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        failures.retain(|_, (since, _)| now.duration_since(*since) < SIGNIN_WINDOW);
        match failures.get(&address) {
            Some((since, count)) if *count >= self.allowed => {
                Err(SIGNIN_WINDOW.saturating_sub(now.duration_since(*since)))
            }
            None if failures.len() >= MAX_THROTTLED_ADDRESSES => Err(SIGNIN_WINDOW),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `address`.
    fn failed(&self, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_THROTTLED_ADDRESSES && !failures.contains_key(&address) {
            return;
        }
        failures.entry(address).or_insert((Instant::now(), 0)).1 += 1;
    }
}

/// `/`: the queue for signed-in staff (the case table for admins), else the sign-in page.
pub async fn home(staff: Option<Staff>) -> Redirect {
    match staff {
        Some(staff) if staff.is_admin() => Redirect::to("/admin/cases"),
        Some(_) => Redirect::to("/queue"),
        None => Redirect::to("/signin"),
    }
}

/// `GET /signin`.
pub async fn signin_page() -> maud::Markup {
    signin_form(None)
}

fn signin_form(error: Option<&str>) -> maud::Markup {
    page(
        "Staff sign-in",
        None,
        None,
        html! {
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form method="post" action="/signin" {
                label for="token" { "Access token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                p.hint { "The token " code { "sosqd user add" } " printed (sosq_ and 64 hex digits)." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /signin`: a staff token opens a session, at most `web_signin_attempts` failures
/// per address per minute.
pub async fn signin(
    State(state): State<Arc<WebState>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Form(form): Form<SignIn>,
) -> Response {
    if let Err(wait) = state.signins.check(address.ip()) {
        let message = format!(
            "too many failed sign-ins from your address; try again in {} s",
            wait.as_secs().max(1)
        );
        return (StatusCode::TOO_MANY_REQUESTS, signin_form(Some(&message))).into_response();
    }
    let user = match state.shared.authenticate(form.token.trim()) {
        Ok(Some(user)) => user,
        Ok(None) => {
            state.signins.failed(address.ip());
            tracing::warn!(%address, "refused a console sign-in with an unknown or revoked token");
            return (
                StatusCode::UNAUTHORIZED,
                signin_form(Some("unknown or revoked access token")),
            )
                .into_response();
        }
        Err(message) => {
            return PageError::new(StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
        }
    };
    tracing::info!(user = %user.name, %address, "console sign-in");
    let admin = user.role == StaffRole::Admin;
    let id = state
        .sessions
        .open(Holder::Staff(user), state.shared.new_party());
    let to = if admin { "/admin/cases" } else { "/queue" };
    (
        [(header::SET_COOKIE, set_cookie(STAFF_COOKIE, &id))],
        Redirect::to(to),
    )
        .into_response()
}

/// `POST /signout`.
pub async fn signout(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Form(form): Form<Csrf>,
) -> Result<Response, PageError> {
    staff.check_csrf(&form.csrf)?;
    state.sessions.close(&staff.session);
    state.shared.forget_party(staff.caller.party);
    Ok((
        [(header::SET_COOKIE, clear_cookie(STAFF_COOKIE))],
        Redirect::to("/signin"),
    )
        .into_response())
}
