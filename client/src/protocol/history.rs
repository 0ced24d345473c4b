//! A case's history as the protocol carries it: each entry says what happened for programs
//! ([`HistoryKind`]) and for people (words), when, who did it ([`Actor`]) and from where.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::case::{CaseState, Role, Timestamp};

/// One entry of a case's history: what happened (as a [`HistoryKind`] for programs and in
/// words for people), when, who did it from where, and the state afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it happened.
    pub at: Timestamp,
    /// The case's state after the event.
    pub state: CaseState,
    /// What happened, for programs.
    pub kind: HistoryKind,
    /// What happened, in words ("expert ana connected").
    pub event: String,
    /// Who did it, when known.
    pub actor: Option<Actor>,
    /// The network address the actor was connected from, when it came over the network.
    pub address: Option<String>,
}

impl HistoryEntry {
    /// Whether only staff may see this entry: a staff note is internal to the support
    /// team. Every page shown to a customer (the web console's customer page, anything a
    /// customer's connection reads) must leave these entries out.
    pub fn staff_only(&self) -> bool {
        self.kind.staff_only()
    }
}

/// What a history entry records, for programs (the entry's `event` says it in words).
///
/// Kinds may be added in later versions; a reader treats one it does not know as
/// [`HistoryKind::Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The case was created (SOS button or by an expert).
    Created,
    /// A customer or an expert attached to the case (asked for help, joined, came back,
    /// connected).
    Attached,
    /// The first party started the session of a new case; it waits for the other.
    Started,
    /// Both partners are connected: the session runs.
    Paired,
    /// The first response came, within its target or not.
    FirstResponse,
    /// A party left or its connection was lost.
    Left,
    /// A pulling expert whose customer vanished was let go to take the next case.
    Released,
    /// A party came back on a new connection and the old one was closed.
    Replaced,
    /// The case was routed to an expert or a team queue.
    Assigned,
    /// The expert in the session handed the case to another expert or team.
    Transferred,
    /// The case's priority changed.
    Escalated,
    /// What a finished pairing relayed.
    Traffic,
    /// The daemon restarted while the case was in progress.
    Restarted,
    /// In a cluster: another node took the case over (its home node was lost).
    Moved,
    /// The case was closed.
    Closed,
    /// The case expired.
    Expired,
    /// An admin deleted the case.
    Deleted,
    /// The history is full: this last entry holds every later event.
    Folded,
    /// A staff note (an expert's or admin's words on the case): staff-internal, never
    /// shown to the customer (see [`HistoryEntry::staff_only`]).
    Note,
    /// The case's customer added a message while waiting ("it also beeps").
    Message,
    /// The case's customer attached a file (a screenshot of the error).
    Attachment,
    /// The expert asked the customer to run the native client (`sosq invite-native`).
    NativeInvite,
    /// Anything else, and entries stored before kinds existed that say nothing clearer.
    Event,
}

impl HistoryKind {
    /// Every kind.
    pub const ALL: [HistoryKind; 23] = [
        HistoryKind::Created,
        HistoryKind::Attached,
        HistoryKind::Started,
        HistoryKind::Paired,
        HistoryKind::FirstResponse,
        HistoryKind::Left,
        HistoryKind::Released,
        HistoryKind::Replaced,
        HistoryKind::Assigned,
        HistoryKind::Transferred,
        HistoryKind::Escalated,
        HistoryKind::Traffic,
        HistoryKind::Restarted,
        HistoryKind::Moved,
        HistoryKind::Closed,
        HistoryKind::Expired,
        HistoryKind::Deleted,
        HistoryKind::Folded,
        HistoryKind::Note,
        HistoryKind::Message,
        HistoryKind::Attachment,
        HistoryKind::NativeInvite,
        HistoryKind::Event,
    ];

    /// The name used in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Created => "created",
            HistoryKind::Attached => "attached",
            HistoryKind::Started => "started",
            HistoryKind::Paired => "paired",
            HistoryKind::FirstResponse => "first_response",
            HistoryKind::Left => "left",
            HistoryKind::Released => "released",
            HistoryKind::Replaced => "replaced",
            HistoryKind::Assigned => "assigned",
            HistoryKind::Transferred => "transferred",
            HistoryKind::Escalated => "escalated",
            HistoryKind::Traffic => "traffic",
            HistoryKind::Restarted => "restarted",
            HistoryKind::Moved => "moved",
            HistoryKind::Closed => "closed",
            HistoryKind::Expired => "expired",
            HistoryKind::Deleted => "deleted",
            HistoryKind::Folded => "folded",
            HistoryKind::Note => "note",
            HistoryKind::Message => "message",
            HistoryKind::Attachment => "attachment",
            HistoryKind::NativeInvite => "native_invite",
            HistoryKind::Event => "event",
        }
    }

    /// Whether entries of this kind are for staff only (see [`HistoryEntry::staff_only`]).
    /// A kind this version does not know reads as [`HistoryKind::Event`], which is not.
    pub fn staff_only(self) -> bool {
        matches!(self, HistoryKind::Note)
    }

    /// The kind named `name`; [`HistoryKind::Event`] for a name this version does not know.
    pub fn named(name: &str) -> HistoryKind {
        HistoryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or(HistoryKind::Event)
    }
}

impl fmt::Display for HistoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did something to a case: a person by role and name, or the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The kind of actor.
    pub role: ActorRole,
    /// The user name of staff, the customer's name as given; for the daemon, which of its
    /// jobs (none: the daemon itself).
    pub name: Option<String>,
}

impl Actor {
    /// An actor of `role` named `name`.
    pub fn new(role: ActorRole, name: impl Into<String>) -> Actor {
        Actor {
            role,
            name: Some(name.into()),
        }
    }

    /// The daemon itself (expiry, recovery after a restart, relay accounting).
    pub fn daemon() -> Actor {
        Actor {
            role: ActorRole::Sosqd,
            name: None,
        }
    }
}

/// "expert ana", "customer Alice", "sosqd".
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} {name}", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}

/// The kinds of actor in a case's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    /// The case's customer.
    Customer,
    /// Support staff.
    Expert,
    /// An operator.
    Admin,
    /// The daemon itself.
    Sosqd,
}

impl ActorRole {
    /// The name used in JSON, in the store and in the history table.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorRole::Customer => "customer",
            ActorRole::Expert => "expert",
            ActorRole::Admin => "admin",
            ActorRole::Sosqd => "sosqd",
        }
    }
}

impl From<Role> for ActorRole {
    fn from(role: Role) -> ActorRole {
        match role {
            Role::Customer => ActorRole::Customer,
            Role::Expert => ActorRole::Expert,
            Role::Admin => ActorRole::Admin,
        }
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ActorRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ActorRole::Customer,
            ActorRole::Expert,
            ActorRole::Admin,
            ActorRole::Sosqd,
        ]
        .into_iter()
        .find(|role| role.as_str() == s)
        .ok_or_else(|| format!("unknown actor role {s:?}"))
    }
}
