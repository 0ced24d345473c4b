//! An in-memory [`CaseStore`]: correct ordering and acknowledgement, no durability. For
//! tests, and the reference the contract suite holds every backend to.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use sosq::protocol::{AttachmentInfo, CaseState, HistoryKind, Priority, Timestamp};
use sosq::SessionCode;

use super::reports::{
    self, DayOutcomes, ExpertsReport, FirstResponse, QueueSeries, ReportWindow, DAY_MS,
    RETENTION_ACTOR,
};
use super::{AuditRecord, CaseStore, CommitReport, CommitTicket, StoreError};
use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist, StoredAttachment};

#[derive(Default)]
struct Tables {
    cases: BTreeMap<SessionCode, CaseRecord>,
    /// By case and number, so a case's are together, oldest first.
    attachments: BTreeMap<(SessionCode, u32), StoredAttachment>,
    audit: Vec<AuditEntry>,
}

impl Tables {
    /// Deletes a case and its attachments; whether there was one.
    fn delete(&mut self, code: SessionCode) -> bool {
        self.attachments.retain(|(of, _), _| *of != code);
        self.cases.remove(&code).is_some()
    }
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
                            if tables.delete(code) {
                                report.deleted.push(code);
                            }
                        }
                    }
                    Persist::DeleteWhere(selection) => {
                        let doomed: Vec<SessionCode> = tables
                            .cases
                            .values()
                            .filter(|record| selection.matches(record))
                            .map(|record| record.code)
                            .collect();
                        for code in doomed {
                            tables.delete(code);
                            report.deleted.push(code);
                        }
                    }
                    Persist::Attach { code, attachment } => {
                        if tables.cases.contains_key(&code) {
                            tables
                                .attachments
                                .insert((code, attachment.info.id), attachment);
                        }
                    }
                    Persist::Note { code, entry } => {
                        if let Some(record) = tables.cases.get_mut(&code) {
                            if record.history.len() < crate::broker::MAX_HISTORY_ENTRIES {
                                record.history.push(entry);
                            }
                        }
                    }
                    Persist::Audit(mut entry) => {
                        // As the SQL stores do: a bulk delete in steps audits once, with
                        // the earlier steps' count plus this submission's.
                        entry.count += report.deleted.len() as u64;
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

    fn attachments(&self, code: SessionCode) -> Result<Vec<AttachmentInfo>, StoreError> {
        Ok(self
            .locked()?
            .attachments
            .range((code, 0)..=(code, u32::MAX))
            .map(|(_, attachment)| attachment.info.clone())
            .collect())
    }

    fn attachment_part(
        &self,
        code: SessionCode,
        id: u32,
        offset: u64,
        len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .locked()?
            .attachments
            .get(&(code, id))
            .map(|attachment| {
                let bytes = attachment.bytes.as_slice();
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = start.saturating_add(len).min(bytes.len());
                (bytes.len() as u64, bytes[start..end].to_vec())
            }))
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

    // The reports walk every case: this store is the reference the SQL ones are held to,
    // not a store for many cases.

    fn first_responses(&self, window: &ReportWindow) -> Result<Vec<FirstResponse>, StoreError> {
        let tables = self.locked()?;
        let found = Priority::ALL
            .into_iter()
            .map(|priority| {
                let cases: Vec<&CaseRecord> = tables
                    .cases
                    .values()
                    .filter(|r| r.priority == priority && r.response_due.is_some())
                    .filter(|r| window.from() <= r.created_at && r.created_at < window.to())
                    .collect();
                let mut times: Vec<u64> = cases
                    .iter()
                    .filter_map(|r| Some(r.first_response_at?.0.saturating_sub(r.created_at.0)))
                    .collect();
                times.sort_unstable();
                let n = times.len();
                FirstResponse {
                    priority,
                    cases: cases.len() as u64,
                    responded: n as u64,
                    within_target: cases
                        .iter()
                        .filter(|r| r.response_target_met() == Some(true))
                        .count() as u64,
                    median_ms: (n > 0).then(|| (times[(n - 1) / 2] + times[n / 2]) / 2),
                }
            })
            .collect();
        Ok(found)
    }

    fn outcomes_by_day(&self, window: &ReportWindow) -> Result<Vec<DayOutcomes>, StoreError> {
        let tables = self.locked()?;
        let inside = |at: Timestamp| window.from() <= at && at < window.to();
        let day = |at: Timestamp| at.0 / DAY_MS * DAY_MS;
        let ended = |state: CaseState| -> Vec<(u64, u64)> {
            let cases = tables.cases.values();
            cases
                .filter(|r| r.state == state && inside(r.updated_at))
                .map(|r| (day(r.updated_at), 1))
                .collect()
        };
        let deleted: Vec<(u64, u64)> = tables
            .audit
            .iter()
            .filter(|e| e.action == "delete" && e.actor != RETENTION_ACTOR && inside(e.at))
            .map(|e| (day(e.at), e.count))
            .collect();
        Ok(reports::outcome_days(
            window,
            &ended(CaseState::Closed),
            &ended(CaseState::Expired),
            &deleted,
        ))
    }

    fn queue_length(&self, window: &ReportWindow) -> Result<QueueSeries, StoreError> {
        let tables = self.locked()?;
        let mut changes = std::collections::BTreeMap::<u64, i64>::new();
        for record in tables.cases.values().filter(|r| r.response_due.is_some()) {
            let finished = !record.state.is_open();
            let end = [
                record.first_response_at,
                finished.then_some(record.updated_at),
                Some(record.expires_at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(record.expires_at);
            *changes
                .entry(reports::queue_point_of(window, record.created_at.0))
                .or_default() += 1;
            *changes
                .entry(reports::queue_point_of(window, end.0))
                .or_default() -= 1;
        }
        let mut total = 0;
        let running: Vec<(u64, i64)> = changes
            .into_iter()
            .map(|(point, change)| {
                total += change;
                (point, total)
            })
            .collect();
        Ok(reports::queue_series(window, &running))
    }

    fn cases_per_expert(
        &self,
        window: &ReportWindow,
        top: usize,
    ) -> Result<ExpertsReport, StoreError> {
        let tables = self.locked()?;
        let mut taken = BTreeMap::<&str, u64>::new();
        for record in tables.cases.values() {
            if record.created_at < window.from() || window.to() <= record.created_at {
                continue;
            }
            let experts: std::collections::BTreeSet<&str> = record
                .history
                .iter()
                .filter(|entry| entry.kind == HistoryKind::Attached)
                .filter_map(|entry| reports::expert_of(&entry.event))
                .collect();
            for expert in experts {
                *taken.entry(expert).or_default() += 1;
            }
        }
        let total = taken.values().sum();
        let experts = taken.len() as u64;
        let mut rows: Vec<(String, u64)> = taken
            .into_iter()
            .map(|(expert, n)| (expert.to_string(), n))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(reports::experts_report(rows, top, total, experts))
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
