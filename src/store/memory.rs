//! An in-memory [`CaseStore`]: correct ordering and acknowledgement, no durability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sosq::SessionCode;

use super::{CaseStore, CommitReport, CommitTicket, StoreError};
use crate::broker::{CaseRecord, CaseSelection, Persist};

/// Cases in a map behind a mutex; commits are immediate.
#[derive(Default)]
pub struct MemoryStore {
    cases: Mutex<BTreeMap<SessionCode, CaseRecord>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn locked(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, BTreeMap<SessionCode, CaseRecord>>, StoreError> {
        self.cases
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

impl CaseStore for MemoryStore {
    fn submit(&self, ops: Vec<Persist>) -> CommitTicket {
        let outcome = self.locked().map(|mut cases| {
            let mut report = CommitReport::default();
            for op in ops {
                match op {
                    Persist::Save(record) => {
                        cases.insert(record.code, record);
                    }
                    Persist::Delete(codes) => {
                        for code in codes {
                            if cases.remove(&code).is_some() {
                                report.deleted.push(code);
                            }
                        }
                    }
                    Persist::DeleteWhere(selection) => {
                        cases.retain(|code, record| {
                            let doomed = selection.matches(record);
                            if doomed {
                                report.deleted.push(*code);
                            }
                            !doomed
                        });
                    }
                }
            }
            report
        });
        CommitTicket::ready(outcome)
    }

    fn get(&self, code: SessionCode) -> Result<Option<CaseRecord>, StoreError> {
        Ok(self.locked()?.get(&code).cloned())
    }

    fn list(&self, selection: &CaseSelection) -> Result<Vec<CaseRecord>, StoreError> {
        let mut found: Vec<CaseRecord> = self
            .locked()?
            .values()
            .filter(|record| selection.matches(record))
            .cloned()
            .collect();
        found.sort_by_key(|record| (record.created_at, record.code));
        Ok(found)
    }

    fn load_all(&self) -> Result<Vec<CaseRecord>, StoreError> {
        self.list(&CaseSelection::default())
    }
}
