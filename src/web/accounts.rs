//! The admin's account pages: users (add, with the token shown once; revoke), teams
//! (groups; which show on the public status page) and the status page's notice (support
//! profiles are `profiles.rs`). They do what `sosqd user`, `sosqd group` and `sosqd
//! notice` do, on the same users store, and each change goes in the audit log.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::Staff;
use super::layout::{clock_time, page, PageError};
use super::WebState;
use crate::store::users::StaffRole;

/// A users-store refusal (a name taken, a team missing...) as a page, in its words.
pub(super) fn store_error(e: impl std::fmt::Display) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, e.to_string())
}

/// `GET /admin/users`.
pub async fn users(State(state): State<Arc<WebState>>, staff: Staff) -> Result<Markup, PageError> {
    staff.require_admin("managing users, teams and profiles")?;
    let flash = state.sessions.take_flash(&staff.session);
    users_page(&state, &staff, flash.as_deref(), None)
}

fn users_page(
    state: &WebState,
    staff: &Staff,
    flash: Option<&str>,
    token: Option<(&str, &str)>,
) -> Result<Markup, PageError> {
    let users = state.shared.users().list().map_err(store_error)?;
    let groups = state.shared.users().groups().map_err(store_error)?;
    Ok(page(
        "Users",
        Some(&staff.viewer()),
        flash,
        html! {
            @if let Some((name, token)) = token {
                section.token role="status" {
                    p { "The access token of " strong { (name) } " (shown only now; it is stored as a hash):" }
                    pre #new-token { (token) }
                    button type="button" data-copy="new-token" { "Copy token" }
                }
            }
            table #users {
                thead { tr { th { "Name" } th { "Role" } th { "Teams" } th { "Added" } th {} } }
                tbody {
                    @for user in &users {
                        tr {
                            td { (user.name) } td { (user.role.as_str()) } td { (user.teams().join(", ")) } td { (clock_time(user.created_at)) }
                            td {
                                form.inline method="post" action={ "/admin/users/" (super::queue::encode(&user.name)) "/revoke" } {
                                    input type="hidden" name="csrf" value=(staff.csrf);
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Add a user" }
            form method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label { "Name " input type="text" name="name" required pattern="[A-Za-z0-9._-]+"; }
                label { "Role " select name="role" { option value="expert" { "expert" } option value="admin" { "admin" } } }
                label { "Teams " input type="text" name="groups" placeholder="general" list="team-names"; }
                datalist #team-names { @for g in &groups { option value=(g) {} } }
                button type="submit" { "Add" }
            }
        },
    ))
}

/// The add-user form.
#[derive(Deserialize)]
pub struct NewUser {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
    /// Team names separated by commas or spaces; empty for `general`.
    #[serde(default)]
    groups: String,
}

/// `POST /admin/users`: adds the user and shows its token this once.
pub async fn add_user(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Form(form): Form<NewUser>,
) -> Result<Markup, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin("managing users, teams and profiles")?;
    let role = match form.role.as_str() {
        "expert" => StaffRole::Expert,
        "admin" => StaffRole::Admin,
        other => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("a user is an expert or an admin, not {other:?}"),
            ))
        }
    };
    let groups: Vec<String> = form
        .groups
        .split([',', ' '])
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(String::from)
        .collect();
    let name = form.name.trim();
    let token = state
        .shared
        .users()
        .add_in_groups(name, role, &groups)
        .map_err(store_error)?;
    state
        .shared
        .audit(
            &staff.caller.actor(),
            "user add",
            format!("{} {name}", role.as_str()),
        )
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    users_page(
        &state,
        &staff,
        Some(&format!("Added {} {name}.", role.as_str())),
        Some((name, &token)),
    )
}

/// `POST /admin/users/{name}/revoke`: the user's connections and console sessions end
/// within a second.
pub async fn revoke_user(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path(name): Path<String>,
    Form(form): Form<super::auth::Csrf>,
) -> Result<Redirect, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin("managing users, teams and profiles")?;
    state.shared.users().revoke(&name).map_err(store_error)?;
    state
        .shared
        .audit(&staff.caller.actor(), "user revoke", name.clone())
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    state.sessions.flash(
        &staff.session,
        format!(
            "Revoked {name}'s token; its connections and console sessions end within a second."
        ),
    );
    Ok(Redirect::to("/admin/users"))
}

