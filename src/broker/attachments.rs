//! Customers' attachments: a waiting customer attaches a file (a screenshot of the error)
//! to its open case, for staff to read.
//!
//! The core decides whether a file may be attached and what it is: the case is open and
//! the customer's own, the case holds fewer than `max_attachments_per_case`, the file is
//! not empty nor larger than `max_attachment_bytes`, and its first bytes say it is one of
//! the accepted types ([`sniff_type`]; a name or a client's word would be a guess, and a
//! file staff open must be what it says). Its name is cleaned ([`clean_name`]) so no
//! folder, control character or direction override ever reaches a page or a disk.
//!
//! The bytes never stay in the core: [`Broker::attach`] counts the file in the case's
//! record and hands the bytes to the store in the same submission ([`Persist::Attach`]).
//! The upload itself (parts arriving over many requests) is the shell's, bounded per
//! connection and in total (`server::uploads`).

use std::fmt;
use std::sync::Arc;

use sosq::protocol::{
    thousands, AttachmentInfo, HistoryKind, Timestamp, ACCEPTED_TYPES, MAX_ATTACHMENT_NAME_CHARS,
};
use sosq::SessionCode;

use super::{Broker, BrokerError, Effect, PartyId, Persist};

/// The largest attachment unless configured: a screenshot or a log, not a disk image.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 4 * 1024 * 1024;

/// The most attachments a case holds unless configured.
pub const DEFAULT_MAX_ATTACHMENTS_PER_CASE: u32 = 5;

/// An attachment's bytes, shared, not copied, on their way to the store (an effect is
/// cloned on its way through the shell). Prints as its length: a file's bytes never go
/// into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentBytes(Arc<[u8]>);

impl AttachmentBytes {
    /// Takes `bytes` over.
    pub fn new(bytes: Vec<u8>) -> AttachmentBytes {
        AttachmentBytes(bytes.into())
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AttachmentBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttachmentBytes({} bytes)", self.0.len())
    }
}

/// An attachment as the store keeps it: what staff see of it, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// Its number, name, type, size and time.
    pub info: AttachmentInfo,
    /// The file.
    pub bytes: AttachmentBytes,
}

/// A file a customer finished uploading, for [`Broker::attach`].
#[derive(Debug, Clone)]
pub struct NewAttachment<'a> {
    /// The name the customer gave (cleaned by the core).
    pub name: &'a str,
    /// Every byte of it.
    pub bytes: AttachmentBytes,
}

impl Broker {
    /// Whether the customer on `party` (or proving ownership with `secret`) may begin
    /// attaching a file of `size` bytes named `name` to its open case `typed`: checked when
    /// an upload starts, so nobody sends megabytes to be refused at the end. Returns the
    /// case's code and the name as it will be kept. Changes nothing.
    ///
    /// Errors: a malformed or unknown code; [`BrokerError::NotYourCase`]; an empty or
    /// too large file; a case holding its most attachments already.
    pub fn may_attach(
        &self,
        party: PartyId,
        typed: &str,
        secret: Option<&str>,
        name: &str,
        size: u64,
    ) -> Result<(SessionCode, String), BrokerError> {
        let code = self.open_code(typed)?;
        self.check_customer_owns(party, code, secret)?;
        self.check_room(code)?;
        let max = self.config.max_attachment_bytes;
        if size == 0 {
            return Err(BrokerError::InvalidInput("the file is empty".into()));
        }
        if size > max {
            return Err(BrokerError::InvalidInput(format!(
                "the file is {} bytes; an attachment may have at most {} bytes",
                thousands(size),
                thousands(max)
            )));
        }
        Ok((code, clean_name(name)))
    }

