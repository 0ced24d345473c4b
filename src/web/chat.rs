//! What a browser and its in-process party say to each other (JSON over the WebSocket),
//! and the rules a chat line follows on the way: its length cap, the rate limit, how the
//! stream's bytes become lines, and the bounded backlog kept while the browser is away.
//!
//! The chat stream carries UTF-8 lines (`\n`-ended), the same bytes `sosq pull` reads from
//! and writes to a terminal, so an expert in a terminal and a customer in a browser (or an
//! expert in the console) talk as two terminals would.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Longest chat line a browser may send, in characters (the same cap as a case's
/// description, `broker::MAX_DESCRIPTION_CHARS`).
pub const MAX_CHAT_LINE_CHARS: usize = crate::broker::MAX_DESCRIPTION_CHARS;

/// Longest line shown from the chat stream, in bytes: a longer run without a newline is
/// shown in pieces of this size (so a peer that never sends `\n` cannot grow the buffer).
pub const MAX_SHOWN_LINE_BYTES: usize = 8 * 1024;

/// Chat lines a browser may send in a burst; they come back at [`CHAT_LINES_PER_SECOND`].
pub const CHAT_BURST: u32 = 20;

/// Chat lines a browser may send per second, sustained.
pub const CHAT_LINES_PER_SECOND: u32 = 5;

/// Messages kept for a browser that is away (reloading, or its network dropped); older
/// ones are dropped and the browser is told how many when it is back.
pub const BACKLOG: usize = 500;

/// What a browser asks of its party.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromBrowser {
    /// A chat line (paired), or a message to the case while waiting.
    Say {
        /// The line, without its newline.
        text: String,
    },
    /// The customer ends the session (closes its case); staff leave the chat.
    End,
    /// The customer begins attaching a file (`bridge/upload.rs`).
    AttachStart {
        /// The file's name, as the browser gives it.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The file's next bytes, in base64 (at most `upload::PAGE_PART_BYTES` decoded).
    AttachPart {
        /// The bytes, base64 (standard alphabet, padded).
        data: String,
    },
    /// Every byte was sent: the daemon checks the file and keeps it.
    AttachFinish,
}

/// What a party tells its browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToBrowser {
    /// The party is attached to its case.
    Attached {
        /// The session code.
        code: String,
        /// The customer's resume secret (customers only; kept in the tab's session storage).
        secret: Option<String>,
        /// The customer's name.
        customer: String,
        /// What the customer needs help with.
        description: String,
        /// The team whose queue the case waits in.
        team: String,
        /// Place in the queue, 1 = next; none once an expert has it.
        position: Option<u32>,
        /// Typical wait in this team's queue, in seconds (see `/status`).
        typical_wait_seconds: Option<u64>,
    },
    /// The customer's place in the queue changed.
    Position {
        /// 1 = next.
        position: u32,
    },
    /// The two parties are connected; the chat follows.
    Paired {
        /// The other party's name (the expert for a customer, the customer for staff).
        name: String,
        /// Another expert had the case before this one in this session (a transfer).
        takes_over: bool,
    },
    /// The other party's connection dropped; the case waits for it.
    PeerLeft {
        /// Why, in words.
        reason: String,
    },
    /// One chat line.
    Line {
        /// `you` or `peer`.
        from: &'static str,
        /// Who said it.
        name: String,
        /// When the broker relayed it, milliseconds since the Unix epoch.
        at_ms: u64,
        /// The line, without its newline.
        text: String,
    },
    /// Something the person should know (in words).
    Notice {
        /// The words.
        text: String,
    },
    /// What the browser asked was refused (in words); the session goes on.
    Refused {
        /// The words.
        text: String,
    },
    /// An upload's progress: the answer to its start and to each part.
    Upload {
        /// The file's name.
        name: String,
        /// Bytes the daemon holds so far.
        received: u64,
        /// The file's size in bytes.
        size: u64,
    },
    /// The file is attached to the case (in words).
    Uploaded {
        /// The words.
        text: String,
    },
    /// The upload was refused or failed (in words); the page may attach again.
    UploadFailed {
        /// The words.
        text: String,
    },
    /// The expert asks the customer to run the native client (`web/invite.rs`).
    Invite {
        /// The expert who asks.
        expert: String,
        /// The service to share, `host:port` on the customer's machine.
        share: String,
        /// The `sosq join` command for each system, prefilled.
        commands: Vec<crate::web::invite::InviteCommand>,
    },
    /// The case's customer seat was taken by another connection with the case's secret
    /// (the native client the expert asked for, or this page open in another tab); this
    /// page lets go and nothing more comes (it may take the seat back by resuming).
    Elsewhere {
        /// Why, in words.
        text: String,
    },
    /// The case is over (closed, expired or deleted); nothing more comes.
    Ended {
        /// Why, in words.
        reason: String,
    },
    /// The party could not start, or was lost; nothing more comes.
    Failed {
        /// Why, in words.
        text: String,
        /// Whether the page should try again (the connection was lost), rather than give
        /// up (the request was refused).
        retry: bool,
    },
}

impl ToBrowser {
    /// Whether nothing follows this message.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ToBrowser::Ended { .. } | ToBrowser::Failed { .. } | ToBrowser::Elsewhere { .. }
        )
    }
}

