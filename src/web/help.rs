//! `/help`: where a customer with nothing installed asks for help, waits, and chats.
//!
//! The page is a form (name, what is wrong, priority) and, once sent, the session code
//! (large, read-aloud friendly), the live place in the queue with the typical wait, and the
//! chat with the expert who takes the case. Everything after the form goes over one
//! WebSocket (`/chat/customer`, `socket.rs`) to the customer's in-process party
//! (`bridge.rs`), which opens the case with the same `Request::OpenSos` as `sosq request`.
//! The page keeps the case's code and secret in the tab's session storage, so a reload or
//! a dropped network resumes the same case (and the same chat).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use sosq::protocol::Priority;

use super::bridge::Start;
use super::chat::{ToBrowser, MAX_CHAT_LINE_CHARS};
use super::invite::PROFILE_FILE;
use super::layout::PageError;
use super::socket;
use super::WebState;
use crate::broker::{MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS};

/// What a customer's page asks first on its socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Hello {
    /// The form was sent.
    Open {
        name: String,
        description: String,
        #[serde(default)]
        priority: Option<String>,
        #[serde(default)]
        profile: Option<String>,
    },
    /// The page comes back to its case.
    Resume {
        code: String,
        secret: String,
        #[serde(default)]
        name: String,
    },
}

/// `GET /help`: the form, for the general queue.
pub async fn form(State(state): State<Arc<WebState>>) -> Markup {
    help_page(&HelpView::general(), &FileLimits::of(&state))
}

/// `GET /help/{profile}`: the form of a support profile (its team, priorities, welcome
/// text, company and logo).
pub async fn profile_form(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
) -> Result<Markup, PageError> {
    Ok(help_page(&view_of(&state, &name)?, &FileLimits::of(&state)))
}

/// `GET /help/{profile}/logo`: the profile's logo (PNG or JPEG, checked when uploaded).
pub async fn profile_logo(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    match state.shared.help_profile_logo(&name) {
        Ok(Some((kind, bytes))) => Ok((
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=300".to_string()),
            ],
            bytes,
        )
            .into_response()),
        Ok(None) => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "this profile has no logo",
        )),
        Err(text) => Err(PageError::new(StatusCode::SERVICE_UNAVAILABLE, text)),
    }
}

/// What `/help/{name}` shows. Errors: no such profile, or the store cannot be read.
fn view_of(state: &WebState, name: &str) -> Result<HelpView, PageError> {
    match state.shared.help_profile(name) {
        Ok(Some(profile)) => Ok(HelpView {
            logo: profile
                .has_logo
                .then(|| format!("/help/{}/logo", profile.name)),
            profile: Some(profile.name),
            team: Some(profile.team),
            company: profile.company.unwrap_or_else(|| "Support".into()),
            welcome: profile.welcome,
            priorities: profile.priorities,
        }),
        Ok(None) => Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("there is no support page {name:?}; check the link you were given"),
        )),
        Err(text) => Err(PageError::new(StatusCode::SERVICE_UNAVAILABLE, text)),
    }
}

/// What the page shows for a support profile (or the general queue).
struct HelpView {
    /// The profile's name, sent back with the form; none: the general queue.
    profile: Option<String>,
    /// The team whose queue requests land in; none: `general`.
    team: Option<String>,
    /// Where the profile's logo is served, if it has one.
    logo: Option<String>,
    /// The company name in the header.
    company: String,
    /// Shown above the form and while waiting.
    welcome: Option<String>,
    /// What the customer may choose; empty: no choice (normal).
    priorities: Vec<Priority>,
}

impl HelpView {
    fn general() -> HelpView {
        HelpView {
            profile: None,
            team: None,
            logo: None,
            company: "Support".into(),
            welcome: None,
            priorities: vec![Priority::Normal, Priority::High, Priority::Critical],
        }
    }
}

/// What the page says of attachments (the daemon's `max_attachment_bytes` and
/// `max_attachments_per_case`), so a customer knows before choosing a file.
struct FileLimits {
    bytes: u64,
    count: u32,
}

impl FileLimits {
    fn of(state: &WebState) -> FileLimits {
        let config = state.shared.config();
        FileLimits {
            bytes: config.max_attachment_bytes,
            count: config.max_attachments_per_case,
        }
    }

    /// "up to 4 MB each, 5 files".
    fn words(&self) -> String {
        let mb = self.bytes as f64 / (1024.0 * 1024.0);
        let size = if mb >= 1.0 {
            format!("{} MB", (mb * 10.0).round() / 10.0)
        } else {
            format!("{} KB", self.bytes.div_ceil(1024))
        };
        format!(
            "{}; up to {size} each, {} files",
            sosq::protocol::ACCEPTED_TYPES,
            self.count
        )
    }
}

