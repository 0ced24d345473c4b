//! Customers' attachments in the console: the list on a case's page and the download
//! (`GET /cases/{code}/attachments/{id}`), for signed-in staff only.
//!
//! A download is always a download, never shown in the page's origin: it is sent as
//! `application/octet-stream` with `Content-Disposition: attachment` (the name encoded by
//! RFC 6266 and 5987) and `nosniff`, so a customer's file (an SVG, an HTML page passed off
//! as text) can never run as the console. Its parts are read through [`WebState::run`],
//! the wire's request path: the role matrix refuses anyone but staff there too.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use sosq::protocol::{thousands, AttachmentList, Reply, Request};

use super::auth::Staff;
use super::layout::{clock_time, PageError};
use super::WebState;

/// The attachments section of a case's page.
pub fn section(list: &AttachmentList) -> Markup {
    html! {
        section.attachments {
            h2 { "Attachments (" (list.attachments.len()) ")" }
            ul #attachments {
                @for a in &list.attachments {
                    li {
                        a href={ "/cases/" (list.code) "/attachments/" (a.id) } download { (a.name) }
                        " (" (thousands(a.size)) " bytes, " (a.content_type) ", " (clock_time(a.attached_at)) ")"
                    }
                }
            }
        }
    }
}

/// `GET /cases/{code}/attachments/{id}`: the whole file, as a download.
pub async fn download(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Path((code, id)): Path<(String, u32)>,
) -> Result<Response, PageError> {
    let list = match state
        .run(&staff.caller, Request::Attachments { code: code.clone() })
        .await
    {
        Reply::Attachments(list) => list,
        other => return Err(PageError::unexpected(&other)),
    };
    let Some(info) = list.attachments.iter().find(|a| a.id == id) else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("case {} has no attachment {id}", list.code),
        ));
    };
    let mut body = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
    loop {
        let part = Request::Attachment {
            code: code.clone(),
            id,
            offset: body.len() as u64,
        };
        let part = match state.run(&staff.caller, part).await {
            Reply::AttachmentPart(part) => part,
            other => return Err(PageError::unexpected(&other)),
        };
        if part.bytes.is_empty() || body.len() as u64 + part.bytes.len() as u64 > part.total {
            break;
        }
        body.extend_from_slice(&part.bytes);
        if body.len() as u64 == part.total {
            break;
        }
    }
    if body.len() as u64 != info.size {
        // Never a cut file that looks whole.
        return Err(PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "attachment {id} of case {} could not be read whole; try again",
                list.code
            ),
        ));
    }
    let disposition = HeaderValue::from_str(&content_disposition(&info.name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

/// `attachment; filename="..."; filename*=UTF-8''...` (RFC 6266): an ASCII stand-in for
/// old browsers (anything else, quotes and backslashes become `_`), and the name itself
/// percent-encoded as RFC 5987 says.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => encoded.push(byte as char),
            b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~' => {
                encoded.push(byte as char)
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_rfc_6266_says() {
        assert_eq!(
            content_disposition("error.png"),
            "attachment; filename=\"error.png\"; filename*=UTF-8''error.png"
        );
        assert_eq!(
            content_disposition("Fehler \"groß\".txt"),
            "attachment; filename=\"Fehler _gro__.txt\"; filename*=UTF-8''Fehler%20%22gro%C3%9F%22.txt"
        );
        assert_eq!(
            content_disposition("a;b\\c%.pdf"),
            "attachment; filename=\"a;b_c%.pdf\"; filename*=UTF-8''a%3Bb%5Cc%25.pdf"
        );
    }
}
