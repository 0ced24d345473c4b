//! The admin's Profiles page: the named support profiles customers with nothing installed
//! open at `/help/<name>` (list, create, edit with a logo upload, delete), and the support
//! profile file (`support.sosq`) that `sosq request --profile FILE` reads, made here and
//! downloaded. They do what `sosqd profile` does, on the same users store; each change to a
//! stored profile goes in the audit log.
//!
//! The profile form is the console's one multipart form (a logo is a file): its route has
//! a body limit of its own, [`MAX_PROFILE_FORM_BYTES`], where every other form has 64 KiB.

use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use sosq::protocol::Priority;

use super::accounts::store_error;
use super::auth::Staff;
use super::layout::{clock_time, page, PageError};
use super::queue::encode;
use super::WebState;
use crate::server::HelpProfile;
use crate::store::users::{
    LogoChange, Profile, ProfileDraft, MAX_COMPANY_CHARS, MAX_LOGO_BYTES, MAX_PROFILE_NAME,
    MAX_WELCOME_CHARS,
};

/// What an expert is told on these pages.
const ADMINS_ONLY: &str = "managing users, teams and profiles";

/// The most bytes the profile form may send: the largest logo, with room for the texts
/// (2,000 characters of welcome in 4-byte characters is 8 KiB) and the multipart framing.
pub(super) const MAX_PROFILE_FORM_BYTES: usize = MAX_LOGO_BYTES + 64 * 1024;

/// `GET /admin/profiles`: the stored profiles, the form for a new one, and the form that
/// makes a support profile file.
pub async fn profiles(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Markup, PageError> {
    staff.require_admin(ADMINS_ONLY)?;
    let groups = state.shared.users().groups().map_err(store_error)?;
    let stored = state.shared.users().profiles().map_err(store_error)?;
    let flash = state.sessions.take_flash(&staff.session);
    let server = format!(
        "{}:{}",
        reached_host(&uri, &headers),
        state.shared.quic_port()
    );
    Ok(page(
        "Support profiles",
        Some(&staff.viewer()),
        flash.as_deref(),
        html! {
            p { "A customer with nothing installed asks for help at " code { "/help/NAME" } " of this console: the profile NAME says which team gets the request, which priorities the customer may choose, and the welcome text, company name and logo the page shows (also " code { "sosqd profile save" } ")." }
            @if stored.is_empty() {
                p #no-profiles { "No profiles yet." }
            } @else {
                table #profiles {
                    thead { tr { th { "Name" } th { "Customer page" } th { "Team" } th { "Priorities offered" } th { "Company" } th { "Logo" } th { "Saved" } th {} } }
                    tbody { @for profile in &stored { (profile_row(&staff, profile)) } }
                }
            }
            h2 { "New profile" }
            (profile_form(&staff, &groups, None))
            h2 { "Support profile file" }
            p { "A support profile file tells " code { "sosq request --profile FILE" } " where the broker is, which certificate to trust and which team's queue to join." }
            form method="post" action="/admin/profile-file" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label { "Broker address " input type="text" name="server" value=(server) required; }
                label { "Team " select name="group" { option value="" { "general" } @for g in &groups { option value=(g) { (g) } } } }
                label { "Welcome text " input type="text" name="welcome" size="40"; }
                button type="submit" { "Download profile" }
            }
        },
    ))
}

/// One stored profile's row: its page, what it offers, and its actions.
fn profile_row(staff: &Staff, profile: &Profile) -> Markup {
    let path = encode(&profile.name);
    let offered = if profile.priorities.is_empty() {
        "not asked (normal)".to_string()
    } else {
        let words: Vec<&str> = profile.priorities.iter().map(|p| p.as_str()).collect();
        words.join(", ")
    };
    html! {
        tr {
            td { a href={ "/admin/profiles/" (path) } { (profile.name) } }
            td { a.help-link href={ "/help/" (path) } { "/help/" (profile.name) } }
            td { (profile.team) }
            td { (offered) }
            td { (profile.company.as_deref().unwrap_or("")) }
            td {
                @if let Some(logo) = &profile.logo {
                    img src={ "/admin/profiles/" (path) "/logo" } alt={ (profile.name) " logo" } height="32";
                    " " span.hint { (logo.kind.as_str()) ", " (logo.bytes.div_ceil(1024)) " KiB" }
                }
            }
            td { (clock_time(profile.saved_at)) }
            td {
                form.inline method="post" action={ "/admin/profiles/" (path) "/delete" } {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    button.danger type="submit" { "Delete" }
                }
            }
        }
    }
}

