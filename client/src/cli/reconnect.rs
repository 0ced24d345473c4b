//! Coming back after a lost connection: a session command reconnects by itself with
//! back-off and takes its party back to its case (see [`super::session`]), unless the
//! connection was ended for good (replaced by a newer one, the case expired or deleted).

use std::time::Duration;

use serde_json::json;
use sosq::protocol::{close_code, Reply};
use sosq::{Client, ClientError, SessionCode};

use super::output::Output;
use super::session::{Attach, Outcome, Plan};
use super::signals::Signal;

/// Comes back after a lost connection (`reason`: how it was lost, in words): reconnects
/// with back-off (a quarter second, doubling up to ten), trying every server given, and
/// takes this party back to its case (following a cluster's redirect to its home node),
/// until it works, the case turns out to be gone, or `plan.reconnect_for` has passed.
/// `Ok(None)`: the user left meanwhile.
pub async fn reconnect(
    plan: &mut Plan,
    out: &Output,
    reason: &str,
    interrupted: &mut std::pin::Pin<&mut impl std::future::Future<Output = Signal>>,
) -> Result<Option<Client>, ClientError> {
    let case = plan
        .attach
        .code()
        .map(|code| format!("; case {code} stays open"))
        .unwrap_or_default();
    out.status(
        "reconnecting",
        format!(
            "lost the connection to sosqd ({reason}); reconnecting for up to {}{case}",
            humantime::format_duration(plan.reconnect_for)
        ),
        json!({"reason": reason, "code": plan.attach.code()}),
    );
    let give_up = tokio::time::Instant::now() + plan.reconnect_for;
    let mut delay = Duration::from_millis(250);
    loop {
        let notice = super::events::redirect_notice(*out);
        let attempt =
            Client::connect_with_notice(&plan.options, Some(plan.attach.request()), notice);
        let result = tokio::select! {
            result = attempt => result,
            _ = &mut *interrupted => return Ok(None),
        };
        match result {
            Ok((client, reply)) => {
                super::endpoints::remember(client.endpoint());
                let reply = reply.unwrap_or(Reply::Waiting);
                if let Reply::Attached { case, .. } = &reply {
                    if let Attach::Pull { .. } = plan.attach {
                        plan.attach = Attach::Case {
                            code: case.code,
                            working_queue: true,
                        };
                    }
                }
                let back = match plan.attach.code() {
                    Some(code) => format!("reconnected to sosqd; back in case {code}"),
                    None => "reconnected to sosqd; waiting for the next customer".to_string(),
                };
                out.status("reconnected", back, json!({"code": plan.attach.code()}));
                // A customer back in line hears its place again; one back in a session
                // needs nothing more than the line above.
                if let Reply::Attached {
                    position: Some(_), ..
                } = reply
                {
                    super::start::report_attached(out, &reply);
                }
                return Ok(Some(client));
            }
            // The daemon answered and said no: the case is gone (closed, expired or
            // deleted meanwhile), or this party may not have it; trying again would not
            // change that. (A throttle says to wait.)
            Err(ClientError::Refused(mut refusal))
                if refusal.kind != sosq::protocol::ErrorKind::Throttled
                    && refusal.kind != sosq::protocol::ErrorKind::Internal =>
            {
                if let Some(code) = plan.attach.code() {
                    // The code worked before, so "unknown" can only mean it ended since.
                    let gone = match refusal.kind {
                        sosq::protocol::ErrorKind::UnknownCode => {
                            " is no longer open (closed, expired or deleted meanwhile)"
                        }
                        _ => "",
                    };
                    refusal.message = format!(
                        "stopped reconnecting: case {code}{gone}: {}",
                        refusal.message
                    );
                }
                return Err(ClientError::Refused(refusal));
            }
            // Anything else may pass: a node still down, nodes still settling where the
            // case lives after a node's loss (too many redirects), a ticket that expired.
            Err(e) => {
                if tokio::time::Instant::now() + delay > give_up {
                    return Err(ClientError::Disconnected(format!(
                        "gave up reconnecting after {}: {e}",
                        humantime::format_duration(plan.reconnect_for)
                    )));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut *interrupted => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A lost connection that reconnecting must not undo: replaced by a newer one, or ended by
/// the daemon for good (the case expired or was deleted, the token revoked). `code`: the
/// case the connection was in.
pub fn final_close(
    error: &quinn::ConnectionError,
    code: Option<SessionCode>,
) -> Option<Result<Outcome, ClientError>> {
    let quinn::ConnectionError::ApplicationClosed(close) = error else {
        return None;
    };
    let reason = sosq::client::describe_connection_error(error);
    match u32::try_from(close.error_code.into_inner()) {
        Ok(close_code::REPLACED) => Some(Ok(Outcome::Replaced { reason, code })),
        Ok(
            close_code::EXPIRED
            | close_code::DELETED
            | close_code::UNAUTHENTICATED
            | close_code::PROTOCOL_ERROR,
        ) => Some(Err(ClientError::closed(error))),
        _ => None,
    }
}
