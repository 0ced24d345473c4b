//! The wire protocol every sosq client speaks: the messages on the control stream.
//!
//! One QUIC connection is one party. The client opens the first bidirectional stream (the
//! control stream), sends [`ClientMessage::Hello`], and then one [`Request`] at a time; the
//! server answers each with exactly one [`Reply`] and may push [`Event`]s at any moment.
//! Frames are encoded by [`crate::codec`]. After pairing, every further stream is relayed to
//! the other party and starts with a [`StreamKind`] byte so the receiver knows its purpose.

mod attachment;
mod case;
mod history;
mod paging;

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::code::SessionCode;

pub use attachment::*;
pub use case::*;
pub use history::*;
pub use paging::*;

/// Version of this protocol; the server refuses a `Hello` with any other.
/// 2: lists are paged, cases carry no history, liveness settings in the welcome.
/// 3: a delete by codes names the codes it did not find; a queue entry's position is its
/// place in its own queue, and the queue cursor carries no position.
/// 4: history entries carry their kind and a structured actor.
/// 5: the welcome carries the daemon's protocol version too (the hello carries it both
/// ways), so either side can say which one to upgrade.
/// 7: staff notes (`Request::Note`, history entries of kind `note`); a case filter also
/// selects by team, priority, creation and closing time ranges and text, and `Cases` takes
/// a whole filter instead of a state.
/// 8: customers' messages and attachments (`AddMessage`, `AttachStart`/`AttachPart`/
/// `AttachFinish`; staff read them with `Attachments` and `Attachment`); cases and queue
/// entries carry the latest message and the number of attachments.
/// 9: the expert in a session asks its customer to run the native client
/// (`InviteNative`, pushed to the customer as [`Event::NativeInvite`]).
pub const PROTOCOL_VERSION: u16 = 9;

/// The service a [`Request::InviteNative`] names, checked: `host:port` with an IP host, as
/// `sosq join --share` takes it (so the command the customer is shown will run), trimmed.
///
/// Errors: in words, for the expert, when `share` is not such an address.
pub fn check_share(share: &str) -> Result<&str, String> {
    let share = share.trim();
    match share.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(share),
        Err(_) => Err(format!(
            "{share:?} is not an address to share; give host:port on the customer's machine, e.g. 127.0.0.1:5900 for its screen"
        )),
    }
}

/// What to tell a user whose client and daemon speak different protocol versions: which
/// side is older and so needs upgrading. Both the daemon's refusal and the client's check
/// of the welcome use it, so the advice reads the same from either side.
pub fn upgrade_advice(daemon: u16, client: u16) -> String {
    let older = if daemon < client {
        "sosqd is older: upgrade sosqd (or use a sosq of the same release as the daemon)"
    } else {
        "this sosq is older: upgrade sosq"
    };
    format!("sosqd speaks sosq protocol {daemon} and this sosq speaks {client}; {older}")
}

/// ALPN identifier negotiated during the TLS handshake.
pub const ALPN: &[u8] = b"sosq/1";

/// Every message a client sends on its control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message: protocol version and, for staff, the access token.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u16,
        /// An expert's or admin's token; none makes the connection a customer.
        token: Option<String>,
    },
    /// Any later message.
    Request(Request),
}

