//! The Reports page's charts from the store's report types (`store::reports`): what the
//! web layer calls, so the choice of units and labels is made once.

use crate::store::reports::{DayOutcomes, ExpertsReport, FirstResponse, QueueSeries};

use super::{bar_chart, line_chart, stacked_bar_chart, utc_day, Series};

/// The median time to first response per priority, in seconds (a priority nobody was
/// answered in shows no bar).
pub fn first_response_chart(rows: &[FirstResponse]) -> String {
    let bars: Vec<(&str, u64)> = rows
        .iter()
        .map(|row| (row.priority.as_str(), row.median_ms.unwrap_or(0) / 1_000))
        .collect();
    bar_chart("Median time to first response", &bars, "s")
}

/// The share of cases per priority answered within their target, in percent (rounded
/// down) of all the priority's cases: an unanswered case counts as missed.
pub fn within_target_chart(rows: &[FirstResponse]) -> String {
    let bars: Vec<(&str, u64)> = rows
        .iter()
        .map(|row| {
            let share = row.within_target.saturating_mul(100).checked_div(row.cases);
            let share = share.unwrap_or(0);
            (row.priority.as_str(), share)
        })
        .collect();
    bar_chart("First responses within target", &bars, "%")
}

/// Cases closed, expired and deleted per day, stacked, days labelled `MM-DD` (UTC).
pub fn outcomes_chart(days: &[DayOutcomes]) -> String {
    let columns: Vec<String> = days
        .iter()
        .map(|day| utc_day(day.day)[5..].to_string())
        .collect();
    let closed: Vec<u64> = days.iter().map(|day| day.closed).collect();
    let expired: Vec<u64> = days.iter().map(|day| day.expired).collect();
    let deleted: Vec<u64> = days.iter().map(|day| day.deleted).collect();
    stacked_bar_chart(
        "Cases per day by outcome",
        &columns,
        &[
            Series {
                name: "closed",
                values: &closed,
            },
            Series {
                name: "expired",
                values: &expired,
            },
            Series {
                name: "deleted",
                values: &deleted,
            },
        ],
    )
}

/// How many cases waited for a first response, over the window.
pub fn queue_chart(series: &QueueSeries) -> String {
    let points: Vec<_> = series.points.iter().map(|p| (p.at, p.waiting)).collect();
    line_chart("Cases waiting for a first response", &points, "waiting")
}

/// Cases per expert, the busiest first, the rest as one last bar ("N others").
pub fn experts_chart(report: &ExpertsReport) -> String {
    let mut bars: Vec<(String, u64)> = report
        .top
        .iter()
        .map(|row| (row.expert.clone(), row.cases))
        .collect();
    if report.others > 0 {
        bars.push((format!("{} others", report.other_experts), report.others));
    }
    bar_chart("Cases per expert", &bars, "cases")
}

#[cfg(test)]
mod tests {
    use sosq::protocol::{Priority, Timestamp};

    use super::*;
    use crate::store::reports::{ExpertCases, QueuePoint};

    #[test]
    fn report_charts_carry_their_figures() {
        let row = |priority, cases, within_target, median_ms| FirstResponse {
            priority,
            cases,
            responded: cases,
            within_target,
            median_ms,
        };
        let rows = [
            row(Priority::Critical, 4, 3, Some(90_500)),
            row(Priority::Low, 0, 0, None),
        ];
        assert!(first_response_chart(&rows).contains("<title>critical: 90 s</title>"));
        assert!(within_target_chart(&rows).contains("<title>critical: 75 %</title>"));
        let day = DayOutcomes {
            day: Timestamp(86_400_000),
            closed: 2,
            expired: 1,
            deleted: 0,
        };
        let svg = outcomes_chart(&[day]);
        assert!(svg.contains("<title>01-02, expired: 1</title>"), "{svg}");
        let series = QueueSeries {
            step_ms: 3_600_000,
            points: vec![QueuePoint {
                at: Timestamp(0),
                waiting: 3,
            }],
        };
        assert!(queue_chart(&series).contains("UTC: 3 waiting</title>"));
        let report = ExpertsReport {
            top: vec![ExpertCases {
                expert: "<ana>".into(),
                cases: 5,
            }],
            others: 4,
            other_experts: 2,
        };
        let svg = experts_chart(&report);
        assert!(svg.contains("<title>&lt;ana&gt;: 5 cases</title>"), "{svg}");
        assert!(svg.contains("<title>2 others: 4 cases</title>"), "{svg}");
    }
}
