//! How a party moves on within one session: a pulling expert let go takes the next case,
//! and a cluster node may send the party to the case's home node (in answer to a request,
//! or late, after `Waiting`). Either way the session carries on; a move to another
//! connection ends this connection's part with [`Step::Moved`].

use serde_json::json;
use sosq::protocol::{Reply, Request};
use sosq::{Client, ClientError, SessionCode};

use super::{lost, Attach, Plan, Side, Step};
use crate::cli::output::Output;

/// A pulling expert was let go (its customer vanished): say so, and pull the next case on
/// the same connection (`pull --wait` waits for one; `pull` ends if nobody waits).
pub(super) async fn take_next(
    client: &mut Client,
    plan: &mut Plan,
    out: &Output,
    code: SessionCode,
    reason: &str,
) -> Result<(), Step> {
    if plan.attach.side() == Side::Customer {
        return Ok(());
    }
    let wait = plan.pull_waits;
    out.status(
        "released",
        format!("{reason}; taking the next case"),
        json!({"code": code, "reason": reason}),
    );
    plan.attach = Attach::Pull { wait };
    let redirects = client.redirects();
    match client.request(Request::Pull { wait }).await {
        Ok(reply) => {
            adopt(plan, out, &reply);
            match client.redirects() == redirects {
                true => Ok(()),
                false => Err(Step::Moved),
            }
        }
        // Nobody else waits: this pull is over, once what is still arriving has arrived.
        Err(ClientError::Refused(refusal))
            if refusal.kind == sosq::protocol::ErrorKind::QueueEmpty =>
        {
            out.status(
                "queue_empty",
                format!("{refusal}; nothing more to pull"),
                json!({"reason": refusal.message}),
            );
            Err(Step::Done)
        }
        Err(ClientError::Refused(refusal)) => Err(Step::Failed(ClientError::Refused(refusal))),
        Err(e) => Err(unfollowed(client, e)),
    }
}

/// Takes in what a (pulling) expert got: a case is where it comes back to from now on,
/// said in one line, as is a wait for the next customer.
fn adopt(plan: &mut Plan, out: &Output, reply: &Reply) {
    if let (Attach::Pull { .. }, Reply::Attached { case, .. }) = (&plan.attach, reply) {
        plan.attach = Attach::Case {
            code: case.code,
            working_queue: true,
        };
    }
    crate::cli::start::report_attached(out, reply);
    if let Reply::Waiting = reply {
        out.status(
            "waiting",
            "nobody is waiting; you get the next customer who asks for help",
            json!({}),
        );
    }
}

/// A reply that answers no request (see [`Client::late_reply`]): a cluster node moving
/// this party to the case's home node, after it said `Waiting` or attached it. Followed;
/// the home node's answer is taken in as the first request's would have been.
pub(super) async fn follow_late(
    client: &mut Client,
    plan: &mut Plan,
    out: &Output,
    reply: Result<Reply, ClientError>,
) -> Step {
    let redirect = match reply {
        Ok(Reply::Redirect(redirect)) => redirect,
        Ok(other) => {
            return Step::Failed(ClientError::Unexpected(format!(
                "a reply to no request: {other:?}"
            )))
        }
        Err(e @ ClientError::Refused(_)) => return Step::Failed(e),
        // The control stream ended: the connection is going, as when the events end.
        Err(_) => return lost(client),
    };
    match client.follow(redirect).await {
        Ok(reply) => {
            adopt(plan, out, &reply);
            Step::Moved
        }
        Err(e) => unfollowed(client, e),
    }
}

/// What a request that failed means for the session: a lost connection is reconnected; a
/// redirect that could not be followed (the old connection is still up) starts again from
/// the servers given.
fn unfollowed(client: &Client, error: ClientError) -> Step {
    match client.connection().close_reason() {
        Some(reason) => Step::Lost(reason),
        None => Step::Detour(error),
    }
}