/// Checks a line a browser wants to send. Errors: the words to show.
pub fn check_line(text: &str) -> Result<&str, String> {
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Err("an empty line is not sent".into());
    }
    if text.contains(['\n', '\r']) {
        return Err("a chat line is one line: send each line on its own".into());
    }
    let chars = text.chars().count();
    if chars > MAX_CHAT_LINE_CHARS {
        return Err(format!(
            "a chat line is at most {MAX_CHAT_LINE_CHARS} characters (this one has {chars}); send it in parts"
        ));
    }
    Ok(text)
}

/// A token bucket: [`CHAT_BURST`] lines at once, refilled at [`CHAT_LINES_PER_SECOND`].
pub struct LineRate {
    tokens: f64,
    at: Instant,
}

impl LineRate {
    /// A full bucket at `now`.
    pub fn new(now: Instant) -> LineRate {
        LineRate {
            tokens: f64::from(CHAT_BURST),
            at: now,
        }
    }

    /// Takes one line's token at `now`. Errors: the words to show.
    pub fn take(&mut self, now: Instant) -> Result<(), String> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens =
            (self.tokens + elapsed * f64::from(CHAT_LINES_PER_SECOND)).min(f64::from(CHAT_BURST));
        if self.tokens < 1.0 {
            return Err(format!(
                "you are sending faster than {CHAT_LINES_PER_SECOND} lines a second; that line was not sent, wait a moment"
            ));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

/// Cuts the chat stream's bytes into lines.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// The complete lines `bytes` finishes (without their `\n` or `\r\n`); a run longer
    /// than [`MAX_SHOWN_LINE_BYTES`] comes out in pieces. Bytes that are not UTF-8 show as
    /// U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(self.take());
            } else {
                self.pending.push(byte);
                if self.pending.len() >= MAX_SHOWN_LINE_BYTES {
                    lines.push(self.take());
                }
            }
        }
        lines
    }

    /// What is left without a newline at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        if line.ends_with('\r') {
            line.pop();
        }
        line
    }
}

/// What waits for a browser that is away, oldest first, at most [`BACKLOG`].
#[derive(Default)]
pub struct Backlog {
    kept: VecDeque<ToBrowser>,
    dropped: usize,
}

impl Backlog {
    /// Keeps `message` for later, dropping the oldest one when full.
    pub fn keep(&mut self, message: ToBrowser) {
        if self.kept.len() == BACKLOG {
            self.kept.pop_front();
            self.dropped += 1;
        }
        self.kept.push_back(message);
    }

    /// Everything kept, oldest first, preceded by a notice when some had to be dropped.
    pub fn drain(&mut self) -> Vec<ToBrowser> {
        let mut out = Vec::with_capacity(self.kept.len() + 1);
        if self.dropped > 0 {
            out.push(ToBrowser::Notice {
                text: format!(
                    "{} earlier messages were missed while this page was away (only the last {BACKLOG} are kept)",
                    self.dropped
                ),
            });
            self.dropped = 0;
        }
        out.extend(self.kept.drain(..));
        out
    }
}

/// How long a party waits for its browser to come back (a reload, a dropped network)
/// before it leaves: the daemon's idle timeout, the time a native party's vanished
/// connection takes to be noticed, so a browser and a terminal are given up on alike.
pub fn linger(idle_timeout: Duration) -> Duration {
    idle_timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_and_long_runs_in_pieces() {
        let mut split = LineSplitter::default();
        assert_eq!(split.push(b"hel"), Vec::<String>::new());
        assert_eq!(split.push(b"lo\r\nworld\n\n"), vec!["hello", "world", ""]);
        assert_eq!(split.push(&[0xff, b'\n']), vec!["\u{fffd}"]);
        let long = vec![b'x'; MAX_SHOWN_LINE_BYTES + 3];
        let pieces = split.push(&long);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].len(), MAX_SHOWN_LINE_BYTES);
        assert_eq!(split.finish().as_deref(), Some("xxx"));
        assert_eq!(split.finish(), None);
    }

    #[test]
    fn a_line_is_checked_for_length_and_emptiness() {
        assert_eq!(check_line("it beeps\n"), Ok("it beeps"));
        assert!(check_line("   ").is_err());
        assert!(check_line("a\nb").is_err());
        let long = "é".repeat(MAX_CHAT_LINE_CHARS + 1);
        let refused = check_line(&long).unwrap_err();
        assert!(refused.contains("at most 2000 characters"), "{refused}");
        assert!(check_line(&"é".repeat(MAX_CHAT_LINE_CHARS)).is_ok());
    }

    #[test]
    fn the_rate_allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut rate = LineRate::new(start);
        for _ in 0..CHAT_BURST {
            rate.take(start).unwrap();
        }
        assert!(rate.take(start).is_err(), "the burst is spent");
        let later = start + Duration::from_millis(1000 / u64::from(CHAT_LINES_PER_SECOND));
        rate.take(later).unwrap();
        assert!(rate.take(later).is_err());
    }

    #[test]
    fn the_backlog_keeps_the_latest_and_says_how_many_were_dropped() {
        let mut backlog = Backlog::default();
        for n in 0..BACKLOG + 2 {
            backlog.keep(ToBrowser::Position { position: n as u32 });
        }
        let out = backlog.drain();
        assert_eq!(out.len(), BACKLOG + 1);
        assert!(matches!(&out[0], ToBrowser::Notice { text } if text.starts_with("2 earlier")));
        assert_eq!(out[1], ToBrowser::Position { position: 2 });
        assert!(backlog.drain().is_empty());
    }
}
