//! Who did what from where: the actor the shell names for each command, stamped on the
//! history entries the command wrote, and the audit entry of an admin's bulk delete (the
//! deleted cases' histories go with them, so the action itself is kept apart).

use serde::{Deserialize, Serialize};
use sosq::protocol::{HistoryEntry, Timestamp};

/// Who runs a command: a person over the network, or the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// "expert ana", "admin root", "customer", or "sosqd".
    pub who: String,
    /// The remote address of the connection, for commands that came over the network.
    pub address: Option<String>,
}

impl Actor {
    /// The daemon itself (expiry, retention, recovery after a restart).
    pub fn daemon() -> Actor {
        Actor {
            who: "sosqd".to_string(),
            address: None,
        }
    }

    /// Fills in who and where on the newest entries that have no actor yet. Entries are
    /// stamped by the command that wrote them, so the unstamped ones are all at the end.
    pub fn stamp(&self, history: &mut [HistoryEntry]) {
        for entry in history.iter_mut().rev() {
            if entry.actor.is_some() {
                break;
            }
            entry.actor = Some(self.who.clone());
            entry.address.clone_from(&self.address);
        }
    }
}

/// One admin action kept in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: Timestamp,
    /// Who ("admin root", "sosqd retention").
    pub actor: String,
    /// From which address, if over the network.
    pub address: Option<String>,
    /// What was done ("delete").
    pub action: String,
    /// What it was done to, in words ("codes s123-456-789", "state closed, created before …").
    pub selector: String,
    /// How many cases it affected. The store fills this in: the number of cases the
    /// deletes earlier in the same submission removed.
    pub count: u64,
}