/// The profile form: empty for a new profile, filled in (its name fixed) for `existing`.
fn profile_form(staff: &Staff, groups: &[String], existing: Option<&HelpProfile>) -> Markup {
    let offered = |p: Priority| existing.is_some_and(|e| e.priorities.contains(&p));
    html! {
        form #profile-form method="post" action="/admin/profiles" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(staff.csrf);
            @if let Some(existing) = existing {
                input type="hidden" name="name" value=(existing.name);
                input type="hidden" name="existing" value="yes";
            } @else {
                p { label { "Name " input type="text" name="name" required maxlength=(MAX_PROFILE_NAME) pattern="[a-z0-9][a-z0-9-]*" placeholder="acme"; } span.hint { " lowercase letters, digits and '-': the customer's address is /help/NAME" } }
            }
            p { label { "Team " select name="team" {
                @for g in groups {
                    option value=(g) selected[existing.is_some_and(|e| &e.team == g)] { (g) }
                }
            } } }
            p { "Priorities the customer may choose: "
                @for p in Priority::ALL {
                    label { input type="checkbox" name="priority" value=(p.as_str()) checked[offered(p)]; " " (p.as_str()) }
                }
                span.hint { " (none: the customer does not choose; the request is normal)" }
            }
            p { label { "Company " input type="text" name="company" size="40" maxlength=(MAX_COMPANY_CHARS) value=(existing.and_then(|e| e.company.as_deref()).unwrap_or("")); } }
            p { label { "Welcome text" br; textarea name="welcome" rows="4" cols="60" maxlength=(MAX_WELCOME_CHARS) { (existing.and_then(|e| e.welcome.as_deref()).unwrap_or("")) } } }
            p {
                label { "Logo " input type="file" name="logo" accept="image/png,image/jpeg"; }
                span.hint { " PNG or JPEG, at most " (MAX_LOGO_BYTES / 1024) " KiB (SVG is refused: it can carry script)" }
                @if existing.is_some_and(|e| e.has_logo) {
                    " " label { input type="checkbox" name="remove_logo" value="yes"; " remove the logo" }
                }
            }
            button type="submit" { (if existing.is_some() { "Save changes" } else { "Create profile" }) }
        }
    }
}

/// `GET /admin/profiles/{name}`: a stored profile's form, filled in.
pub async fn edit(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path(name): Path<String>,
) -> Result<Markup, PageError> {
    staff.require_admin(ADMINS_ONLY)?;
    let groups = state.shared.users().groups().map_err(store_error)?;
    // What the customer's page gets is what the form shows.
    let profile = state
        .shared
        .help_profile(&name)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                format!("no support profile named {name:?}"),
            )
        })?;
    Ok(page(
        &format!("Support profile {name}"),
        Some(&staff.viewer()),
        None,
        html! {
            p { "Customers open it at " a.help-link href={ "/help/" (encode(&name)) } { "/help/" (name) } "." }
            @if profile.has_logo {
                p { img src={ "/admin/profiles/" (encode(&name)) "/logo" } alt={ (name) " logo" } height="64"; }
            }
            (profile_form(&staff, &groups, Some(&profile)))
            p { a href="/admin/profiles" { "Back to the profiles" } }
        },
    ))
}

/// `GET /admin/profiles/{name}/logo`: the logo as stored, for the admin pages (the
/// customers' page serves its own copy at `/help/<name>/logo`).
pub async fn logo(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    staff.require_admin(ADMINS_ONLY)?;
    let found = state
        .shared
        .help_profile_logo(&name)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let Some((content_type, bytes)) = found else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("support profile {name:?} has no logo"),
        ));
    };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// The profile form's fields, read from its multipart body.
#[derive(Default)]
struct ProfileForm {
    csrf: String,
    name: String,
    team: String,
    priorities: Vec<Priority>,
    welcome: String,
    company: String,
    /// The uploaded image; none when the file field was left empty.
    logo: Option<Vec<u8>>,
    remove_logo: bool,
    /// Sent by an existing profile's form: saving replaces it. A new profile's form does
    /// not send it, so a name already taken is refused instead of overwritten.
    existing: bool,
}

impl ProfileForm {
    /// Reads every field; unknown ones are skipped. Errors: the body is not a form (or is
    /// larger than the route allows), or a priority is not one.
    async fn read(mut multipart: Multipart) -> Result<ProfileForm, PageError> {
        let unreadable = |e: axum::extract::multipart::MultipartError| {
            PageError::new(
                e.status(),
                format!(
                    "this form could not be read ({}); the logo may be at most {} KiB",
                    e.body_text(),
                    MAX_LOGO_BYTES / 1024
                ),
            )
        };
        let mut form = ProfileForm::default();
        while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
            let name = field.name().unwrap_or_default().to_string();
            if name == "logo" {
                let bytes = field.bytes().await.map_err(unreadable)?;
                // A file input left empty still sends its part, with nothing in it.
                if !bytes.is_empty() {
                    form.logo = Some(bytes.to_vec());
                }
                continue;
            }
            let text = field.text().await.map_err(unreadable)?;
            match name.as_str() {
                "csrf" => form.csrf = text,
                "name" => form.name = text.trim().to_string(),
                "team" => form.team = text,
                "priority" => form.priorities.push(
                    text.parse()
                        .map_err(|e: String| PageError::new(StatusCode::BAD_REQUEST, e))?,
                ),
                "welcome" => form.welcome = text,
                "company" => form.company = text,
                "remove_logo" => form.remove_logo = !text.is_empty(),
                "existing" => form.existing = !text.is_empty(),
                _ => {}
            }
        }
        Ok(form)
    }
}

