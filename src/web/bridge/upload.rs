//! A browser customer's file, on its way from the page to the case: the page sends it in
//! base64 parts over the socket ([`FromBrowser::AttachStart`], `AttachPart`s,
//! `AttachFinish`), and the party sends each on as the native client's requests
//! (`AttachStart`, `AttachPart`, `AttachFinish`), so a file from a browser meets the same
//! checks (open case, count, size, type from its bytes) as one from `sosq attach`.
//!
//! The page keeps at most [`PARTS_IN_FLIGHT`] parts unanswered: each part's
//! [`ToBrowser::Upload`] is its answer, so a large file never piles up in the party.

use base64::Engine;
use sosq::protocol::{thousands, Reply, Request, MAX_PART_BYTES};
use sosq::{Client, SessionCode};

use crate::web::chat::{FromBrowser, ToBrowser};

/// The most bytes one part from a page carries, before base64: its base64 (32 KiB) and
/// JSON fit a socket message ([`crate::web::socket::MAX_MESSAGE_BYTES`]), and a part of
/// the wire's ([`MAX_PART_BYTES`]) takes it whole.
pub const PAGE_PART_BYTES: usize = 24 * 1024;

/// Parts a page sends before it waits for an answer (the page's own rule, said here so
/// the socket's bound can be checked against it).
pub const PARTS_IN_FLIGHT: usize = 4;

const _: () = assert!(PAGE_PART_BYTES <= MAX_PART_BYTES);

/// The upload a page has under way, if any.
#[derive(Default)]
pub(super) struct PageUpload {
    /// The daemon's number for it, its name and size; none: no upload, or it failed (the
    /// page was told once, and the parts still coming are dropped).
    current: Option<(u64, String, u64)>,
}

impl PageUpload {
    /// Carries one of the page's upload messages to the daemon; what to tell the page.
    pub(super) async fn step(
        &mut self,
        client: &mut Client,
        code: SessionCode,
        asked: FromBrowser,
    ) -> Option<ToBrowser> {
        match asked {
            FromBrowser::AttachStart { name, size } => {
                self.current = None;
                let started = client
                    .request(Request::AttachStart {
                        code: code.to_string(),
                        resume_secret: None,
                        name: name.clone(),
                        size,
                    })
                    .await;
                match started {
                    Ok(Reply::UploadStarted { upload }) => {
                        self.current = Some((upload, name.clone(), size));
                        Some(ToBrowser::Upload {
                            name,
                            received: 0,
                            size,
                        })
                    }
                    other => Some(failed(other)),
                }
            }
            FromBrowser::AttachPart { data } => {
                let (upload, name, size) = self.current.clone()?;
                let bytes = match base64::engine::general_purpose::STANDARD.decode(data) {
                    Ok(bytes) if bytes.len() <= PAGE_PART_BYTES => bytes,
                    _ => {
                        self.current = None;
                        return Some(ToBrowser::UploadFailed {
                            text: "a part of the file was garbled on the way; attach it again"
                                .into(),
                        });
                    }
                };
                let received = client.request(Request::AttachPart { upload, bytes }).await;
                match received {
                    Ok(Reply::UploadReceived { received, .. }) => Some(ToBrowser::Upload {
                        name,
                        received,
                        size,
                    }),
                    other => {
                        self.current = None;
                        Some(failed(other))
                    }
                }
            }
            FromBrowser::AttachFinish => {
                let (upload, _, _) = self.current.take()?;
                match client.request(Request::AttachFinish { upload }).await {
                    Ok(Reply::AttachmentAdded(info)) => Some(ToBrowser::Uploaded {
                        text: format!(
                            "You attached {} ({} bytes); the expert can open it.",
                            info.name,
                            thousands(info.size)
                        ),
                    }),
                    other => Some(failed(other)),
                }
            }
            FromBrowser::Say { .. } | FromBrowser::End => None,
        }
    }
}

/// What the page is told of a refused or failed upload step.
fn failed(result: Result<Reply, sosq::ClientError>) -> ToBrowser {
    let text = match result {
        Err(sosq::ClientError::Refused(refusal)) => refusal.message,
        Err(other) => format!("the file could not be sent: {other}"),
        Ok(reply) => {
            tracing::warn!(?reply, "an upload step got an unexpected reply");
            "the support service gave an unexpected answer; attach the file again".into()
        }
    };
    ToBrowser::UploadFailed { text }
}
