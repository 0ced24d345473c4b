//! Small SVG charts for the web console's Reports page, rendered on the server as strings:
//! a bar chart, a stacked bar chart (days × outcomes, with a legend) and a line chart
//! (points over time). Pure functions: data in, SVG text out. The Reports page's charts
//! from the store's report types are ready made (`first_response_chart`, ...).
//!
//! The page's Content-Security-Policy forbids inline scripts and style attributes, so the
//! SVG has neither: colours, sizes and alignment are presentation attributes (`fill`,
//! `stroke`, `font-size`, `text-anchor`) and every element a stylesheet may want has a
//! `class`. The value of a bar shows on hover through its `<title>`, which needs no script.
//! Every label is user data (expert names) and goes through [`escape`], so it can never
//! become markup. Nothing is drawn for empty data but a frame saying so
//! ([`NO_DATA`]).

mod reports;

use std::fmt::Write;

use sosq::protocol::Timestamp;

pub use reports::{
    experts_chart, first_response_chart, outcomes_chart, queue_chart, within_target_chart,
};

/// A chart's width, in px (the `viewBox` too: the page may scale it).
pub const WIDTH: u32 = 640;
/// A chart's height, in px.
pub const HEIGHT: u32 = 260;
/// What a chart without data says.
pub const NO_DATA: &str = "no data in this period";

/// Room for the value ticks, and for the first slanted label's run to the left.
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
/// Room for slanted labels of [`MAX_LABEL_CHARS`].
const BOTTOM: f64 = 80.0;
const PLOT_WIDTH: f64 = WIDTH as f64 - LEFT - RIGHT;
const PLOT_HEIGHT: f64 = HEIGHT as f64 - TOP - BOTTOM;
/// The baseline's y.
const BASE: f64 = TOP + PLOT_HEIGHT;
/// The longest label drawn, in characters; the whole label is in the bar's `<title>`.
const MAX_LABEL_CHARS: usize = 14;
/// The most x-axis labels drawn; with more columns, every k-th is labelled.
const MAX_X_LABELS: usize = 16;
/// The colour of bars and lines of a single series.
const INK: &str = "#1565c0";
/// The colours of the series of a stacked chart, in order (then again from the start).
pub const SERIES_COLOURS: [&str; 6] = [
    "#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#00838f", "#5d4037",
];

/// `text` made safe inside XML text and attribute values: `& < > " '` as entities, and
/// the control characters XML 1.0 cannot carry at all as U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A UTC day as `YYYY-MM-DD` (`at` in ms since the epoch).
pub fn utc_day(at: Timestamp) -> String {
    rfc3339(at)[..10].to_string()
}

/// A UTC time as `MM-DD HH:MM` (`at` in ms since the epoch).
pub fn utc_minute(at: Timestamp) -> String {
    let text = rfc3339(at);
    format!("{} {}", &text[5..10], &text[11..16])
}

fn rfc3339(at: Timestamp) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.0);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// One series of a [`stacked_bar_chart`]: its name (for the legend) and one value per
/// column.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// The name in the legend and in each part's hover text.
    pub name: &'a str,
    /// One value per column; a missing one counts 0.
    pub values: &'a [u64],
}

/// A bar chart: one bar per `(label, value)`, in the order given, with value ticks on the
/// left; hovering a bar shows `label: value unit`. `unit` may be empty. All-zero or no
/// bars draw the [`NO_DATA`] chart.
pub fn bar_chart<S: AsRef<str>>(title: &str, bars: &[(S, u64)], unit: &str) -> String {
    let max = bars.iter().map(|(_, value)| *value).max().unwrap_or(0);
    if max == 0 {
        return empty(title, "bar");
    }
    let mut svg = open(title, "bar");
    axes(&mut svg, max);
    let band = PLOT_WIDTH / bars.len() as f64;
    svg.push_str("<g class=\"bars\">");
    for (i, (label, value)) in bars.iter().enumerate() {
        let label = label.as_ref();
        let x = LEFT + band * i as f64 + band * 0.15;
        let height = scaled(*value, max);
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{INK}\"><title>{}</title></rect>",
            BASE - height,
            band * 0.7,
            escape(&hover(label, *value, unit)),
        );
    }
    svg.push_str("</g>");
    let labels: Vec<&str> = bars.iter().map(|(label, _)| label.as_ref()).collect();
    x_labels(&mut svg, &labels, band);
    close(svg)
}

