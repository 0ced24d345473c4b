//! The wire protocol every sosq client speaks: the messages on the control stream.
//!
//! One QUIC connection is one party. The client opens the first bidirectional stream (the
//! control stream), sends [`ClientMessage::Hello`], and then one [`Request`] at a time; the
//! server answers each with exactly one [`Reply`] and may push [`Event`]s at any moment.
//! Frames are encoded by [`crate::codec`]. After pairing, every further stream is relayed to
//! the other party and starts with a [`StreamKind`] byte so the receiver knows its purpose.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::code::SessionCode;

/// Version of this protocol; the server refuses a `Hello` with any other.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN identifier negotiated during the TLS handshake.
pub const ALPN: &[u8] = b"sosq/1";

/// Milliseconds since the UNIX epoch, the one time format on the wire and in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp `d` later than this one (saturating).
    pub fn plus(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// How long after `earlier` this timestamp is (zero if it is not later).
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since_epoch.as_millis() as u64)
    }
}

/// Who a connection is: decided once, by the token (or its absence) in `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Anonymous: may open, join, see and close only its own case.
    Customer,
    /// Authenticated support staff: queue, pull, connect, create, close.
    Expert,
    /// Authenticated operator: list and delete cases.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Expert => "expert",
            Role::Admin => "admin",
        })
    }
}

/// The lifecycle state of a service case (see DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Exists; neither partner has started the session.
    New,
    /// One partner has started the session and waits for the other.
    Pending,
    /// Both partners are connected through the broker.
    InProgress,
    /// Closed by an expert or by whoever created the case.
    Closed,
    /// Not closed within the case time-to-live of its creation.
    Expired,
}

impl CaseState {
    /// Every state, in lifecycle order.
    pub const ALL: [CaseState; 5] = [
        CaseState::New,
        CaseState::Pending,
        CaseState::InProgress,
        CaseState::Closed,
        CaseState::Expired,
    ];

    /// Whether the case is still open (its code works, it can expire).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            CaseState::New | CaseState::Pending | CaseState::InProgress
        )
    }

    /// The name used on the command line and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::New => "new",
            CaseState::Pending => "pending",
            CaseState::InProgress => "in_progress",
            CaseState::Closed => "closed",
            CaseState::Expired => "expired",
        }
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CaseState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        CaseState::ALL
            .into_iter()
            .find(|state| state.as_str() == wanted)
            .ok_or_else(|| {
                format!("unknown case state {s:?}; expected one of new, pending, in_progress, closed, expired")
            })
    }
}

/// How badly the customer's business is hurt; the queue serves higher priorities first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// System down, business stopped.
    Critical,
    /// Significant impact.
    High,
    /// Minor impact (the default).
    #[default]
    Normal,
    /// No impact: questions.
    Low,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The name used on the command line and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Priority::ALL
            .into_iter()
            .find(|priority| priority.as_str() == wanted)
            .ok_or_else(|| {
                format!("unknown priority {s:?}; expected critical, high, normal or low")
            })
    }
}

/// How a case came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseOrigin {
    /// A customer pressed the SOS button (`sosq request`); the case waits in the queue.
    Sos,
    /// An expert created it by hand (`sosq create`) and reads the code to the customer.
    CreatedByExpert(String),
}

/// One entry of a case's history: what happened, when, who did it from where, and the
/// state afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it happened.
    pub at: Timestamp,
    /// The case's state after the event.
    pub state: CaseState,
    /// What happened, in words ("expert ana connected").
    pub event: String,
    /// Who did it ("expert ana", "customer", "sosqd" for the daemon itself), when known.
    pub actor: Option<String>,
    /// The network address the actor was connected from, when it came over the network.
    pub address: Option<String>,
}

/// A case as clients see it: everything but its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseInfo {
    /// The session code people read aloud.
    pub code: SessionCode,
    /// Current lifecycle state.
    pub state: CaseState,
    /// How the case was opened.
    pub origin: CaseOrigin,
    /// The customer's name as given.
    pub customer: String,
    /// What the customer needs help with.
    pub description: String,
    /// When the case was created.
    pub created_at: Timestamp,
    /// When the case last changed state.
    pub updated_at: Timestamp,
    /// When the case expires if it is not closed first.
    pub expires_at: Timestamp,
    /// The team queue the case belongs to.
    pub group: String,
    /// The expert the case is assigned to, if any.
    pub assigned_to: Option<String>,
    /// How urgent the case is.
    pub priority: Priority,
    /// For SOS cases: when an expert should have picked it up (the response target).
    pub response_due: Option<Timestamp>,
    /// When an expert first connected to the customer.
    pub first_response_at: Option<Timestamp>,
    /// Whether that first response came within the target.
    pub response_target_met: Option<bool>,
    /// Whether the customer is connected right now.
    pub customer_online: bool,
    /// The expert connected right now, if any.
    pub expert: Option<String>,
    /// Every transition and event, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// One waiting case as shown by `sosq queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// 1 for the case the next `pull` takes.
    pub position: u32,
    /// The case's code.
    pub code: SessionCode,
    /// The customer's name.
    pub customer: String,
    /// What the customer needs help with.
    pub description: String,
    /// Since when the customer has been waiting.
    pub waiting_since: Timestamp,
    /// How urgent the case is.
    pub priority: Priority,
    /// When an expert should have picked it up.
    pub response_due: Timestamp,
    /// The team queue it waits in.
    pub group: String,
    /// The expert it is assigned to, if any.
    pub assigned_to: Option<String>,
    /// Whether the customer is connected (only online customers can be pulled).
    pub online: bool,
}

