//! The way from a browser to the native client, when the expert needs the customer's screen
//! or a local service (`sosq invite-native CODE`, or the case page's button): the customer's
//! page is told ([`ToBrowser::Invite`](super::chat::ToBrowser::Invite)) and shows the support
//! profile to download (`/help/support.sosq`, `/help/<profile>/support.sosq`) and the exact
//! `sosq join` command for its system, prefilled with its code, name and secret
//! ([`commands`]). The native client joins the same case with the secret; the broker hands
//! it the customer's seat, and the page lets go ([`super::chat::ToBrowser::Elsewhere`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::layout::PageError;
use super::WebState;

/// The file name the page downloads the profile as, which [`commands`] expect in the
/// customer's Downloads folder.
pub const PROFILE_FILE: &str = "support.sosq";

/// One system's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InviteCommand {
    /// `windows` or `unix` (Linux and macOS); the page shows the one of its system first.
    pub system: &'static str,
    /// The command, to copy into a terminal (PowerShell on Windows) as it is.
    pub command: String,
}

/// The `sosq join` command for each system, joining `code` as `name` with the case's
/// `secret` and sharing `share`, with the profile from the customer's Downloads folder.
/// Every value is quoted for its shell, so a name like `O'Brien; rm -rf ~` stays a name.
/// The secret goes in `SOSQ_SECRET`, not on the command line: any user of the machine
/// may read a process's arguments, only its owner its environment.
pub fn commands(code: &str, name: &str, secret: &str, share: &str) -> Vec<InviteCommand> {
    let unix = format!(
        "SOSQ_SECRET={} sosq join {code} --name {} --profile ~/Downloads/{PROFILE_FILE} --share {}",
        posix_quote(secret),
        posix_quote(name),
        posix_quote(share)
    );
    let windows = format!(
        "$env:SOSQ_SECRET = {}; sosq join {code} --name {} --profile \"$HOME\\Downloads\\{PROFILE_FILE}\" --share {}",
        powershell_quote(secret),
        powershell_quote(name),
        powershell_quote(share)
    );
    vec![
        InviteCommand {
            system: "unix",
            command: unix,
        },
        InviteCommand {
            system: "windows",
            command: windows,
        },
    ]
}

/// `text` as one word for a POSIX shell: in single quotes, each `'` written `'\''`.
fn posix_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@/+".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` as one word for PowerShell: in single quotes (nothing expands), each `'` doubled
/// (PowerShell also ends a single-quoted string at the typographic quotes, so they are
/// doubled too).
fn powershell_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// `GET /help/support.sosq`: the support profile file for the general queue.
pub async fn general_profile(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    profile_file(&state, &uri, &headers, None, None)
}

/// `GET /help/{profile}/support.sosq`: a support profile's file (its team and welcome).
pub async fn named_profile(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let profile = match state.shared.help_profile(&name) {
        Ok(Some(profile)) => profile,
        Ok(None) => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                format!("there is no support page {name:?}; check the link you were given"),
            ))
        }
        Err(text) => return Err(PageError::new(StatusCode::SERVICE_UNAVAILABLE, text)),
    };
    profile_file(&state, &uri, &headers, Some(profile.team), profile.welcome)
}

/// The profile file (JSON, as `sosq --profile` reads it), as a download. Nothing in it is
/// secret: where the broker is and its certificate's fingerprint, which anyone who reaches
/// the page could learn by connecting.
fn profile_file(
    state: &WebState,
    uri: &Uri,
    headers: &HeaderMap,
    group: Option<String>,
    welcome: Option<String>,
) -> Result<Response, PageError> {
    // HTTP/2 names the host in the request's authority, HTTP/1.1 in its Host header.
    let host = uri
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    let server = server_address(
        &state.shared.config().advertise,
        host,
        state.shared.quic_port(),
    )
    .ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "this request did not say which host it was for",
        )
    })?;
    let profile = sosq::profile::SupportProfile {
        server,
        fingerprint: state.shared.fingerprint(),
        group,
        welcome,
    };
    let text = serde_json::to_string_pretty(&profile)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        + "\n";
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{PROFILE_FILE}\""),
            ),
        ],
        text,
    )
        .into_response())
}

/// Where a customer's native client reaches the broker: `advertise` when the admin set it
/// (the daemon behind a proxy or NAT), else the host the customer's browser reached this
/// page at, with the QUIC port. `None`: no usable host.
fn server_address(advertise: &str, host: Option<&str>, quic_port: u16) -> Option<String> {
    if !advertise.trim().is_empty() {
        return Some(advertise.trim().to_string());
    }
    let authority: axum::http::uri::Authority = host?.parse().ok()?;
    Some(format!("{}:{quic_port}", authority.host()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_is_one_word_for_its_shell() {
        let commands = commands(
            "s204-771-630",
            "Ann O'Brien; rm -rf ~",
            "k3y",
            "127.0.0.1:5900",
        );
        assert_eq!(
            commands[0].command,
            "SOSQ_SECRET=k3y sosq join s204-771-630 --name 'Ann O'\\''Brien; rm -rf ~' --profile ~/Downloads/support.sosq --share 127.0.0.1:5900"
        );
        assert_eq!(
            commands[1].command,
            "$env:SOSQ_SECRET = 'k3y'; sosq join s204-771-630 --name 'Ann O''Brien; rm -rf ~' --profile \"$HOME\\Downloads\\support.sosq\" --share '127.0.0.1:5900'"
        );
        assert_eq!(
            powershell_quote("it\u{2019}s $x"),
            "'it\u{2019}\u{2019}s $x'"
        );
        assert_eq!(posix_quote(""), "''");
        assert_eq!(posix_quote("$(id)"), "'$(id)'");
    }

    #[test]
    fn the_server_is_the_advertised_address_or_the_pages_host() {
        assert_eq!(
            server_address("support.example:4433", Some("x:1"), 9).as_deref(),
            Some("support.example:4433")
        );
        assert_eq!(
            server_address("", Some("support.example:8443"), 4433).as_deref(),
            Some("support.example:4433")
        );
        assert_eq!(
            server_address("", Some("[::1]:8443"), 4433).as_deref(),
            Some("[::1]:4433")
        );
        assert_eq!(server_address("", None, 4433), None);
        assert_eq!(server_address("", Some("bad host"), 4433), None);
    }
}
