//! What a cluster node's writes are fenced with: the cases it serves, each with the epoch
//! its claim holds. Every write this node makes to a case row names that epoch, so once
//! another node has taken the case over (and bumped the epoch) this node's writes change
//! nothing and fail, however late they arrive. The shell also notes here whether each case
//! waits in a queue, which the row carries for the shared queue.

use dashmap::DashMap;
use sosq::SessionCode;

/// Whether a case waits in a queue, as the shared queue shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Not in a queue (paired, seated, finished, or not an SOS case).
    No,
    /// Waiting with its customer online: a pull may take it.
    Online,
    /// Waiting with its customer offline: shown in its place, not handed out.
    Away,
}

impl Queued {
    /// The `queued` column's value.
    pub fn column(self) -> Option<&'static str> {
        match self {
            Queued::No => None,
            Queued::Online => Some("online"),
            Queued::Away => Some("away"),
        }
    }
}

/// One case this node serves.
#[derive(Debug, Clone)]
struct Holding {
    /// The epoch the row holds for this node; 0 until the row is first written.
    epoch: i64,
    queued: Queued,
    /// The expert seated in the case, for other nodes' views of it.
    expert: Option<String>,
}

/// The cases a node serves (see the module documentation).
#[derive(Debug)]
pub struct Ledger {
    node: String,
    cases: DashMap<SessionCode, Holding>,
}

impl Ledger {
    /// An empty ledger for node `node`.
    pub fn new(node: &str) -> Ledger {
        Ledger {
            node: node.to_string(),
            cases: DashMap::new(),
        }
    }

    /// This node's name (the `home_node` of the rows it serves).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Notes that this node serves `code` at `epoch` (it created or took over the row).
    pub fn hold(&self, code: SessionCode, epoch: i64) {
        self.cases
            .entry(code)
            .and_modify(|holding| holding.epoch = epoch)
            .or_insert(Holding {
                epoch,
                queued: Queued::No,
                expert: None,
            });
    }

    /// Notes whether `code` waits in a queue and which expert is in it; written with its
    /// next save.
    pub fn set_presence(&self, code: SessionCode, queued: Queued, expert: Option<String>) {
        self.cases
            .entry(code)
            .and_modify(|holding| {
                holding.queued = queued;
                holding.expert = expert.clone();
            })
            .or_insert(Holding {
                epoch: 0,
                queued,
                expert,
            });
    }

    /// Notes, for each case `changes` save, whether it waits in a queue and which expert
    /// is in it, as `broker` (the node's core, after the command that made them) holds it.
    pub fn note_saves(&self, broker: &crate::broker::Broker, changes: &[crate::broker::Persist]) {
        for change in changes {
            if let crate::broker::Persist::Save(record) = change {
                let queued = match broker.queue_state(record.code) {
                    Some(true) => Queued::Online,
                    Some(false) => Queued::Away,
                    None => Queued::No,
                };
                let expert = broker
                    .case(record.code)
                    .and_then(|case| case.expert.as_ref())
                    .map(|seat| seat.name.clone());
                self.set_presence(record.code, queued, expert);
            }
        }
    }

    /// The epoch held for `code` (0: not written yet), whether it waits in a queue, and
    /// its expert.
    pub fn holding(&self, code: SessionCode) -> (i64, Queued, Option<String>) {
        self.cases
            .get(&code)
            .map_or((0, Queued::No, None), |holding| {
                (holding.epoch, holding.queued, holding.expert.clone())
            })
    }

    /// Forgets `code` (another node serves it now, or it is gone).
    pub fn release(&self, code: SessionCode) {
        self.cases.remove(&code);
    }

    /// Every case held with a written row, and its epoch.
    pub fn held(&self) -> Vec<(SessionCode, i64)> {
        self.cases
            .iter()
            .filter(|entry| entry.epoch > 0)
            .map(|entry| (*entry.key(), entry.epoch))
            .collect()
    }

    /// How many cases are held.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether no case is held.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }
}
