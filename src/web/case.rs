//! A case's page for staff: its state, who is online, its timings, its whole history
//! (paged), and the actions: take it (assign it to oneself; the session itself runs in the
//! native client, so the page shows the `sosq connect` command to copy), assign, transfer,
//! escalate with a reason, close, add a note (staff only: never shown to the customer). Each action is the wire's request for it.
//! The customer's latest message is in the summary, its files listed with download links
//! (`attachments.rs`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use sosq::protocol::{Assignee, CaseInfo, HistoryPage, Priority, Reply, Request};

use super::auth::Staff;
use super::layout::{clock_time, page, PageError};
use super::WebState;

/// Which part of the history a case page shows.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryView {
    /// Index of the first entry shown (0: the oldest).
    #[serde(default)]
    from: u32,
}

/// `GET /cases/{code}`.
pub async fn show(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path(code): Path<String>,
    Query(view): Query<HistoryView>,
) -> Result<Markup, PageError> {
    let status = Request::Status {
        code: code.clone(),
        resume_secret: None,
    };
    let case = match state.run(&staff.caller, status).await {
        Reply::Case(case) => case,
        other => return Err(PageError::unexpected(&other)),
    };
    let history = Request::History {
        code: code.clone(),
        from: view.from,
        limit: 0,
    };
    let history = match state.run(&staff.caller, history).await {
        Reply::History(page) => page,
        other => return Err(PageError::unexpected(&other)),
    };
    // Asked only when there are some: most cases have none.
    let attachments = match case.attachments {
        0 => None,
        _ => match state
            .run(&staff.caller, Request::Attachments { code: code.clone() })
            .await
        {
            Reply::Attachments(list) => Some(list),
            other => return Err(PageError::unexpected(&other)),
        },
    };
    let flash = state.sessions.take_flash(&staff.session);
    let title = format!("Case {}", case.code);
    Ok(page(
        &title,
        Some(&staff.viewer()),
        flash.as_deref(),
        html! {
            (summary(&case, state.shared.now()))
            @if !staff.is_admin() && is_open(&case) {
                section.connect {
                    h2 { "Start the session" }
                    p { "The session runs in the native client. Copy this command (add " code { "--forward PORT" } " to reach a service on the customer's side):" }
                    pre #connect-command { "sosq connect " (case.code) }
                    button type="button" data-copy="connect-command" { "Copy command" }
                }
                (chat_panel(&case))
            }
            @if let Some(list) = &attachments {
                (super::attachments::section(list))
            }
            (actions(&case, &staff))
            (history_table(&history))
        },
    ))
}

/// The chat with the customer, from this page (`case_chat.rs`, `assets/chat.js`): joining
/// it connects this expert to the case as `sosq connect` does.
fn chat_panel(case: &CaseInfo) -> Markup {
    html! {
        section.chat #case-chat data-socket=(format!("/cases/{}/chat", case.code)) {
            h2 { "Chat" }
            p { "Or chat with " (case.customer) " from here (text only)." }
            p #chat-state role="status" {}
            button #chat-start type="button" { "Chat with the customer" }
            button #chat-leave type="button" hidden { "Leave the chat" }
            section #chat hidden {
                ol.lines #lines aria-live="polite" {}
            }
            form #say-form hidden {
                label { span #say-label { "Message" } input #say name="say" maxlength=(super::chat::MAX_CHAT_LINE_CHARS) autocomplete="off"; }
                button type="submit" { "Send" }
            }
            p #problem.error role="alert" hidden {}
        }
    }
}

fn is_open(case: &CaseInfo) -> bool {
    !matches!(
        case.state,
        sosq::protocol::CaseState::Closed | sosq::protocol::CaseState::Expired
    )
}