/// `GET /admin/teams`.
pub async fn teams(State(state): State<Arc<WebState>>, staff: Staff) -> Result<Markup, PageError> {
    staff.require_admin("managing users, teams and profiles")?;
    let groups = state.shared.users().groups().map_err(store_error)?;
    let public = state.shared.users().public_groups().map_err(store_error)?;
    let notice = state.shared.users().notice().map_err(store_error)?;
    let flash = state.sessions.take_flash(&staff.session);
    Ok(page(
        "Teams and status page",
        Some(&staff.viewer()),
        flash.as_deref(),
        html! {
            table #teams-list {
                thead { tr { th { "Team" } th { "On the public status page" } th {} } }
                tbody {
                    @for g in &groups {
                        @let is_public = public.contains(g);
                        tr {
                            td.team { (g) }
                            td { (if is_public { "yes" } else { "no" }) }
                            td {
                                form.inline method="post" action={ "/admin/teams/" (super::queue::encode(g)) "/public" } {
                                    input type="hidden" name="csrf" value=(staff.csrf);
                                    input type="hidden" name="public" value=(if is_public { "false" } else { "true" });
                                    button type="submit" { (if is_public { "Hide from /status" } else { "Show on /status" }) }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/admin/teams" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label { "New team " input type="text" name="name" required pattern="[A-Za-z0-9._-]+"; }
                button type="submit" { "Add" }
            }
            h2 { "Maintenance notice" }
            p.hint { "Shown on the public " a href="/status" { "status page" } " (also " code { "sosqd notice set TEXT" } ")." }
            form method="post" action="/admin/notice" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label { "Notice " input #notice type="text" name="text" size="60" value=(notice.map(|n| n.text).unwrap_or_default()); }
                button type="submit" { "Set" }
                span.hint { " (empty clears it)" }
            }
        },
    ))
}

/// The add-team form.
#[derive(Deserialize)]
pub struct NewTeam {
    #[serde(default)]
    csrf: String,
    name: String,
}

/// `POST /admin/teams`.
pub async fn add_team(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Form(form): Form<NewTeam>,
) -> Result<Redirect, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin("managing users, teams and profiles")?;
    let name = form.name.trim();
    state.shared.users().add_group(name).map_err(store_error)?;
    state
        .shared
        .audit(&staff.caller.actor(), "group add", name.to_string())
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    state
        .sessions
        .flash(&staff.session, format!("Added team {name}."));
    Ok(Redirect::to("/admin/teams"))
}

/// The public-flag form.
#[derive(Deserialize)]
pub struct PublicFlag {
    #[serde(default)]
    csrf: String,
    public: String,
}

/// `POST /admin/teams/{name}/public`: shows or hides a team's queue on `/status`.
pub async fn set_public(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path(name): Path<String>,
    Form(form): Form<PublicFlag>,
) -> Result<Redirect, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin("managing users, teams and profiles")?;
    let public = form.public == "true";
    state
        .shared
        .users()
        .set_group_public(&name, public)
        .map_err(store_error)?;
    let action = if public {
        "group public"
    } else {
        "group private"
    };
    state
        .shared
        .audit(&staff.caller.actor(), action, name.clone())
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let shown = if public { "shows" } else { "no longer shows" };
    state.sessions.flash(
        &staff.session,
        format!("The status page {shown} team {name}."),
    );
    Ok(Redirect::to("/admin/teams"))
}

/// The notice form.
#[derive(Deserialize)]
pub struct NoticeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

/// `POST /admin/notice`: sets (or, empty, clears) the status page's maintenance notice.
pub async fn set_notice(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Form(form): Form<NoticeForm>,
) -> Result<Redirect, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin("managing users, teams and profiles")?;
    let text = Some(form.text.trim()).filter(|t| !t.is_empty());
    state.shared.users().set_notice(text).map_err(store_error)?;
    let (action, selector) = match text {
        Some(text) => ("notice set", text.to_string()),
        None => ("notice clear", String::new()),
    };
    state
        .shared
        .audit(&staff.caller.actor(), action, selector)
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    state.sessions.flash(
        &staff.session,
        if text.is_some() {
            "Notice set."
        } else {
            "Notice cleared."
        },
    );
    Ok(Redirect::to("/admin/teams"))
}
