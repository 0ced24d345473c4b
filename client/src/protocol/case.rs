//! The words of the protocol: times, roles, states, priorities, and the case, history and
//! queue records that requests and replies carry.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::code::SessionCode;

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

    /// This time as RFC 3339 in UTC, to the second: `2026-11-30T10:00:00Z`.
    pub fn rfc3339(self) -> String {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0);
        humantime::format_rfc3339_seconds(time).to_string()
    }

    /// A time as people give it (`sosq cases --created-after`, the console's filters):
    /// milliseconds since the epoch, a day (`2026-11-30`, its midnight UTC), an RFC 3339
    /// time, or an age before `now` (`7d`, `12h`). Errors: what to give instead, in words.
    pub fn parse_given(given: &str, now: Timestamp) -> Result<Timestamp, String> {
        let given = given.trim();
        if let Ok(ms) = given.parse::<u64>() {
            return Ok(Timestamp(ms));
        }
        let day = (given.len() == 10).then(|| format!("{given}T00:00:00Z"));
        if let Ok(at) = humantime::parse_rfc3339_weak(day.as_deref().unwrap_or(given)) {
            let ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| format!("{given:?} is before 1970"))?
                .as_millis();
            return Ok(Timestamp(u64::try_from(ms).unwrap_or(u64::MAX)));
        }
        match humantime::parse_duration(given) {
            Ok(age) => Ok(Timestamp(
                now.0
                    .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            )),
            Err(_) => Err(format!(
                "{given:?} is not a time: give an age (\"7d\", \"12h\"), a day (\"2026-11-30\"), \
                 an RFC 3339 time (\"2026-11-30T10:00:00Z\") or milliseconds since the epoch"
            )),
        }
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
    /// The customer's latest message, if any (`Request::AddMessage`).
    pub last_message: Option<String>,
    /// How many files the customer attached.
    pub attachments: u32,
    // No history here: `Request::History` pages through it, so a case's size on the wire
    // never depends on how long it lived.
}

/// One waiting case as shown by `sosq queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Its place in its own queue (its team's, or the queue of cases assigned to one
    /// expert): 1 is the next `pull` from that queue takes, and it is the number the
    /// customer is told. None while the customer is offline (its case keeps its place, but
    /// nobody can pull it until the customer is back).
    pub position: Option<u32>,
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
    /// Whether the customer is connected (only online customers can be pulled; an offline
    /// one dropped and may come back with its resume secret).
    pub online: bool,
    /// The customer's latest message, cut to [`MAX_QUEUE_MESSAGE_CHARS`] (the case's own
    /// view has it whole).
    pub last_message: Option<String>,
    /// How many files the customer attached.
    pub attachments: u32,
}

/// The most characters of a customer's latest message a queue entry carries: enough to
/// read at a glance, and a page of the queue stays dense.
pub const MAX_QUEUE_MESSAGE_CHARS: usize = 200;

/// A customer's latest message as a queue entry carries it: at most
/// [`MAX_QUEUE_MESSAGE_CHARS`] characters, a cut one ending in an ellipsis.
pub fn queue_message(message: &str) -> String {
    if message.chars().count() <= MAX_QUEUE_MESSAGE_CHARS {
        return message.to_string();
    }
    let mut shown: String = message.chars().take(MAX_QUEUE_MESSAGE_CHARS - 1).collect();
    shown.push('…');
    shown
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

/// The longest text filter accepted, in characters. A text filter is a substring search
/// over the customer's name and the description, which no index serves: the cap keeps one
/// comparison per row cheap, and nobody types a longer search.
pub const MAX_FILTER_TEXT_CHARS: usize = 200;

/// A filter over cases; every given field must match. An empty filter (every field None)
/// selects every case: listing accepts it, a bulk delete refuses it.
///
/// Times are absolute milliseconds since the epoch; each range is `[from, to)` (from
/// inclusive, to exclusive), so consecutive ranges never overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFilter {
    /// Only cases in this state.
    pub state: Option<CaseState>,
    /// Only cases created more than this many milliseconds before the server's now.
    pub older_than_ms: Option<u64>,
    /// Only cases of this team (group), exactly.
    pub team: Option<String>,
    /// Only cases of this priority.
    pub priority: Option<Priority>,
    /// Only cases created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only cases created strictly before this time.
    pub created_to: Option<Timestamp>,
    /// Only closed or expired cases that ended at or after this time.
    pub closed_from: Option<Timestamp>,
    /// Only closed or expired cases that ended strictly before this time.
    pub closed_to: Option<Timestamp>,
    /// Only cases whose customer name or description contains this text, ignoring ASCII
    /// case; at most [`MAX_FILTER_TEXT_CHARS`] characters.
    pub text: Option<String>,
}

impl CaseFilter {
    /// Whether no field is given, so the filter selects every case.
    pub fn is_empty(&self) -> bool {
        *self == CaseFilter::default()
    }
}
