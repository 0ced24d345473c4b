//! Cases moving between the nodes of a cluster: a node adopts a case whose home node was
//! lost (or that a redirect brought here), and forgets one that another node now serves.
//! Which node serves a case is decided in the shared store (`cluster`); these commands
//! only bring the core in line with that decision. On one node none of this runs.

use sosq::protocol::{CaseState, HistoryKind, Timestamp};
use sosq::SessionCode;

use super::{Broker, Case, CaseRecord, Effect, Persist};

impl Broker {
    /// Draws session codes only from the supply a cluster node reserves in the shared
    /// store ([`Broker::supply_codes`]), so no two nodes hand out the same code.
    pub fn use_code_supply(&mut self) {
        self.codes.use_supply();
    }

    /// Adds codes reserved in the shared store to this node's supply.
    pub fn supply_codes(&mut self, codes: impl IntoIterator<Item = SessionCode>) {
        self.codes.supply(codes);
    }

    /// How many reserved codes are left (`None` on one node, which draws its own).
    pub fn codes_supplied(&self) -> Option<usize> {
        self.codes.supplied()
    }

    /// `count` random codes no case here holds, to try to reserve in the shared store.
    pub fn code_candidates(&mut self, count: usize) -> Vec<SessionCode> {
        self.codes.candidates(count)
    }

    /// Takes over an open case another node served until now (its lease lapsed, or the
    /// store says it is ours): nobody is attached yet; a case that was in progress goes back
    /// to `pending` (its partners reconnect here), and a waiting SOS case takes its place in
    /// line, offline until its customer is back. `why` goes into the history. A case
    /// already held is left alone; a finished one is not taken.
    pub fn adopt(&mut self, now: Timestamp, record: CaseRecord, why: &str, out: &mut Vec<Effect>) {
        let code = record.code;
        if self.cases.contains_key(&code) || !record.state.is_open() {
            return;
        }
        self.codes.reserve(code);
        self.deadlines.set(code, record.expires_at);
        self.cases.insert(
            code,
            Case {
                record,
                customer: None,
                expert: None,
            },
        );
        let case = self.case_mut(code);
        if case.record.state == CaseState::InProgress {
            case.record
                .transition(
                    CaseState::Pending,
                    now,
                    HistoryKind::Moved,
                    format!("{why}; waiting for the partners to reconnect"),
                    "move to pending",
                )
                .expect("in progress may always go back to pending");
        } else {
            case.record.note(now, HistoryKind::Moved, why.to_string());
        }
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        self.refresh_queue(code, now, out);
    }

    /// Lets go of a case another node serves now (or one deleted there): its parties here
    /// are disconnected with `close` (a `sosq::protocol::close_code`) and `reason`, and its session ends.
    /// Nothing is persisted: the case is no longer this node's to write. Whether the case
    /// was held.
    pub fn forget(
        &mut self,
        code: SessionCode,
        close: u32,
        reason: &str,
        out: &mut Vec<Effect>,
    ) -> bool {
        if !self.cases.contains_key(&code) {
            return false;
        }
        let case = self.take_case(code);
        self.end_sessions(&case, out, |party| Effect::Disconnect {
            party,
            code: close,
            reason: reason.to_string(),
        });
        true
    }

    /// Whether `code` is an SOS case waiting online for an expert: what a shared queue may
    /// hand out.
    pub fn is_waiting_online(&self, code: SessionCode) -> bool {
        self.cases.get(&code).is_some_and(Case::is_waiting)
    }

    /// Whether `code` waits in a queue: `Some(true)` online (a pull may take it),
    /// `Some(false)` with its customer offline, `None` not at all.
    pub fn queue_state(&self, code: SessionCode) -> Option<bool> {
        let case = self.cases.get(&code)?;
        if case.is_waiting() {
            Some(true)
        } else if case.is_waiting_offline() {
            Some(false)
        } else {
            None
        }
    }

    /// The codes of every open case held here.
    pub fn open_codes(&self) -> Vec<SessionCode> {
        self.cases.keys().copied().collect()
    }
}
