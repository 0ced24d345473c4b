//! The synchronous step of answering a request: from the caller, the request and the time,
//! under the core lock, to the core command's effects and the reply to send once they are
//! committed. No I/O and no awaiting here; `dispatch.rs` is the asynchronous step around
//! it (the role check, look-ups in the users file and the store, submitting the effects,
//! waiting for the commit, sending). The fuzz target (`fuzz/src/lib.rs`) drives these very
//! functions, so it tests the daemon's mapping from requests to core commands, not a copy.

use sosq::protocol::{DeleteSelector, Reply, Request, Role, Timestamp};
use sosq::SessionCode;

use super::dispatch::Caller;
use crate::broker::{
    Attached, AuditEntry, Broker, BrokerError, Closer, Effect, Persist, PullRequest, SosRequest,
    GENERAL,
};
use crate::store::CommitReport;

/// How the shell runs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A core command whose reply waits until its changes are on disk ([`command`]).
    Durable,
    /// A core command answered before the commit: pairing (see `Shared::execute_pairing`).
    Pairing,
    /// Answered from the core's views or the store's pages; changes nothing.
    Read,
    /// A delete by state or age: read the matching codes, then delete them in steps.
    BulkDelete,
    /// A request a cluster node redirected here, with its ticket (see `cluster`).
    Redeem,
    /// A staff note: a core command that needs the stored record first when the core does
    /// not hold the case (a closed or expired one; see `broker/notes.rs`).
    Note,
    /// A customer's message: a [`Route::Durable`] command, charged first to its case's
    /// message budget (see `case_rate.rs`).
    Message,
    /// A step of a customer's upload (start, part, finish), kept with the connection until
    /// it finishes (see `uploads.rs`).
    Upload,
    /// Staff reading a case's attachments from the store.
    Attachments,
}

/// Which of the [`Route`]s `request` takes.
pub fn route(request: &Request) -> Route {
    match request {
        Request::OpenSos { .. }
        | Request::Join { .. }
        | Request::Assign { .. }
        | Request::Transfer { .. }
        | Request::InviteNative { .. }
        | Request::Escalate { .. }
        | Request::Create { .. }
        | Request::Close { .. } => Route::Durable,
        Request::Delete(DeleteSelector::Filter(filter))
            if filter.state.is_some() || filter.older_than_ms.is_some() =>
        {
            Route::BulkDelete
        }
        // A filter without criteria is refused by the core command, with the reason.
        Request::Delete(_) => Route::Durable,
        Request::Pull { .. } | Request::Connect { .. } => Route::Pairing,
        Request::Queue { .. }
        | Request::WatchQueue { .. }
        | Request::Status { .. }
        | Request::Cases { .. }
        | Request::History { .. } => Route::Read,
        Request::Redeem { .. } => Route::Redeem,
        Request::Note { .. } => Route::Note,
        Request::AddMessage { .. } => Route::Message,
        Request::AttachStart { .. } | Request::AttachPart { .. } | Request::AttachFinish { .. } => {
            Route::Upload
        }
        Request::Attachments { .. } | Request::Attachment { .. } => Route::Attachments,
    }
}

/// The reply to a core command, to send once its changes are committed.
#[derive(Debug)]
pub enum Answer {
    /// Ready as it is (boxed: a reply is large, and the answer travels through the
    /// request's future).
    Reply(Box<Reply>),
    /// A delete by codes: how many were deleted and which named codes no case had are
    /// known only from the commit.
    Deleted(Vec<SessionCode>),
}

impl Answer {
    /// The reply to send, given what the store reported for the commit.
    pub fn once_committed(self, report: &CommitReport) -> Reply {
        match self {
            Answer::Reply(reply) => *reply,
            Answer::Deleted(named) => Reply::Deleted {
                count: report.deleted.len() as u64,
                not_found: not_found(&named, &report.deleted),
            },
        }
    }
}