fn summary(case: &CaseInfo, now: sosq::protocol::Timestamp) -> Markup {
    html! {
        dl.case {
            dt { "State" } dd #case-state { (case.state) }
            dt { "Customer" } dd { (case.customer) (if case.customer_online { " (online)" } else { " (offline)" }) }
            dt { "Description" } dd { (case.description) }
            @if let Some(message) = &case.last_message {
                dt { "Latest message" } dd #latest-message { (message) }
            }
            dt { "Expert" } dd { (case.expert.as_deref().unwrap_or("none connected")) }
            dt { "Priority" } dd { (case.priority) }
            dt { "Team" } dd { (case.group) }
            dt { "Assigned to" } dd { (case.assigned_to.as_deref().unwrap_or("nobody")) }
            dt { "Created" } dd { (clock_time(case.created_at)) }
            dt { "Last change" } dd { (clock_time(case.updated_at)) }
            @if is_open(case) {
                dt { "Expires" } dd { (clock_time(case.expires_at)) }
            }
            @if let Some(due) = case.response_due {
                dt { "Response due" } dd { (clock_time(due)) " (" (super::layout::time_left(due, now)) ")" }
            }
            @if let Some(at) = case.first_response_at {
                dt { "First response" } dd { (clock_time(at)) @if case.response_target_met == Some(false) { " (after its target)" } }
            }
        }
    }
}

fn actions(case: &CaseInfo, staff: &Staff) -> Markup {
    let action = |name: &str| format!("/cases/{}/{name}", case.code);
    let open = is_open(case);
    html! {
        section.actions {
            h2 { "Actions" }
            @if open && !staff.is_admin() {
                form method="post" action=(action("take")) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    button type="submit" { "Take it" }
                    span.hint { " assigns it to you; then run the command above" }
                }
            }
            form method="post" action=(action("note")) {
                input type="hidden" name="csrf" value=(staff.csrf);
                label { "Note " input type="text" name="reason" required size="50" placeholder="staff only; the customer never sees it" aria-label="note"; }
                button type="submit" { "Add note" }
            }
            @if open {
                form method="post" action=(action("assign")) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label { "Assign to " select name="kind" { option value="expert" { "expert" } option value="team" { "team" } } }
                    input type="text" name="to" required aria-label="expert or team name";
                    button type="submit" { "Assign" }
                }
                @if !staff.is_admin() {
                    form method="post" action=(action("transfer")) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        label { "Transfer to " select name="kind" { option value="expert" { "expert" } option value="team" { "team" } } }
                        input type="text" name="to" required aria-label="expert or team name";
                        button type="submit" { "Transfer" }
                    }
                }
                form method="post" action=(action("escalate")) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label { "Priority " select name="priority" {
                        @for p in Priority::ALL { option value=(p) selected[p == case.priority] { (p) } }
                    } }
                    input type="text" name="reason" required placeholder="why" aria-label="reason";
                    button type="submit" { "Change priority" }
                }
                @if !staff.is_admin() && case.customer_online {
                    form #invite-form method="post" action=(action("invite")) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        label { "Ask the customer to run sosq and share " input type="text" name="share" value="127.0.0.1:5900" required size="22" aria-label="service to share, host:port"; }
                        button type="submit" { "Ask for the native client" }
                        span.hint { " 127.0.0.1:5900: the screen (VNC); 127.0.0.1:22: SSH. You must be in the session." }
                    }
                }
                @if !staff.is_admin() {
                    form method="post" action=(action("close")) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        button type="submit" { "Close the case" }
                    }
                }
            }
        }
    }
}