/// What a party asks the broker to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Customer: open an SOS case and wait in the queue.
    OpenSos {
        /// The customer's name.
        customer: String,
        /// What the customer needs help with.
        description: String,
        /// How badly business is hurt.
        priority: Priority,
        /// The team queue to wait in (from a support profile); none means `general`.
        group: Option<String>,
    },
    /// Customer: attach to a case by its code (an expert-created case, or one's own with
    /// the resume secret).
    Join {
        /// The code as typed; dashes and case do not matter.
        code: String,
        /// The customer's name.
        customer: String,
        /// The secret handed out when this customer first attached, to come back.
        resume_secret: Option<String>,
    },
    /// Expert or admin: one page of the waiting cases, next first.
    Queue {
        /// Start after this place (from the previous page's `next`); none: from the front.
        after: Option<QueueCursor>,
        /// Most entries wanted (0: the default; see [`page_items`]).
        limit: u32,
    },
    /// Expert or admin: the first page of the waiting cases now (as `Queue`), then an
    /// [`Event::QueueChanged`] with the first page again whenever the queue changes, until
    /// the connection closes.
    WatchQueue {
        /// Most entries per update (0: the default).
        limit: u32,
    },
    /// Expert: take the oldest waiting case; with `wait`, wait for one if the queue is empty.
    Pull {
        /// Wait for a case instead of failing on an empty queue.
        wait: bool,
    },
    /// Expert: attach to a case by its code. The same expert connecting again takes over
    /// from its old connection at once.
    Connect {
        /// The code as typed.
        code: String,
        /// The expert works the queue (a `pull` coming back after a lost connection): if
        /// the customer vanishes, let the expert go for the next case, as after a pull.
        working_queue: bool,
    },
    /// Expert: create a case for a customer who will join by code.
    Create {
        /// The customer's name.
        customer: String,
        /// What the customer needs help with.
        description: String,
    },
    /// Expert, or the case's own customer: close a case.
    Close {
        /// The code as typed.
        code: String,
        /// For a customer on another connection: the resume secret of the case.
        resume_secret: Option<String>,
    },
    /// The case's own customer (or an expert/admin): show one case.
    Status {
        /// The code as typed.
        code: String,
        /// For a customer on another connection: the resume secret of the case.
        resume_secret: Option<String>,
    },
    /// Expert or admin: change a case's priority, with the reason (kept in the history).
    Escalate {
        /// The code as typed.
        code: String,
        /// The new priority.
        priority: Priority,
        /// Why, in words.
        reason: String,
    },
    /// Expert or admin: route a case to one expert (offered only to them) or to a team.
    Assign {
        /// The code as typed.
        code: String,
        /// Where to.
        to: Assignee,
    },
    /// Expert in a session: hand the case to another expert or team; the customer stays
    /// connected and is told who takes over.
    Transfer {
        /// The code as typed.
        code: String,
        /// To whom.
        to: Assignee,
    },
    /// Admin: one page of the stored cases matching a filter, oldest first.
    Cases {
        /// Which cases (every given field must match; empty: every case).
        filter: CaseFilter,
        /// Start after this case (from the previous page's `next`); none: from the oldest.
        after: Option<CasesCursor>,
        /// Most cases wanted (0: the default; see [`page_items`]).
        limit: u32,
    },
    /// Admin: delete cases in bulk; active sessions among them end.
    Delete(DeleteSelector),
    /// Expert or admin: one page of the history of one case, open or not.
    History {
        /// The code as typed.
        code: String,
        /// Index of the first entry wanted (0: the oldest).
        from: u32,
        /// Most entries wanted (0: the default; see [`page_items`]).
        limit: u32,
    },
    /// Expert or admin: add a staff note to a case's history, open or not. Notes are
    /// staff-internal: a customer never sees them. Answered with [`Reply::Case`].
    Note {
        /// The code as typed.
        code: String,
        /// The note, in words (at most 2,000 characters, as a description).
        text: String,
    },
    /// The case's own customer (on its connection, or with the resume secret): add a
    /// message to the open case ("it also beeps"), kept in its history and shown to staff
    /// as the case's latest message. Answered with [`Reply::Case`].
    AddMessage {
        /// The code as typed.
        code: String,
        /// For a customer on another connection: the resume secret of the case.
        resume_secret: Option<String>,
        /// The message (at most 2,000 characters, as a description).
        text: String,
    },
    /// The case's own customer: begin attaching a file of `size` bytes to the open case.
    /// Answered with [`Reply::UploadStarted`]; the bytes follow in [`Request::AttachPart`]s
    /// and [`Request::AttachFinish`] ends it. A connection has one upload at a time: a new
    /// start drops an unfinished one, and a connection's end drops it too. The daemon
    /// decides the file's type from its first bytes, never from its name.
    AttachStart {
        /// The code as typed.
        code: String,
        /// For a customer on another connection: the resume secret of the case.
        resume_secret: Option<String>,
        /// The file's name (folders are dropped, the rest cleaned).
        name: String,
        /// The file's size in bytes, exactly.
        size: u64,
    },
    /// The next bytes of the upload begun on this connection, in order. Answered with
    /// [`Reply::UploadReceived`].
    AttachPart {
        /// The upload's number from [`Reply::UploadStarted`].
        upload: u64,
        /// At most [`MAX_PART_BYTES`] bytes.
        #[serde(with = "attachment::part_bytes")]
        bytes: Vec<u8>,
    },
    /// Every byte of the upload was sent: check and keep it. Answered with
    /// [`Reply::AttachmentAdded`].
    AttachFinish {
        /// The upload's number from [`Reply::UploadStarted`].
        upload: u64,
    },
    /// Expert or admin: the attachments of a case, open or not. Answered with
    /// [`Reply::Attachments`].
    Attachments {
        /// The code as typed.
        code: String,
    },
    /// Expert or admin: part of one attachment's bytes, from `offset`. Answered with
    /// [`Reply::AttachmentPart`].
    Attachment {
        /// The code as typed.
        code: String,
        /// The attachment's number in its case.
        id: u32,
        /// The first byte wanted.
        offset: u64,
    },
    /// The expert in a session on the case: ask its customer (a browser customer, most
    /// often) to run the native client and share the local service at `share`. The
    /// customer is sent [`Event::NativeInvite`]. Answered with [`Reply::Case`].
    InviteNative {
        /// The code as typed.
        code: String,
        /// The local service the customer is asked to share, `host:port` on the customer's
        /// machine (`127.0.0.1:5900` for its screen over VNC).
        share: String,
    },
    /// The request a [`Reply::Redirect`] sent here, with its ticket: a cluster node
    /// answers `request` as if it had come first, holding what the redirecting node
    /// claimed for this caller (a pulled case). Only what a redirect named is accepted.
    Redeem {
        /// The ticket the redirect carried.
        ticket: String,
        /// The redirect's request.
        request: Box<Request>,
    },
}

