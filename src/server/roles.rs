//! The role matrix: which role may make which request, in one table (README "Who may do
//! what"; `tests/hardening.rs` checks every cell). Ownership of a case (a customer reaches
//! only its own) is the core's to check, not this table's.

use sosq::protocol::{Request, Role};

use super::ServerError;

/// The role matrix: which role may make which request. Ownership of a case (a customer
/// reaches only its own) is checked by the core.
pub fn authorize(role: Role, request: &Request) -> Result<(), ServerError> {
    let (operation, allowed): (&str, &[Role]) = match request {
        Request::OpenSos { .. } => ("requesting help", &[Role::Customer]),
        Request::Escalate { .. } => ("changing a case's priority", &[Role::Expert, Role::Admin]),
        Request::Join { .. } => ("joining a case as its customer", &[Role::Customer]),
        Request::Queue { .. } => ("viewing the queue", &[Role::Expert, Role::Admin]),
        Request::WatchQueue { .. } => ("watching the queue", &[Role::Expert, Role::Admin]),
        Request::Assign { .. } => ("assigning a case", &[Role::Expert, Role::Admin]),
        Request::Transfer { .. } => ("transferring a case", &[Role::Expert]),
        Request::InviteNative { .. } => {
            ("inviting a customer to the native client", &[Role::Expert])
        }
        Request::Pull { .. } => ("pulling a case", &[Role::Expert]),
        Request::Connect { .. } => ("connecting to a case by code", &[Role::Expert]),
        Request::Create { .. } => ("creating a case", &[Role::Expert]),
        Request::Close { .. } => ("closing a case", &[Role::Customer, Role::Expert]),
        Request::Status { .. } => (
            "viewing a case",
            &[Role::Customer, Role::Expert, Role::Admin],
        ),
        Request::Cases { .. } => ("listing all cases", &[Role::Admin]),
        Request::Delete(_) => ("deleting cases", &[Role::Admin]),
        Request::History { .. } => ("viewing a case's history", &[Role::Expert, Role::Admin]),
        Request::Note { .. } => ("adding a staff note", &[Role::Expert, Role::Admin]),
        Request::AddMessage { .. } => ("adding a message to one's case", &[Role::Customer]),
        Request::AttachStart { .. } | Request::AttachPart { .. } | Request::AttachFinish { .. } => {
            ("attaching a file to one's case", &[Role::Customer])
        }
        Request::Attachments { .. } => {
            ("listing a case's attachments", &[Role::Expert, Role::Admin])
        }
        Request::Attachment { .. } => ("reading a case's attachment", &[Role::Expert, Role::Admin]),
        // A redirect's request is judged as itself; a ticket adds no right.
        Request::Redeem { request, .. } => match **request {
            Request::Redeem { .. } => {
                return Err(ServerError::Forbidden(
                    "a redirect's request cannot itself be a redirect".into(),
                ))
            }
            ref inner => return authorize(role, inner),
        },
    };
    if allowed.contains(&role) {
        return Ok(());
    }
    let who = allowed
        .iter()
        .map(|role| format!("{role}s"))
        .collect::<Vec<_>>()
        .join(" and ");
    let hint = match role {
        Role::Customer => " (staff connect with --token or SOSQ_TOKEN)",
        _ => "",
    };
    Err(ServerError::Forbidden(format!(
        "{operation} is for {who}; you are connected as {} {role}{hint}",
        article(role)
    )))
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Admin | Role::Expert => "an",
        Role::Customer => "a",
    }
}
