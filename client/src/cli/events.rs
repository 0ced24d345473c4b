//! What a session tells its user about the daemon's events: one line each on stderr (a
//! JSON line naming the case's `code` with `--json`; see docs/json.md).

use std::net::SocketAddr;

use serde_json::json;
use sosq::protocol::Event;
use sosq::SessionCode;

use super::output::Output;

/// `paired`: both partners are connected.
pub fn report_paired(
    out: &Output,
    code: SessionCode,
    peer_role: sosq::protocol::Role,
    peer_name: &str,
    share: Option<SocketAddr>,
) {
    let mut human = format!("connected to {peer_role} {peer_name} (case {code})");
    if let Some(share) = share {
        human.push_str(&format!(
            "; they can reach {share}, the one service you share; press Ctrl-C to end the session"
        ));
    }
    out.status(
        "paired",
        human,
        json!({"code": code, "peer_role": peer_role.to_string(), "peer_name": peer_name, "share": share}),
    );
}

/// `redirected`: the one line for each cluster redirect the client follows, said before it
/// connects to the home node (so a slow or failed connection there is explained).
pub fn redirect_notice(out: Output) -> sosq::client::RedirectNotice {
    sosq::client::RedirectNotice::new(move |hop| {
        out.status(
            "redirected",
            hop.to_string(),
            json!({"code": hop.code, "node": hop.node, "address": hop.address}),
        );
    })
}

/// `session_ended`: the case was closed, expired or deleted.
pub fn report_ended(out: &Output, code: SessionCode, reason: &str) {
    out.status(
        "session_ended",
        reason,
        json!({"code": code, "reason": reason}),
    );
}

/// Reports an event that does not change what the session does.
pub fn report(out: &Output, event: Event) {
    match event {
        Event::PeerLeft { code, reason } => out.status(
            "peer_left",
            reason.clone(),
            json!({"code": code, "reason": reason}),
        ),
        Event::QueuePosition { code, position } => out.status(
            "queue_position",
            format!("you are number {position} in the queue"),
            json!({"code": code, "position": position}),
        ),
        Event::SessionEnded { code, reason } => report_ended(out, code, &reason),
        // Already in the native client: say what is asked; sharing is `--share`.
        Event::NativeInvite {
            code,
            expert,
            share,
        } => out.status(
            "native_invite",
            format!(
                "expert {expert} asks you to share {share}: leave (Ctrl-C) and run sosq join {code} --secret YOUR_SECRET --share {share}"
            ),
            json!({"code": code, "expert": expert, "share": share}),
        ),
        Event::Released { .. } | Event::Paired { .. } | Event::QueueChanged(_) => {}
    }
}