/// A stacked bar chart: one column per label in `columns` (days, say), each stacking the
/// series' values bottom up in the order given, a legend of the series on top; hovering
/// a part shows `column, series: value`. All-zero or no data draws the [`NO_DATA`] chart.
pub fn stacked_bar_chart<S: AsRef<str>>(
    title: &str,
    columns: &[S],
    series: &[Series<'_>],
) -> String {
    let value = |s: &Series<'_>, column: usize| s.values.get(column).copied().unwrap_or(0);
    let totals: Vec<u64> = (0..columns.len())
        .map(|column| series.iter().map(|s| value(s, column)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return empty(title, "stacked");
    }
    let mut svg = open(title, "stacked");
    legend(&mut svg, series);
    axes(&mut svg, max);
    let band = PLOT_WIDTH / columns.len() as f64;
    svg.push_str("<g class=\"bars\">");
    for (column, label) in columns.iter().enumerate() {
        let x = LEFT + band * column as f64 + band * 0.15;
        let mut below = 0;
        for (i, s) in series.iter().enumerate() {
            let part = value(s, column);
            if part == 0 {
                continue;
            }
            let bottom = BASE - scaled(below, max);
            below += part;
            let top = BASE - scaled(below, max);
            let _ = write!(
                svg,
                "<rect class=\"bar series-{i}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}</title></rect>",
                band * 0.7,
                bottom - top,
                colour(i),
                escape(&hover(&format!("{}, {}", label.as_ref(), s.name), part, "")),
            );
        }
    }
    svg.push_str("</g>");
    let labels: Vec<&str> = columns.iter().map(AsRef::as_ref).collect();
    x_labels(&mut svg, &labels, band);
    close(svg)
}

/// A line chart of `points` (time in ms since the epoch, value) in time order, the time
/// axis labelled in UTC (by day when the points cross midnight, else by time of day);
/// hovering shows the nearest point's time and value, the line's own hover text its peak. `unit` may be empty. No points or all-zero draws
/// the [`NO_DATA`] chart.
pub fn line_chart(title: &str, points: &[(Timestamp, u64)], unit: &str) -> String {
    let max = points.iter().map(|(_, value)| *value).max().unwrap_or(0);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return empty(title, "line");
    };
    if max == 0 {
        return empty(title, "line");
    }
    let mut svg = open(title, "line");
    axes(&mut svg, max);
    let span = last.0 .0.saturating_sub(first.0 .0).max(1) as f64;
    let x_of = |at: Timestamp| LEFT + at.0.saturating_sub(first.0 .0) as f64 / span * PLOT_WIDTH;
    let line: Vec<String> = points
        .iter()
        .map(|(at, value)| format!("{:.1},{:.1}", x_of(*at), BASE - scaled(*value, max)))
        .collect();
    // A transparent strip around each point shows its value on hover, without a script.
    svg.push_str("<g class=\"hover\" fill=\"#000\" fill-opacity=\"0\">");
    let strip = PLOT_WIDTH / points.len() as f64;
    for (at, value) in points {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{strip:.1}\" height=\"{PLOT_HEIGHT}\"><title>{}</title></rect>",
            (x_of(*at) - strip / 2.0).max(LEFT),
            escape(&hover(&format!("{} UTC", utc_minute(*at)), *value, unit)),
        );
    }
    svg.push_str("</g>");
    let peak = points
        .iter()
        .find(|(_, value)| *value == max)
        .map_or(first.0, |(at, _)| *at);
    let _ = write!(
        svg,
        "<polyline class=\"line\" points=\"{}\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"2\"><title>{}</title></polyline>",
        line.join(" "),
        escape(&hover(&format!("peak at {} UTC", utc_minute(peak)), max, unit)),
    );
    // Ticks at midnights when there are at least two, else spread over the points.
    let midnights: Vec<Timestamp> = points
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| at.0 % 86_400_000 == 0)
        .collect();
    let (ticks, label): (Vec<Timestamp>, fn(Timestamp) -> String) = if midnights.len() >= 2 {
        (every_kth(&midnights, 7), |at| utc_day(at)[5..].to_string())
    } else {
        let all: Vec<Timestamp> = points.iter().map(|(at, _)| *at).collect();
        (every_kth(&all, 6), |at| utc_minute(at)[6..].to_string())
    };
    svg.push_str("<g class=\"x-labels\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">");
    for at in ticks {
        let x = x_of(at);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{BASE:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#888\"/><text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
            BASE + 4.0,
            BASE + 18.0,
            escape(&label(at)),
        );
    }
    svg.push_str("</g>");
    close(svg)
}

/// Every k-th of `all`, k chosen so that at most `most` are left.
fn every_kth<T: Copy>(all: &[T], most: usize) -> Vec<T> {
    let k = all.len().div_ceil(most.max(1)).max(1);
    all.iter().step_by(k).copied().collect()
}

