//! The web console: HTTPS on TCP, served by `sosqd` itself with the daemon's own
//! certificate, at the QUIC port's number unless `web_listen` says otherwise.
//!
//! It is another way in to the same core, not a second broker: every action a page offers
//! becomes the same [`sosq::protocol::Request`] a `sosq` command sends, run through
//! [`crate::server::handle`] with a [`Caller`] of channel [`Channel::Console`], so the role
//! matrix, the limits, the history and the audit log are the ones the wire has (history
//! entries and audit lines say "via console").
//!
//! A reader following one request passes: `serve.rs` (TLS and HTTP), the router below,
//! `auth.rs` (who is signed in, CSRF), then one page module, which renders with
//! `layout.rs`:
//! - `queue.rs`: the expert's live queue (server-sent events);
//! - `case.rs`: a case's page and its actions; `attachments.rs`: its customer's files;
//! - `admin.rs` (with `case_filter.rs`): the admin's case table, bulk delete, CSV export;
//! - `audit.rs`: the audit log and its CSV export;
//! - `accounts.rs`: users, teams and the status page's notice;
//! - `profiles.rs`: support profiles (the customers' `/help/<name>` pages, and files);
//! - `reports.rs`: the admin's charts;
//! - `public.rs`: `/status`, `/case` (a customer follows its request) and `/healthz`;
//! - `help.rs`: `/help`, where a customer with nothing installed asks for help and chats,
//!   and `case_chat.rs`, the expert's side of that chat on a case's page. Both talk over a
//!   WebSocket (`socket.rs`, messages in `chat.rs`) to an in-process party (`bridge.rs`)
//!   that is a real QUIC party of the broker.

mod accounts;
mod admin;
mod attachments;
mod audit;
mod auth;
mod bridge;
mod case;
mod case_chat;
mod case_filter;
mod chat;
mod help;
mod invite;
mod layout;
mod profiles;
pub(crate) mod public;
mod queue;
mod reports;
mod serve;
mod signin;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::server::{Caller, Channel, Shared};

pub use serve::{serve, tls_config, WebError};

/// The most bytes a request body may have: the largest form (a note or an escalation
/// reason of 2,000 characters in 4-byte characters, plus the CSRF token) fits many times.
/// The profile form alone, which carries a logo, has a limit of its own
/// (`profiles::MAX_PROFILE_FORM_BYTES`).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The Content-Security-Policy of every answer: only this origin's own script and style
/// files, no inline script or style, no frames, forms only to here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every page handler shares: the daemon and the console's own state.
pub struct WebState {
    /// The daemon's shared state; requests go through its dispatch like the wire's.
    pub shared: Arc<Shared>,
    /// Signed-in staff and customers following their case.
    pub sessions: auth::Sessions,
    /// Failed sign-ins per address.
    pub signins: signin::SignInThrottle,
    /// `/status`, computed at most once a second whatever the traffic.
    pub status: public::StatusCache,
    /// The in-process parties of browser customers and of experts chatting in the console.
    pub bridges: Arc<bridge::Bridges>,
}

impl WebState {
    /// The console's state around a running daemon's.
    pub fn new(shared: Arc<Shared>) -> Arc<WebState> {
        let config = shared.config();
        Arc::new(WebState {
            sessions: auth::Sessions::new(config.web_session_idle),
            signins: signin::SignInThrottle::new(config.web_signin_attempts),
            status: public::StatusCache::default(),
            bridges: Arc::default(),
            shared,
        })
    }

    /// Runs one request as `caller` through the daemon's dispatch (the wire's path: role
    /// matrix, throttles, core, store) and returns its reply. A redirect (in a cluster, the
    /// case is another node's to change) is followed for staff, as `sosq` follows it: this
    /// node runs the request there on the staff member's behalf (`server/delegation.rs`).
    /// A redirect that cannot be followed is returned, and its reason logged.
    pub async fn run(
        &self,
        caller: &Caller,
        request: sosq::protocol::Request,
    ) -> sosq::protocol::Reply {
        let reply = crate::server::handle(&self.shared, caller, request).await;
        match (reply, &caller.user) {
            (sosq::protocol::Reply::Redirect(redirect), Some(user)) => {
                match self.shared.forward(&redirect, user).await {
                    Ok(answer) => answer,
                    Err(why) => {
                        tracing::warn!(node = %redirect.address, %why, "the console could not follow a redirect");
                        sosq::protocol::Reply::Redirect(redirect)
                    }
                }
            }
            (reply, _) => reply,
        }
    }
}