/// Runs the core command that `request` (a [`Route::Durable`] or [`Route::Pairing`] one)
/// stands for, for `caller`, at `now`, pushing its effects to `out`.
///
/// Checks that need the users file (does the team or expert exist?) are the caller's to
/// make first; this step only needs the core.
///
/// Errors: the core's refusal; [`BrokerError::InvalidInput`] for a read or a bulk delete,
/// which are not core commands (a shell bug, never a peer's).
pub fn command(
    broker: &mut Broker,
    caller: &Caller,
    request: &Request,
    now: Timestamp,
    out: &mut Vec<Effect>,
) -> Result<Answer, BrokerError> {
    let me = caller.party;
    let name = caller.name.as_str();
    // How an assignment or escalation names who made it; built only for those two, not on
    // the intake and pairing path.
    let staff = || format!("{} {name}", caller.role);
    let reply = match request {
        Request::OpenSos {
            customer,
            description,
            priority,
            group,
        } => {
            let request = SosRequest {
                customer,
                description,
                priority: *priority,
                group: group.as_deref().unwrap_or(GENERAL),
            };
            attached_reply(broker.open_sos(now, me, request, out)?)
        }
        Request::Join {
            code,
            customer,
            resume_secret,
        } => attached_reply(broker.join(now, me, code, customer, resume_secret.as_deref(), out)?),
        Request::Assign { code, to } => Reply::Case(broker.assign(now, &staff(), code, to, out)?),
        Request::Transfer { code, to } => Reply::Case(broker.transfer(now, name, code, to, out)?),
        Request::InviteNative { code, share } => {
            Reply::Case(broker.invite_native(now, name, code, share, out)?)
        }
        Request::Escalate {
            code,
            priority,
            reason,
        } => Reply::Case(broker.escalate(now, &staff(), code, *priority, reason, out)?),
        Request::Create {
            customer,
            description,
        } => Reply::Created(broker.create(now, name, customer, description, out)?),
        Request::Close {
            code,
            resume_secret,
        } => {
            let closer = match caller.role {
                Role::Expert => Closer::Expert(name),
                _ => Closer::Customer {
                    party: me,
                    secret: resume_secret.as_deref(),
                },
            };
            Reply::Case(broker.close(now, closer, code, out)?)
        }
        Request::Delete(selector) => {
            let selection = super::deletion(selector, now)?;
            broker.delete(now, name, selection, out)?;
            let actor = caller.actor();
            out.push(Effect::Persist(Persist::Audit(AuditEntry {
                at: now,
                actor: actor.who.to_string(),
                address: actor.address,
                action: "delete".into(),
                selector: super::dispatch::describe_selector(selector, now),
                count: 0,
            })));
            let named = match selector {
                DeleteSelector::Codes(codes) => codes.clone(),
                DeleteSelector::Filter(_) => Vec::new(),
            };
            return Ok(Answer::Deleted(named));
        }
        Request::Pull { wait } => {
            let request = PullRequest {
                expert: name,
                teams: caller.teams(),
                wait: *wait,
            };
            match broker.pull(now, me, request, out)? {
                Some(case) => Reply::Attached {
                    case,
                    resume_secret: None,
                    position: None,
                },
                None => Reply::Waiting,
            }
        }
        Request::Connect {
            code,
            working_queue,
        } => Reply::Attached {
            case: broker.connect(now, me, name, code, *working_queue, out)?,
            resume_secret: None,
            position: None,
        },
        Request::AddMessage {
            code,
            resume_secret,
            text,
        } => Reply::Case(broker.add_message(now, me, code, resume_secret.as_deref(), text, out)?),
        Request::Queue { .. }
        | Request::WatchQueue { .. }
        | Request::Status { .. }
        | Request::Cases { .. }
        | Request::History { .. }
        | Request::Redeem { .. }
        | Request::Note { .. }
        | Request::AttachStart { .. }
        | Request::AttachPart { .. }
        | Request::AttachFinish { .. }
        | Request::Attachments { .. }
        | Request::Attachment { .. } => {
            return Err(BrokerError::InvalidInput(
                "a read, a redirect's ticket, a note or an upload is not a plain core command"
                    .into(),
            ))
        }
    };
    Ok(Answer::Reply(Box::new(reply)))
}

fn attached_reply(attached: Attached) -> Reply {
    Reply::Attached {
        case: attached.case,
        resume_secret: attached.resume_secret,
        position: attached.position,
    }
}

/// The codes a delete by codes named that no stored case had, in the order given, each
/// once: a typo, or a case already deleted, which the admin must hear about.
fn not_found(named: &[SessionCode], deleted: &[SessionCode]) -> Vec<SessionCode> {
    let deleted: std::collections::HashSet<&SessionCode> = deleted.iter().collect();
    let mut seen = std::collections::HashSet::new();
    named
        .iter()
        .filter(|code| !deleted.contains(code) && seen.insert(**code))
        .copied()
        .collect()
}