/// The server's answer to one `Hello` or `Request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// `Hello` accepted.
    Welcome {
        /// The role the connection has from now on.
        role: Role,
        /// The user's name for staff; empty for customers.
        name: String,
        /// The daemon's version string.
        server: String,
        /// How often the daemon pings a quiet connection, in milliseconds.
        keep_alive_ms: u64,
        /// After how many milliseconds without a word a connection is dropped (both
        /// sides): how soon a vanished party is noticed.
        idle_timeout_ms: u64,
        /// The protocol version the daemon speaks ([`PROTOCOL_VERSION`] of its build).
        protocol: u16,
    },
    /// The case this party is now attached to, with the customer's resume secret (customers
    /// only, shown once) and its queue position (SOS cases only).
    Attached {
        /// The case.
        case: CaseInfo,
        /// Secret to resume the case after a disconnect; never sent to experts.
        resume_secret: Option<String>,
        /// Position in the queue, 1 = next.
        position: Option<u32>,
    },
    /// `Pull { wait: true }` found the queue empty: the expert is waiting, and an
    /// [`Event::Paired`] follows when a customer arrives.
    Waiting,
    /// A case was created by an expert (nobody is attached yet).
    Created(CaseInfo),
    /// A page of the waiting cases, next first.
    Queue(QueuePage),
    /// One case.
    Case(CaseInfo),
    /// A page of the cases matching the admin's filter.
    Cases(CasesPage),
    /// A page of the history of one case, oldest entry first.
    History(HistoryPage),
    /// How many cases the bulk delete removed.
    Deleted {
        /// Number of cases removed.
        count: u64,
        /// For a delete by codes: the codes named that no stored case had (a typo, or a
        /// case already deleted), in the order given, each once; at most
        /// [`MAX_CODES_PER_DELETE`]. Empty for a delete by filter.
        not_found: Vec<SessionCode>,
    },
    /// An upload began ([`Request::AttachStart`]): send its bytes under this number.
    UploadStarted {
        /// The upload's number, for its parts and its finish.
        upload: u64,
    },
    /// A part of an upload was taken.
    UploadReceived {
        /// The upload.
        upload: u64,
        /// Bytes received so far.
        received: u64,
    },
    /// The upload is kept: the case's new attachment.
    AttachmentAdded(AttachmentInfo),
    /// A case's attachments.
    Attachments(AttachmentList),
    /// Part of an attachment's bytes.
    AttachmentPart(AttachmentPart),
    /// In a cluster: the case lives on another node. Connect to `address` (the same
    /// certificate pin or CA) and send `Request::Redeem { ticket, request }` there.
    Redirect(Redirect),
    /// The request was refused; nothing changed.
    Error(ErrorReply),
}

/// Something the server tells a party without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Both partners are connected: session streams can flow.
    Paired {
        /// The case.
        code: SessionCode,
        /// The other party's role.
        peer_role: Role,
        /// The other party's name.
        peer_name: String,
    },
    /// The other party's connection dropped; the case is pending until it comes back.
    PeerLeft {
        /// The case.
        code: SessionCode,
        /// Why, in words.
        reason: String,
    },
    /// An expert who pulled this case is let go: its customer vanished (the case keeps its
    /// place in the queue, offline, until the customer comes back), and the expert may
    /// `pull` the next case on the same connection.
    Released {
        /// The case.
        code: SessionCode,
        /// Why, in words.
        reason: String,
    },
    /// The session is over for this party (case closed, expired or deleted); the server
    /// closes the connection after this.
    SessionEnded {
        /// The case.
        code: SessionCode,
        /// Why, in words.
        reason: String,
    },
    /// For `WatchQueue`: the first page of the queue after a change, next first.
    QueueChanged(QueuePage),
    /// A waiting customer's place in the queue changed.
    QueuePosition {
        /// The case.
        code: SessionCode,
        /// 1 = next.
        position: u32,
    },
    /// To the case's customer: the expert asks it to run the native client
    /// (`sosq join CODE --secret ... --share SHARE`) on the same case
    /// ([`Request::InviteNative`]).
    NativeInvite {
        /// The case.
        code: SessionCode,
        /// The expert who asks.
        expert: String,
        /// The local service to share, `host:port` on the customer's machine.
        share: String,
    },
}

