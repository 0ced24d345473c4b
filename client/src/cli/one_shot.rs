//! The commands that are one request and its answer (or a few pages of one): `create`,
//! `close`, `delete`, `assign`, `transfer` and the like. [`super::run`] connects, then
//! hands the command here.

use serde_json::json;
use sosq::protocol::{DeleteSelector, ErrorKind, ErrorReply, Reply, Request};
use sosq::{Client, ClientError, SessionCode};

use super::output::Output;
use super::{attachments, filters, lists, shapes, unexpected, Command};

/// The commands that are one request and its answer (or a few pages of one).
pub(crate) async fn one_shot(
    client: &mut Client,
    command: Command,
    delete: Option<DeleteSelector>,
    out: &Output,
) -> Result<(), ClientError> {
    match command {
        Command::Queue { paging, .. } => lists::queue(client, out, paging).await,
        Command::Create {
            customer,
            description,
        } => {
            let reply = client
                .request(Request::Create {
                    customer,
                    description,
                })
                .await?;
            let Reply::Created(case) = reply else {
                return Err(unexpected());
            };
            out.print(case.code.to_string(), shapes::case(&case));
            Ok(())
        }
        Command::Close { code, secret, .. } => {
            let reply = client
                .request(Request::Close {
                    code,
                    resume_secret: secret,
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(format!("closed case {}", case.code), shapes::case(&case));
            Ok(())
        }
        Command::Assign { code, to } => {
            let to = to.assignee()?;
            let reply = client.request(Request::Assign { code, to }).await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            let whom = case
                .assigned_to
                .as_ref()
                .map(|expert| format!("expert {expert}"))
                .unwrap_or_else(|| format!("group {}", case.group));
            out.print(
                format!("case {} is now routed to {whom}", case.code),
                shapes::case(&case),
            );
            Ok(())
        }
        Command::Transfer { code, to } => {
            let to = to.assignee()?;
            let reply = client
                .request(Request::Transfer {
                    code,
                    to: to.clone(),
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(
                format!("handed case {} to {to}", case.code),
                shapes::case(&case),
            );
            Ok(())
        }
        Command::InviteNative { code, share } => {
            let reply = client
                .request(Request::InviteNative {
                    code,
                    share: share.to_string(),
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(
                format!(
                    "asked the customer of case {} to run sosq and share {share}",
                    case.code
                ),
                shapes::case(&case),
            );
            Ok(())
        }
        Command::Escalate {
            code,
            priority,
            reason,
        } => {
            let reply = client
                .request(Request::Escalate {
                    code,
                    priority,
                    reason,
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(
                format!("case {} is now {}", case.code, case.priority),
                shapes::case(&case),
            );
            Ok(())
        }
        Command::Note { code, text } => {
            let reply = client.request(Request::Note { code, text }).await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(
                format!("note added to case {}", case.code),
                shapes::case(&case),
            );
            Ok(())
        }
        Command::Message(args) => attachments::message(client, out, args).await,
        Command::Attach(args) => attachments::attach(client, out, args).await,
        Command::Attachments(args) => attachments::attachments(client, out, args).await,
        Command::Status { code, secret, .. } => lists::status(client, out, code, secret).await,
        Command::History { code } => lists::history(client, out, code).await,
        Command::Cases { filter, paging } => lists::cases(client, out, filter, paging).await,
        Command::Delete { .. } => {
            let selector = delete.ok_or_else(unexpected)?;
            let Reply::Deleted { count, not_found } =
                client.request(Request::Delete(selector)).await?
            else {
                return Err(unexpected());
            };
            let noun = if count == 1 { "case" } else { "cases" };
            out.print(
                format!("deleted {count} {noun}"),
                json!({ "deleted": count, "not_found": not_found }),
            );
            not_deleted(&not_found)
        }
        Command::Request { .. }
        | Command::Join { .. }
        | Command::Pull { .. }
        | Command::Connect { .. } => Err(unexpected()),
    }
}

/// A delete that named codes no case has fails, naming them, so a typo is not taken for
/// a deletion (the cases that did exist are deleted all the same).
fn not_deleted(not_found: &[SessionCode]) -> Result<(), ClientError> {
    let (first, rest) = match not_found {
        [] => return Ok(()),
        [first, rest @ ..] => (first, rest),
    };
    let mut codes = first.to_string();
    for code in rest {
        codes.push_str(&format!(", {code}"));
    }
    let noun = if rest.is_empty() { "code" } else { "codes" };
    Err(ClientError::Refused(ErrorReply {
        kind: ErrorKind::UnknownCode,
        message: format!("no case has {noun} {codes} (mistyped, or already deleted)"),
    }))
}

/// What `sosq delete` names: codes, or a filter (never both, never neither).
///
/// Errors: [`ClientError::Options`] for both, neither, or a malformed code.
pub(crate) fn delete_selector(
    codes: &[String],
    filter: &filters::FilterArgs,
) -> Result<DeleteSelector, ClientError> {
    let filter = filter.filter()?;
    if !codes.is_empty() {
        if !filter.is_empty() {
            return Err(ClientError::Options(
                "delete either codes or by filter flags, not both".into(),
            ));
        }
        let parsed = codes
            .iter()
            .map(|code| code.parse::<SessionCode>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Options(e.to_string()))?;
        return Ok(DeleteSelector::Codes(parsed));
    }
    if filter.is_empty() {
        return Err(ClientError::Options(
            "say what to delete: codes, or filter flags (--state, --older-than, --team, \
             --priority, --created-after/--created-before, --closed-after/--closed-before, \
             --text)"
                .into(),
        ));
    }
    Ok(DeleteSelector::Filter(filter))
}
