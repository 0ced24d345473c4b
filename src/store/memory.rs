//! An in-memory [`CaseStore`]: correct ordering and acknowledgement, no durability. For
//! tests, and the reference the contract suite holds every backend to.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use sosq::protocol::Timestamp;
use sosq::SessionCode;

use super::{AuditRecord, CaseStore, CommitReport, CommitTicket, StoreError};
use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};

#[derive(Default)]
struct Tables {
    cases: BTreeMap<SessionCode, CaseRecord>,
    audit: Vec<AuditEntry>,
}

/// Cases in a map behind a mutex; commits are immediate.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn locked(&self) -> Result<MutexGuard<'_, Tables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

impl CaseStore for MemoryStore {
    fn submit(&self, ops: Vec<Persist>) -> CommitTicket {
        let outcome = self.locked().map(|mut tables| {
            let tables = &mut *tables;
            let mut report = CommitReport::default();
            for op in ops {
                match op {
                    Persist::Save(record) => {
                        tables.cases.insert(record.code, record);
                    }
                    Persist::Delete(codes) => {
                        for code in codes {
                            if tables.cases.remove(&code).is_some() {
                                report.deleted.push(code);
                            }
                        }
                    }
                    Persist::DeleteWhere(selection) => {
                        tables.cases.retain(|code, record| {
                            let doomed = selection.matches(record);
                            if doomed {
                                report.deleted.push(*code);
                            }
                            !doomed
                        });
                    }
                    Persist::Audit(mut entry) => {
                        entry.count = report.deleted.len() as u64;
                        tables.audit.push(entry);
                    }
                }
            }
            report
        });
        CommitTicket::ready(outcome)
    }

    fn get(&self, code: SessionCode) -> Result<Option<CaseRecord>, StoreError> {
        Ok(self.locked()?.cases.get(&code).cloned())
    }

    fn list(&self, selection: &CaseSelection) -> Result<Vec<CaseRecord>, StoreError> {
        let mut found: Vec<CaseRecord> = self
            .locked()?
            .cases
            .values()
            .filter(|record| selection.matches(record))
            .cloned()
            .collect();
        found.sort_by_key(|record| (record.created_at, record.code));
        Ok(found)
    }

    fn page(
        &self,
        selection: &CaseSelection,
        after: Option<(Timestamp, SessionCode)>,
        limit: usize,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let mut found: Vec<CaseRecord> = self
            .locked()?
            .cases
            .values()
            .filter(|record| selection.matches(record))
            .filter(|record| after.is_none_or(|after| (record.created_at, record.code) > after))
            .map(|record| CaseRecord {
                history: Vec::new(),
                ..record.clone()
            })
            .collect();
        found.sort_by_key(|record| (record.created_at, record.code));
        found.truncate(limit);
        Ok(found)
    }

    fn count(&self, selection: &CaseSelection, cap: u64) -> Result<u64, StoreError> {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let tables = self.locked()?;
        let found = tables
            .cases
            .values()
            .filter(|record| selection.matches(record))
            .take(cap)
            .count();
        Ok(found as u64)
    }

    fn load_open(&self) -> Result<Vec<CaseRecord>, StoreError> {
        Ok(self
            .locked()?
            .cases
            .values()
            .filter(|record| record.state.is_open())
            .cloned()
            .collect())
    }

    fn load_codes(&self, each: &mut dyn FnMut(SessionCode)) -> Result<(), StoreError> {
        self.locked()?.cases.keys().copied().for_each(each);
        Ok(())
    }

    fn finished_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionCode>, StoreError> {
        let tables = self.locked()?;
        let mut found: Vec<(Timestamp, SessionCode)> = tables
            .cases
            .values()
            .filter(|record| !record.state.is_open() && record.updated_at < before)
            .map(|record| (record.updated_at, record.code))
            .collect();
        found.sort_unstable();
        Ok(found
            .into_iter()
            .take(limit)
            .map(|(_, code)| code)
            .collect())
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.locked()?.audit.clone())
    }

    fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // An entry's id is its place in the log, from 1 (like SQLite's first rowid).
        let tables = self.locked()?;
        let end = before.map_or(tables.audit.len(), |before| {
            usize::try_from(before.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(tables.audit.len())
        });
        Ok(tables.audit[..end]
            .iter()
            .enumerate()
            .rev()
            .take(limit)
            .map(|(index, entry)| AuditRecord {
                id: index as u64 + 1,
                entry: entry.clone(),
            })
            .collect())
    }
}