fn history_table(history: &HistoryPage) -> Markup {
    html! {
        section.history {
            h2 { "History (" (history.total) " entries)" }
            table #history {
                thead { tr { th { "When" } th { "State" } th { "What" } th { "Who" } th { "From" } } }
                tbody {
                    @for entry in &history.entries {
                        tr class=(format!("kind-{:?}", entry.kind).to_lowercase()) {
                            td { (clock_time(entry.at)) }
                            td { (entry.state) }
                            td { (entry.event) }
                            td { @if let Some(actor) = &entry.actor { (actor) } }
                            td { (entry.address.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(next) = history.next {
                p { a href={ "?from=" (next) } { "Later entries" } }
            }
        }
    }
}

/// Whether the case `code` is already assigned to the signed-in expert.
async fn assigned_to_me(state: &WebState, staff: &Staff, code: &str) -> bool {
    let status = Request::Status {
        code: code.to_string(),
        resume_secret: None,
    };
    matches!(
        state.run(&staff.caller, status).await,
        Reply::Case(case) if case.assigned_to.as_deref() == Some(staff.user.name.as_str())
    )
}

/// The page that says a case's action must be taken on another node, which this console
/// could not reach, with a link to that node's console.
fn elsewhere(staff: &Staff, code: &str, address: &str) -> Response {
    let there = format!("https://{address}/cases/{}", code.trim());
    let body = page(
        "On another node",
        Some(&staff.viewer()),
        None,
        html! {
            p.warning role="alert" { "Case " (code) " is served by the cluster node at " (address) ", which alone may change it, and this console could not reach it (the daemon's log says why)." }
            p { a #home-node href=(there) { "Open case " (code) " on that node's console" } " (sign in there with your token), or run the action with " code { "sosq" } ", which follows the node by itself." }
        },
    );
    (StatusCode::MISDIRECTED_REQUEST, body).into_response()
}

/// The fields of every action form; each action reads the ones it needs.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// `expert` or `team`, for assign and transfer.
    #[serde(default)]
    kind: String,
    /// The expert's or team's name.
    #[serde(default)]
    to: String,
    /// The new priority, for escalate.
    #[serde(default)]
    priority: String,
    /// Why, for escalate; the note's text, for note.
    #[serde(default)]
    reason: String,
    /// The customer's local service to share (`host:port`), for invite.
    #[serde(default)]
    share: String,
}

impl ActionForm {
    fn assignee(&self) -> Result<Assignee, PageError> {
        let to = self.to.trim().to_string();
        match self.kind.as_str() {
            "expert" => Ok(Assignee::Expert(to)),
            // The console says team; `sosq` and the replies say group: both mean a queue.
            "team" | "group" => Ok(Assignee::Group(to)),
            other => Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("assign to an expert or a team, not {other:?}"),
            )),
        }
    }
}

/// `POST /cases/{code}/{action}`: runs the action as the wire's request, then back to the
/// case page with what happened.
pub async fn act(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path((code, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&form.csrf)?;
    if action == "take" && assigned_to_me(&state, &staff, &code).await {
        // Taking it twice (a double click, a reload) writes no second assignment.
        let taken = format!(
            "Case {code} is assigned to you: run sosq connect {code} to start the session."
        );
        state.sessions.flash(&staff.session, taken);
        return Ok(
            Redirect::to(&format!("/cases/{}", super::queue::encode(code.trim()))).into_response(),
        );
    }
    let request = match action.as_str() {
        "take" => Request::Assign {
            code: code.clone(),
            to: Assignee::Expert(staff.user.name.clone()),
        },
        "assign" => Request::Assign {
            code: code.clone(),
            to: form.assignee()?,
        },
        "transfer" => Request::Transfer {
            code: code.clone(),
            to: form.assignee()?,
        },
        "escalate" => Request::Escalate {
            code: code.clone(),
            priority: form
                .priority
                .parse()
                .map_err(|e: String| PageError::new(StatusCode::BAD_REQUEST, e))?,
            reason: form.reason.clone(),
        },
        "close" => Request::Close {
            code: code.clone(),
            resume_secret: None,
        },
        "note" => Request::Note {
            code: code.clone(),
            text: form.reason.clone(),
        },
        "invite" => Request::InviteNative {
            code: code.clone(),
            share: form.share.clone(),
        },
        _ => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                format!("there is no action {action:?}"),
            ))
        }
    };
    let done = match state.run(&staff.caller, request).await {
        Reply::Error(e) => return Err(PageError::from_reply(e.kind, e.message)),
        // Another node's to change, and this one could not reach it (`WebState::run`).
        Reply::Redirect(redirect) => return Ok(elsewhere(&staff, &code, &redirect.address)),
        _ => match action.as_str() {
            "take" => format!(
                "Case {code} is assigned to you: run sosq connect {code} to start the session."
            ),
            "assign" => format!("Assigned to {}.", form.assignee()?),
            "transfer" => format!("Transferred to {}.", form.assignee()?),
            "escalate" => format!("Priority is now {}.", form.priority),
            "note" => "Note added.".to_string(),
            "invite" => format!(
                "The customer was asked to run sosq and share {}; you are connected when it joins.",
                form.share.trim()
            ),
            _ => "Closed.".to_string(),
        },
    };
    state.sessions.flash(&staff.session, done);
    let code = code.trim().to_string();
    Ok(Redirect::to(&format!("/cases/{}", super::queue::encode(&code))).into_response())
}
