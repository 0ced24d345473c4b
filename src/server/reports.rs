//! The admin console's Reports page, from the server's side: every report over one window,
//! read from the store off the async threads (store reads block, as `list_cases` does).
//! The figures are the store's (`store::reports` says what each counts); the charts are
//! `crate::charts`'.

use crate::store::reports::{ReportWindow, Reports};
use crate::store::StoreError;

use super::{ServerError, Shared};

/// The experts a Reports page shows by name; the rest are summed as "others".
pub const TOP_EXPERTS: usize = 20;

impl Shared {
    /// The window of the `days` whole UTC days up to and including today (by the daemon's
    /// clock): what the Reports page shows by default.
    pub fn report_window(&self, days: u32) -> ReportWindow {
        ReportWindow::last_days(self.now(), days)
    }

    /// Every report over `window`, with the `top_experts` busiest experts by name (the
    /// page uses [`TOP_EXPERTS`]). Runs the store's queries on a blocking thread; each
    /// costs the window, not the number of cases.
    ///
    /// Errors: [`ServerError::Store`] if the store fails.
    pub async fn reports(
        &self,
        window: ReportWindow,
        top_experts: usize,
    ) -> Result<Reports, ServerError> {
        let store = self.store.clone();
        let reports = tokio::task::spawn_blocking(move || -> Result<Reports, StoreError> {
            Ok(Reports {
                window,
                first_responses: store.first_responses(&window)?,
                outcomes: store.outcomes_by_day(&window)?,
                queue: store.queue_length(&window)?,
                experts: store.cases_per_expert(&window, top_experts)?,
            })
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sosq::protocol::Timestamp;

    use crate::broker::{Actor, Closer};
    use crate::clock::Clock;
    use crate::config::Config;
    use crate::server::Shared;
    use crate::store::reports::{DAY_MS, HOUR_MS};
    use crate::store::MemoryStore;

    /// Cases made and ended through the core, then retention: the report counts the close
    /// on its day and leaves retention's deletion out of "deleted".
    #[tokio::test(start_paused = true)]
    async fn reports_what_the_core_did_and_leaves_retention_out() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            retention: Duration::from_secs(3600),
            ..Config::default()
        };
        let start = Timestamp(30 * DAY_MS + 10 * HOUR_MS);
        let store = Arc::new(MemoryStore::new());
        let shared = Shared::new(config, store, Clock::anchored(start), None).unwrap();
        let actor = Actor::daemon();
        for _ in 0..2 {
            let (case, _) = shared
                .execute(&actor, |b, now, out| b.create(now, "ana", "Bob", "", out))
                .await
                .unwrap();
            let code = case.code.to_string();
            shared
                .execute(&actor, |b, now, out| {
                    b.close(now, Closer::Expert("ana"), &code, out)
                })
                .await
                .unwrap();
        }
        let window = shared.report_window(2);
        let reports = shared.reports(window, 5).await.unwrap();
        let today = reports.outcomes.last().unwrap();
        assert_eq!(
            (today.day, today.closed, today.deleted),
            (Timestamp(30 * DAY_MS), 2, 0)
        );
        assert_eq!(reports.outcomes.len(), 2);
        // Made by an expert: no response target, so no first response to report.
        assert!(reports.first_responses.iter().all(|row| row.cases == 0));

        tokio::time::advance(Duration::from_secs(2 * 3600)).await;
        assert_eq!(super::super::retention::sweep(&shared).await.unwrap(), 2);
        let reports = shared.reports(window, 5).await.unwrap();
        let today = reports.outcomes.last().unwrap();
        assert_eq!(
            (today.closed, today.deleted),
            (0, 0),
            "retention is not deleting"
        );
    }
}