/// `value` as a height in the plot, `max` reaching its top.
fn scaled(value: u64, max: u64) -> f64 {
    value as f64 / max.max(1) as f64 * PLOT_HEIGHT
}

fn hover(label: &str, value: u64, unit: &str) -> String {
    format!("{label}: {value} {unit}").trim_end().to_string()
}

fn colour(series: usize) -> &'static str {
    SERIES_COLOURS[series % SERIES_COLOURS.len()]
}

/// A label cut to [`MAX_LABEL_CHARS`], marked with `…` when cut.
fn shortened(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_string();
    }
    let mut cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The opening of a chart of kind `kind`, with its title (for screen readers and on top).
fn open(title: &str, kind: &str) -> String {
    let title = escape(title);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart chart-{kind}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" font-family=\"sans-serif\" font-size=\"12\"><title>{title}</title><text class=\"chart-title\" x=\"{LEFT}\" y=\"20\" font-size=\"14\" font-weight=\"bold\" fill=\"#222\">{title}</text>"
    )
}

fn close(mut svg: String) -> String {
    svg.push_str("</svg>");
    svg
}

/// A chart that says it has nothing to show.
fn empty(title: &str, kind: &str) -> String {
    let mut svg = open(title, kind);
    let _ = write!(
        svg,
        "<rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" fill=\"none\" stroke=\"#ccc\"/><text class=\"chart-empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">{NO_DATA}</text>",
        LEFT + PLOT_WIDTH / 2.0,
        TOP + PLOT_HEIGHT / 2.0,
    );
    close(svg)
}

/// The step between value ticks: 1, 2 or 5 times a power of ten, for at most 5 ticks
/// above zero up to `max`.
fn tick_step(max: u64) -> u64 {
    let mut power = 1u64;
    loop {
        for step in [power, power.saturating_mul(2), power.saturating_mul(5)] {
            if step.saturating_mul(5) >= max {
                return step;
            }
        }
        power = power.saturating_mul(10);
    }
}

/// The value axis (ticks and grid lines from 0 to at most `max`) and the baseline.
fn axes(svg: &mut String, max: u64) {
    let step = tick_step(max);
    svg.push_str("<g class=\"y-axis\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">");
    let mut tick = 0;
    while tick <= max {
        let y = BASE - scaled(tick, max);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/><text x=\"{:.1}\" y=\"{:.1}\">{tick}</text>",
            LEFT + PLOT_WIDTH,
            LEFT - 6.0,
            y + 4.0,
        );
        match tick.checked_add(step) {
            Some(next) => tick = next,
            None => break,
        }
    }
    let _ = write!(
        svg,
        "</g><line class=\"baseline\" x1=\"{LEFT}\" y1=\"{BASE:.1}\" x2=\"{:.1}\" y2=\"{BASE:.1}\" stroke=\"#888\"/>",
        LEFT + PLOT_WIDTH,
    );
}

/// Labels under columns `band` px wide: level when they fit, slanted when not, every k-th
/// when there are more than [`MAX_X_LABELS`].
fn x_labels(svg: &mut String, labels: &[&str], band: f64) {
    let k = labels.len().div_ceil(MAX_X_LABELS).max(1);
    let widest = labels
        .iter()
        .map(|label| shortened(label).chars().count())
        .max()
        .unwrap_or(0);
    // About 6.5 px per character at 11 px.
    let slanted = widest as f64 * 6.5 > band * k as f64;
    svg.push_str("<g class=\"x-labels\" font-size=\"11\" fill=\"#555\">");
    for (i, label) in labels.iter().enumerate().step_by(k) {
        let x = LEFT + band * (i as f64 + 0.5);
        let y = BASE + 16.0;
        let text = escape(&shortened(label));
        let _ = if slanted {
            write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"end\" transform=\"rotate(-35 {x:.1} {y:.1})\">{text}</text>"
            )
        } else {
            write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{text}</text>"
            )
        };
    }
    svg.push_str("</g>");
}

/// A legend of `series` in the top margin, right of the title's start.
fn legend(svg: &mut String, series: &[Series<'_>]) {
    svg.push_str("<g class=\"legend\" font-size=\"11\" fill=\"#333\">");
    let mut x = WIDTH as f64 / 2.0;
    for (i, s) in series.iter().enumerate() {
        let name = shortened(s.name);
        let _ = write!(
            svg,
            "<rect class=\"series-{i}\" x=\"{x:.1}\" y=\"10\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"19\">{}</text>",
            colour(i),
            x + 14.0,
            escape(&name),
        );
        x += 24.0 + name.chars().count() as f64 * 6.5;
    }
    svg.push_str("</g>");
}

#[cfg(test)]
mod tests;