/// A caller for one console request from `address`: staff with their account, or an
/// anonymous customer (a public page).
pub(crate) fn console_caller(
    party: crate::broker::PartyId,
    user: Option<&crate::store::users::User>,
    address: std::net::SocketAddr,
) -> Caller {
    Caller {
        party,
        role: user.map_or(sosq::protocol::Role::Customer, |u| u.role.role()),
        name: user.map(|u| u.name.clone()).unwrap_or_default(),
        user: user.cloned(),
        address,
        channel: Channel::Console,
    }
}

/// Every route of the console, with the security headers and limits on all of them.
pub fn router(state: Arc<WebState>) -> Router {
    let pages = Router::new()
        .route("/", get(signin::home))
        .route("/signin", get(signin::signin_page).post(signin::signin))
        .route("/signout", post(signin::signout))
        .route("/queue", get(queue::show))
        .route("/queue/live", get(queue::live))
        .route("/cases/{code}", get(case::show))
        .route("/cases/{code}/chat", get(case_chat::staff_socket))
        .route("/cases/{code}/{action}", post(case::act))
        .route("/cases/{code}/attachments/{id}", get(attachments::download))
        .route("/admin/cases", get(admin::cases))
        .route("/admin/cases.csv", get(admin::cases_csv))
        .route("/admin/delete", post(admin::delete))
        .route("/admin/audit", get(audit::show))
        .route("/admin/audit.csv", get(audit::csv))
        .route("/admin/reports", get(reports::show))
        .route(
            "/admin/users",
            get(accounts::users).post(accounts::add_user),
        )
        .route("/admin/users/{name}/revoke", post(accounts::revoke_user))
        .route(
            "/admin/teams",
            get(accounts::teams).post(accounts::add_team),
        )
        .route("/admin/teams/{name}/public", post(accounts::set_public))
        .route("/admin/notice", post(accounts::set_notice))
        .route("/admin/profile-file", post(profiles::download_profile))
        .route("/admin/profiles/{name}", get(profiles::edit))
        .route("/admin/profiles/{name}/logo", get(profiles::logo))
        .route("/admin/profiles/{name}/delete", post(profiles::delete))
        .route("/status", get(public::status))
        .route("/case", get(public::case_form).post(public::case_open))
        .route("/case/view", get(public::case_view))
        .route("/case/live", get(public::case_live))
        .route("/case/close", post(public::case_close))
        .route("/help", get(help::form))
        .route("/help/{profile}", get(help::profile_form))
        .route("/help/{profile}/logo", get(help::profile_logo))
        .route("/help/support.sosq", get(invite::general_profile))
        .route("/help/{profile}/support.sosq", get(invite::named_profile))
        .route("/chat/customer", get(help::customer_socket))
        .route("/healthz", get(public::healthz))
        .route("/assets/{file}", get(layout::asset))
        .fallback(layout::not_found)
        // Every route above (and the fallback) takes small forms only; a layer applies to
        // the routes added before it, so the profile form after it keeps its own limit.
        // (Its path is the list's: a path under /admin/profiles/ could be a profile's
        // name, whose page would then answer "method not allowed".)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .route(
            "/admin/profiles",
            get(profiles::profiles)
                .post(profiles::save)
                .layer(RequestBodyLimitLayer::new(profiles::MAX_PROFILE_FORM_BYTES)),
        );
    pages
        .layer(axum::middleware::from_fn(layout::styled_refusals))
        .layer(axum::middleware::from_fn(auth::same_origin))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Pages carry case data: never kept by a browser or a proxy (assets say otherwise).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

/// How long a client has for the TLS handshake and the request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