/// Whom a case is assigned or transferred to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignee {
    /// One expert, by user name.
    Expert(String),
    /// A team queue, by group name.
    Group(String),
}

impl fmt::Display for Assignee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignee::Expert(name) => write!(f, "expert {name}"),
            Assignee::Group(name) => write!(f, "group {name}"),
        }
    }
}

/// Which cases an admin's bulk delete removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteSelector {
    /// These codes exactly (at most [`MAX_CODES_PER_DELETE`]).
    #[serde(deserialize_with = "bounded_codes")]
    Codes(Vec<SessionCode>),
    /// Every case matching the filter.
    Filter(CaseFilter),
}

/// The most codes one delete may name; more is a malformed request.
pub const MAX_CODES_PER_DELETE: usize = 4_096;

/// Reads a list of codes one by one, never trusting the announced length: serde would
/// otherwise reserve room for up to a megabyte of codes on the word of a 15-byte frame.
fn bounded_codes<'de, D>(deserializer: D) -> Result<Vec<SessionCode>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Codes;
    impl<'de> serde::de::Visitor<'de> for Codes {
        type Value = Vec<SessionCode>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_CODES_PER_DELETE} session codes")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut codes = Vec::new();
            while let Some(code) = seq.next_element()? {
                if codes.len() == MAX_CODES_PER_DELETE {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_CODES_PER_DELETE} codes in one delete"
                    )));
                }
                codes.push(code);
            }
            Ok(codes)
        }
    }
    deserializer.deserialize_seq(Codes)
}

/// A filter over cases; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFilter {
    /// Only cases in this state.
    pub state: Option<CaseState>,
    /// Only cases created more than this many milliseconds before the server's now.
    pub older_than_ms: Option<u64>,
}

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
    /// Expert: list the waiting cases.
    Queue,
    /// Expert: the waiting cases now (as `Queue`), then an [`Event::QueueChanged`] whenever
    /// the queue changes, until the connection closes.
    WatchQueue,
    /// Expert: take the oldest waiting case; with `wait`, wait for one if the queue is empty.
    Pull {
        /// Wait for a case instead of failing on an empty queue.
        wait: bool,
    },
    /// Expert: attach to a case by its code.
    Connect {
        /// The code as typed.
        code: String,
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
    /// Admin: list cases, optionally in one state.
    Cases {
        /// Only cases in this state.
        state: Option<CaseState>,
    },
    /// Admin: delete cases in bulk; active sessions among them end.
    Delete(DeleteSelector),
    /// Expert or admin: the whole history of one case, open or not.
    History {
        /// The code as typed.
        code: String,
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
    /// The waiting cases, next first.
    Queue(Vec<QueueEntry>),
    /// One case.
    Case(CaseInfo),
    /// Cases matching the admin's filter.
    Cases(Vec<CaseInfo>),
    /// The history of one case, oldest entry first.
    History {
        /// The case.
        code: SessionCode,
        /// Its state now.
        state: CaseState,
        /// Every transition and event, oldest first.
        entries: Vec<HistoryEntry>,
    },
    /// How many cases the bulk delete removed.
    Deleted {
        /// Number of cases removed.
        count: u64,
    },
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
    /// The session is over for this party (case closed, expired or deleted); the server
    /// closes the connection after this.
    SessionEnded {
        /// The case.
        code: SessionCode,
        /// Why, in words.
        reason: String,
    },
    /// For `WatchQueue`: the queue after a change, next first.
    QueueChanged {
        /// The waiting cases.
        queue: Vec<QueueEntry>,
    },
    /// A waiting customer's place in the queue changed.
    QueuePosition {
        /// The case.
        code: SessionCode,
        /// 1 = next.
        position: u32,
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
}
