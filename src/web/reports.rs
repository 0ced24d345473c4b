//! The admin's reports: first response against target per priority, cases per day by
//! outcome, queue length over time, cases per expert, over the last N days. Computed by
//! the store's report queries (`crate::store::reports`), drawn server-side as SVG by
//! `crate::charts` (every label escaped; no script, no inline style).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::auth::Staff;
use super::layout::{page, PageError};
use super::WebState;
use crate::charts;

/// The longest period the page offers, in days (the store caps a window at 92).
const MAX_DAYS: u32 = 92;

/// The period shown.
#[derive(Debug, Deserialize)]
pub struct Period {
    /// Whole UTC days up to and including today.
    #[serde(default = "default_days")]
    days: u32,
}

fn default_days() -> u32 {
    14
}

/// `GET /admin/reports`.
pub async fn show(
    State(state): State<Arc<WebState>>,
    staff: Staff,
    Query(period): Query<Period>,
) -> Result<Markup, PageError> {
    staff.require_admin("reports")?;
    let days = period.days.clamp(1, MAX_DAYS);
    let window = state.shared.report_window(days);
    let reports = state
        .shared
        .reports(window, crate::server::TOP_EXPERTS)
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // The charts escape every label themselves (`charts::escape`), so their SVG goes in as is.
    let svg = |text: String| PreEscaped(text);
    Ok(page(
        "Reports",
        Some(&staff.viewer()),
        None,
        html! {
            form.filters method="get" action="/admin/reports" {
                label { "Last " input type="number" name="days" min="1" max=(MAX_DAYS) value=(days); " days" }
                button type="submit" { "Show" }
            }
            section #report-first-response {
                h2 { "First response against target, per priority" }
                (svg(charts::first_response_chart(&reports.first_responses)))
                (svg(charts::within_target_chart(&reports.first_responses)))
                table {
                    thead { tr { th { "Priority" } th { "Cases" } th { "Responded" } th { "Within target" } th { "Median first response" } } }
                    tbody {
                        @for row in &reports.first_responses {
                            tr {
                                td { (row.priority) } td { (row.cases) } td { (row.responded) } td { (row.within_target) }
                                td { @match row.median_ms { Some(ms) => (humantime::format_duration(std::time::Duration::from_secs(ms / 1000))), None => "—" } }
                            }
                        }
                    }
                }
            }
            section #report-outcomes {
                h2 { "Cases per day by outcome" }
                (svg(charts::outcomes_chart(&reports.outcomes)))
            }
            section #report-queue {
                h2 { "Queue length over time" }
                (svg(charts::queue_chart(&reports.queue)))
            }
            section #report-experts {
                h2 { "Cases per expert" }
                (svg(charts::experts_chart(&reports.experts)))
            }
        },
    ))
}