    /// Attaches a whole uploaded file to the customer's open case: checks again what
    /// [`Broker::may_attach`] checked (the case may have closed or filled up meanwhile),
    /// then the file's type by its first bytes. Records it in the history ("customer
    /// attached error.png (34,567 bytes, image/png)") and pushes [`Persist::Save`] of the
    /// record then [`Persist::Attach`] of the file. Returns what staff will see of it.
    pub fn attach(
        &mut self,
        now: Timestamp,
        party: PartyId,
        typed: &str,
        secret: Option<&str>,
        file: NewAttachment<'_>,
        out: &mut Vec<Effect>,
    ) -> Result<AttachmentInfo, BrokerError> {
        let size = file.bytes.len() as u64;
        let (code, name) = self.may_attach(party, typed, secret, file.name, size)?;
        let content_type = sniff_type(file.bytes.as_slice())?;
        let case = self.case_mut(code);
        case.record.attachments += 1;
        let info = AttachmentInfo {
            id: case.record.attachments,
            name,
            content_type: content_type.to_string(),
            size,
            attached_at: now,
        };
        case.record.note(
            now,
            HistoryKind::Attachment,
            format!(
                "customer attached {} ({} bytes, {})",
                info.name,
                thousands(size),
                short_type(content_type)
            ),
        );
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        out.push(Effect::Persist(Persist::Attach {
            code,
            attachment: StoredAttachment {
                info: info.clone(),
                bytes: file.bytes,
            },
        }));
        Ok(info)
    }

    /// Refuses a case that holds its most attachments already.
    fn check_room(&self, code: SessionCode) -> Result<(), BrokerError> {
        let max = self.config.max_attachments_per_case;
        if self.cases[&code].record.attachments >= max {
            return Err(BrokerError::InvalidInput(format!(
                "case {code} has {max} attachments already, the most a case may have"
            )));
        }
        Ok(())
    }
}

/// A content type without its parameters: `text/plain`, not `text/plain; charset=utf-8`.
fn short_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or(content_type)
}

/// The plain-text type: UTF-8 is the only text accepted, and said so.
pub const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// The type of a file by its first bytes: `image/png`, `image/jpeg`, `image/gif`,
/// `image/webp`, `application/pdf`, or [`TEXT_TYPE`] for valid UTF-8 without control
/// characters other than tab, line and page breaks. Anything else is refused with what is
/// accepted.
pub fn sniff_type(bytes: &[u8]) -> Result<&'static str, BrokerError> {
    if let Some(binary) = binary_type(bytes) {
        return Ok(binary);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if plain(text) => Ok(TEXT_TYPE),
        _ => Err(refused_type()),
    }
}

/// Whether the first bytes of a file (the start of an upload) can begin an accepted file:
/// a known signature, or UTF-8 text so far (a character cut at the end of the part is
/// fine). Lets an upload of the wrong type stop at its first part.
pub fn may_begin_accepted(start: &[u8]) -> Result<(), BrokerError> {
    if binary_type(start).is_some() {
        return Ok(());
    }
    let text = match std::str::from_utf8(start) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&start[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return Err(refused_type()),
    };
    if plain(text) {
        Ok(())
    } else {
        Err(refused_type())
    }
}

fn refused_type() -> BrokerError {
    BrokerError::InvalidInput(format!(
        "this file's type is not accepted (judged by its content, not its name); attach {ACCEPTED_TYPES}"
    ))
}

/// The type a file's signature names, for the binary types accepted.
fn binary_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

/// Whether text holds no control characters but tab, line feed, carriage return and form
/// feed: what a log or a note has, and not what a binary file that happens to be UTF-8
/// has (NULs, escapes).
fn plain(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

/// A file name as kept: its last path component (folders, either slash, are dropped), no
/// control characters nor bidirectional overrides (which make `gpj.exe` read as
/// `exe.jpg`), no leading dots or spaces, at most [`MAX_ATTACHMENT_NAME_CHARS`] characters
/// keeping a short extension; `attachment` when nothing is left.
pub fn clean_name(given: &str) -> String {
    let last = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = last
        .chars()
        .filter(|&c| !c.is_control() && !is_direction_mark(c))
        .collect();
    let kept = kept.trim().trim_start_matches('.').trim_start();
    if kept.is_empty() {
        return "attachment".into();
    }
    if kept.chars().count() <= MAX_ATTACHMENT_NAME_CHARS {
        return kept.to_string();
    }
    // Cut the stem, not the extension, so the name still says what the file is.
    let (stem, extension) = match kept.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.chars().count() <= 10 => (stem, ext),
        _ => (kept, ""),
    };
    let room = if extension.is_empty() {
        MAX_ATTACHMENT_NAME_CHARS
    } else {
        MAX_ATTACHMENT_NAME_CHARS - extension.chars().count() - 1
    };
    let stem: String = stem.chars().take(room).collect();
    if extension.is_empty() {
        stem
    } else {
        format!("{stem}.{extension}")
    }
}

/// Unicode's invisible direction marks, embeddings, overrides and isolates.
fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