/// Everything the server sends on the control stream.
// Messages live only between a read and a match; boxing the big replies would only make
// every pattern on them clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to the oldest unanswered client message.
    Reply(Reply),
    /// A push notification.
    Event(Event),
}

/// Where a cluster node sends a client whose case lives on another node (its home node,
/// which holds the customer's connection and relays the session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// The home node's name, for the one line a client prints.
    pub node: String,
    /// Where to connect: `host:port`.
    pub address: String,
    /// A one-time ticket, valid for a few seconds, to send back in [`Request::Redeem`].
    pub ticket: String,
    /// What to ask there.
    pub request: Box<Request>,
}

/// A refusal: a category for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The category.
    pub kind: ErrorKind,
    /// One line for the user.
    pub message: String,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Categories of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The frame could not be read (too long, not a message, out of order).
    BadFrame,
    /// The client speaks another protocol version.
    UnsupportedVersion,
    /// The token is unknown or revoked.
    Unauthenticated,
    /// The role may not do this, or the case is not the customer's own.
    Forbidden,
    /// No open case has this code (or the code is malformed).
    UnknownCode,
    /// The case's state does not allow this.
    IllegalTransition,
    /// Nobody is waiting in the queue.
    QueueEmpty,
    /// The party is already attached to a case, or the slot is taken.
    Conflict,
    /// A field is empty or too long.
    InvalidInput,
    /// Too many wrong session codes from this address (or in total); wait and retry.
    Throttled,
    /// The server failed; the request may be retried.
    Internal,
}

impl ErrorKind {
    /// The stable machine code `sosq --json` prints for this refusal (`"code"` of its
    /// error line): a script's contract, never renamed.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadFrame => "bad_request",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "not_allowed",
            ErrorKind::UnknownCode => "unknown_code",
            ErrorKind::IllegalTransition => "wrong_state",
            ErrorKind::QueueEmpty => "queue_empty",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Internal => "server_error",
        }
    }
}

/// The first byte of every relayed stream, written by the party that opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// The stdin/stdout conversation of `sosq`.
    Chat = 1,
    /// One forwarded TCP connection: opened by the expert (a connection to its `--forward`
    /// port), accepted by the customer, who connects it to its `--share` address only.
    Forward = 2,
}

impl StreamKind {
    /// Reads the kind back from its byte.
    pub fn from_byte(b: u8) -> Option<StreamKind> {
        match b {
            1 => Some(StreamKind::Chat),
            2 => Some(StreamKind::Forward),
            _ => None,
        }
    }
}

/// QUIC application close codes used by the daemon.
pub mod close_code {
    /// Normal end (case closed, session over).
    pub const DONE: u32 = 0;
    /// The peer sent something that is not the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// Authentication failed.
    pub const UNAUTHENTICATED: u32 = 2;
    /// The case expired.
    pub const EXPIRED: u32 = 3;
    /// The case was deleted by an admin.
    pub const DELETED: u32 = 4;
    /// The daemon is shutting down.
    pub const SHUTDOWN: u32 = 5;
    /// A relayed stream was refused because the connection is not paired.
    pub const NOT_PAIRED: u32 = 6;
    /// A relayed stream ended because the session ended.
    pub const SESSION_ENDED: u32 = 7;
    /// A relayed stream was refused: the session already has its most streams open.
    pub const TOO_MANY_STREAMS: u32 = 8;
    /// A relayed stream carried nothing either way for the relay idle timeout.
    pub const STREAM_IDLE: u32 = 9;
    /// A forward stream was refused: the customer shares no TCP service.
    pub const NOTHING_SHARED: u32 = 10;
    /// A forwarded TCP connection failed (could not connect, or was reset).
    pub const FORWARD_FAILED: u32 = 11;
    /// A newer connection took over this one's seat (a customer resumed with its secret, or
    /// the same expert connected again): the old connection must not reconnect.
    pub const REPLACED: u32 = 12;
}