/// `POST /admin/profiles`: creates or changes a stored profile, logo included.
pub async fn save(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    multipart: Multipart,
) -> Result<Redirect, PageError> {
    let form = ProfileForm::read(multipart).await?;
    staff.check_csrf(&form.csrf)?;
    staff.require_admin(ADMINS_ONLY)?;
    let users = state.shared.users();
    if !form.existing && users.profile(&form.name).map_err(store_error)?.is_some() {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            format!(
                "a support profile named {:?} exists already: open it from the list to change it",
                form.name
            ),
        ));
    }
    let (logo, logo_said) = match (form.logo, form.remove_logo) {
        (Some(bytes), _) => (LogoChange::Set(bytes), ""),
        (None, true) => (LogoChange::Remove, ", logo removed"),
        (None, false) => (LogoChange::Keep, ""),
    };
    let saved = users
        .save_profile(ProfileDraft {
            name: form.name,
            team: form.team,
            priorities: form.priorities,
            welcome: form.welcome,
            company: form.company,
            logo,
        })
        .map_err(store_error)?;
    let mut selector = format!("{} team {}", saved.name, saved.team);
    match (&saved.logo, logo_said) {
        (Some(logo), _) => selector.push_str(&format!(
            ", logo {} {} bytes",
            logo.kind.as_str(),
            logo.bytes
        )),
        (None, said) => selector.push_str(said),
    }
    state
        .shared
        .audit(&staff.caller.actor(), "profile save", selector)
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    state.sessions.flash(
        &staff.session,
        format!(
            "Saved support profile {0}; customers open it at /help/{0}.",
            saved.name
        ),
    );
    Ok(Redirect::to("/admin/profiles"))
}

/// `POST /admin/profiles/{name}/delete`: removes a stored profile and its logo; its
/// customer page is gone at once (a request already made stays in its queue).
pub async fn delete(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path(name): Path<String>,
    Form(form): Form<super::auth::Csrf>,
) -> Result<Redirect, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin(ADMINS_ONLY)?;
    state
        .shared
        .users()
        .remove_profile(&name)
        .map_err(store_error)?;
    state
        .shared
        .audit(&staff.caller.actor(), "profile remove", name.clone())
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    state.sessions.flash(
        &staff.session,
        format!("Deleted support profile {name}; /help/{name} no longer exists."),
    );
    Ok(Redirect::to("/admin/profiles"))
}

/// The host the admin's browser reached: customers dial it too. HTTP/1.1 names it in
/// `Host`, HTTP/2 in the request's authority.
fn reached_host(uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()))
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|a| a.host().to_string())
        .unwrap_or_else(|| "HOST".to_string())
}

/// The support profile file form.
#[derive(Deserialize)]
pub struct NewProfileFile {
    #[serde(default)]
    csrf: String,
    server: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    welcome: String,
}

/// `POST /admin/profile-file`: the support profile file, as a download.
pub async fn download_profile(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Form(form): Form<NewProfileFile>,
) -> Result<Response, PageError> {
    staff.check_csrf(&form.csrf)?;
    staff.require_admin(ADMINS_ONLY)?;
    let group = Some(form.group.trim().to_string()).filter(|g| !g.is_empty());
    if let Some(group) = &group {
        if !state
            .shared
            .users()
            .group_exists(group)
            .map_err(store_error)?
        {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("no team named {group:?}; add it first"),
            ));
        }
    }
    let server = form.server.trim().to_string();
    if server.starts_with(':') || server.starts_with("HOST:") || !server.contains(':') {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "give the broker's address as customers reach it, host:port",
        ));
    }
    let profile = sosq::profile::SupportProfile {
        server,
        fingerprint: state.shared.fingerprint(),
        group,
        welcome: Some(form.welcome.trim().to_string()).filter(|w| !w.is_empty()),
    };
    let text = serde_json::to_string_pretty(&profile)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        + "\n";
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"support.sosq\"",
            ),
        ],
        text,
    )
        .into_response())
}