/// The customer's page: form, waiting, chat and ending, switched by `chat.js`.
fn help_page(view: &HelpView, files: &FileLimits) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Ask for help · " (view.company) }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/chat.js" defer {}
            }
            body.help {
                header {
                    @if let Some(logo) = &view.logo { img.logo src=(logo) alt="" height="32"; }
                    span.brand { (view.company) }
                }
                main #help data-profile=(view.profile.as_deref().unwrap_or("")) {
                    section #ask {
                        h1 { "Ask for help" }
                        @if let Some(welcome) = &view.welcome { p.welcome { (welcome) } }
                        noscript { p.error { "This page needs JavaScript for the live chat. You can also call us, or run " code { "sosq request" } "." } }
                        form #ask-form {
                            label { "Your name" input #ask-name name="name" required maxlength=(MAX_NAME_CHARS) autocomplete="name"; }
                            label { "What is wrong?" textarea #ask-description name="description" required maxlength=(MAX_DESCRIPTION_CHARS) rows="4" {} }
                            @if !view.priorities.is_empty() {
                                label { "How badly does it hurt your work?"
                                    select #ask-priority name="priority" {
                                        @for priority in &view.priorities {
                                            option value=(priority.as_str()) selected[*priority == Priority::Normal] { (priority_words(*priority)) }
                                        }
                                    }
                                }
                            }
                            button type="submit" { "Ask for help" }
                        }
                    }
                    section #waiting hidden {
                        h1 { "Your request is in" }
                        p { "Your session code:" }
                        p.session-code #code {}
                        p.spoken #spoken {}
                        p #place {}
                        @if let Some(welcome) = &view.welcome { p.welcome { (welcome) } }
                        p.hint { "Keep this page open. You can add to your request below; an expert sees it before taking your case." }
                    }
                    section #chat hidden {
                        h2 #with {}
                        ol.lines #lines aria-live="polite" {}
                    }
                    section #invite hidden {
                        h2 #invite-title { "Your expert asks you to run the support program" }
                        p #invite-why {}
                        p { "1. Download " a #invite-profile download=(PROFILE_FILE) href=(profile_file_url(view)) { "the support file" } " (it goes to your Downloads folder)." }
                        p { "2. Open a terminal (on Windows: PowerShell) and run this command:" }
                        pre #invite-command {}
                        button.copy #invite-copy type="button" { "Copy the command" }
                        details { summary { "On another system" } pre #invite-other {} }
                        p.hint { "When the program connects, this page lets go: the session goes on there. Keep this page open until then." }
                    }
                    form #say-form hidden {
                        label { span #say-label { "Add a message" }
                            input #say name="say" maxlength=(MAX_CHAT_LINE_CHARS) autocomplete="off";
                        }
                        button type="submit" { "Send" }
                    }
                    form #attach-form hidden {
                        label { "Attach a file (a screenshot of the error)"
                            input #attach-file type="file" name="file" accept="image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain";
                        }
                        button type="submit" { "Attach" }
                        progress #attach-progress max="100" value="0" hidden {}
                        p.hint #attach-limits { (files.words()) "." }
                    }
                    p #status role="status" aria-live="polite" {}
                    p #problem.error role="alert" hidden {}
                    button #end type="button" hidden { "End session" }
                    section #over hidden {
                        h1 { "Session over" }
                        p #over-text {}
                        button #take-back type="button" hidden { "Continue in this window" }
                        p { a href="" #again { "Ask for help again" } }
                    }
                }
            }
        }
    }
}

/// Where this page's support profile file is served (`invite.rs`).
fn profile_file_url(view: &HelpView) -> String {
    match &view.profile {
        Some(profile) => format!("/help/{profile}/{PROFILE_FILE}"),
        None => format!("/help/{PROFILE_FILE}"),
    }
}

fn priority_words(priority: Priority) -> &'static str {
    match priority {
        Priority::Critical => "My work has stopped",
        Priority::High => "Badly",
        Priority::Normal => "Somewhat",
        Priority::Low => "Not at all: a question",
    }
}

/// `GET /chat/customer`: the customer page's WebSocket.
pub async fn customer_socket(
    State(state): State<Arc<WebState>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    socket::accept(&headers, upgrade, move |mut ws| async move {
        let start = match socket::first_message::<Hello>(&mut ws).await {
            Ok(hello) => start_of(&state, hello),
            Err(text) => Err(text),
        };
        match start {
            Ok(start) => socket::join_party(state, ws, start, address).await,
            Err(text) => {
                socket::send(&mut ws, &ToBrowser::Failed { text, retry: false }).await;
            }
        }
    })
}

/// What the party starts with. Errors: the words to tell the page.
fn start_of(state: &WebState, hello: Hello) -> Result<Start, String> {
    match hello {
        Hello::Open {
            name,
            description,
            priority,
            profile,
        } => {
            let view = match profile.filter(|p| !p.is_empty()) {
                None => HelpView::general(),
                Some(profile) => view_of(state, &profile).map_err(|e| e.message)?,
            };
            let priority = match priority.filter(|p| !p.is_empty()) {
                None => Priority::Normal,
                Some(given) => {
                    let priority: Priority = given.parse()?;
                    if !view.priorities.contains(&priority) {
                        return Err(format!("priority {priority} cannot be chosen here"));
                    }
                    priority
                }
            };
            Ok(Start::Open {
                name,
                description,
                priority,
                team: view.team,
            })
        }
        Hello::Resume { code, secret, name } => {
            let code: sosq::SessionCode = code
                .parse()
                .map_err(|_| format!("{code:?} is not a session code"))?;
            Ok(Start::Resume { code, secret, name })
        }
    }
}
