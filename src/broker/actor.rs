//! Who did what from where: the actor the shell names for each command, stamped on the
//! history entries the command wrote, and the audit entry of an admin's bulk delete (the
//! deleted cases' histories go with them, so the action itself is kept apart).

use serde::{Deserialize, Serialize};
use sosq::protocol::{self, ActorRole, Timestamp};

use super::CaseRecord;

/// Who runs a command: a person over the network, or the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who, by role and name ("expert ana", "admin root", "customer", "sosqd"). A
    /// customer's connection does not know the name its case gives the customer, so a
    /// customer actor without one is named after the case when it is stamped.
    pub who: protocol::Actor,
    /// The remote address of the connection, for commands that came over the network.
    pub address: Option<String>,
}

impl Actor {
    /// The daemon itself (expiry, recovery after a restart).
    pub fn daemon() -> Actor {
        Actor {
            who: protocol::Actor::daemon(),
            address: None,
        }
    }

    /// Fills in who and where on the newest entries of `record`'s history that have no
    /// actor yet. Entries are stamped by the command that wrote them, so the unstamped ones
    /// are all at the end.
    pub fn stamp(&self, record: &mut CaseRecord) {
        let mut who = self.who.clone();
        if who.role == ActorRole::Customer && who.name.is_none() {
            who.name = Some(record.customer.clone());
        }
        for entry in record.history.iter_mut().rev() {
            if entry.actor.is_some() {
                break;
            }
            entry.actor = Some(who.clone());
            entry.address.clone_from(&self.address);
        }
    }
}

impl Actor {
    /// Fills in who and where on one entry that has no actor yet (a staff note on a stored
    /// case, which travels to the store alone).
    pub fn stamp_entry(&self, entry: &mut protocol::HistoryEntry) {
        if entry.actor.is_none() {
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
    /// Who ("admin root", "sosqd retention"), as [`protocol::Actor`] prints it.
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
