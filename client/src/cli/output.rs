//! What the CLI tells its user: one-line status messages on stderr (JSON lines with
//! `--json`), and tables or JSON for listing commands on stdout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sosq::protocol::{
    CaseInfo, CaseState, HistoryEntry, HistoryKind, QueueEntry, QueuePage, Timestamp,
};
use sosq::SessionCode;

/// Where and how to report.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Machine-readable output.
    pub json: bool,
}

impl Output {
    /// A status line on stderr: `human` for people, `{"event": event, ..fields}` for programs.
    pub fn status(&self, event: &str, human: impl AsRef<str>, fields: Value) {
        if self.json {
            let mut line = json!({ "event": event });
            if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
                line.extend(fields);
            }
            eprintln!("{line}");
        } else {
            eprintln!("{}", human.as_ref());
        }
    }

    /// The one-line failure reason, with its stable machine `code` for programs (see
    /// `sosq::ClientError::code`).
    pub fn error(&self, code: &str, message: &str) {
        self.status(
            "error",
            format!("sosq: error: {message}"),
            json!({ "code": code, "message": message }),
        );
    }

    /// Prints a listing result on stdout.
    pub fn print(&self, human: String, value: Value) {
        if self.json {
            stdout_line(value);
        } else if !human.is_empty() {
            stdout_line(human.trim_end());
        }
    }
}

/// Writes one line of a command's answer to stdout. A reader that went away (`sosq queue |
/// head -3`) ends `sosq` quietly and successfully, as other command-line tools do, rather
/// than with a panic (`println!` panics on a broken pipe); another write error ends it
/// with that error on stderr and status 1.
pub fn stdout_line(line: impl std::fmt::Display) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sosq: cannot write the answer to stdout: {error}");
        std::process::exit(1);
    }
}

/// `2026-11-25T20:14:03Z`.
pub fn clock_time(at: Timestamp) -> String {
    at.rfc3339()
}

/// "3m 12s" since `at`, by this machine's clock.
pub fn age(at: Timestamp) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let seconds = now.saturating_sub(at.0) / 1000;
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// "4m 10s" until `due`, or "overdue".
pub fn time_left(due: Timestamp) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    if now >= due.0 {
        "overdue".into()
    } else {
        humantime::format_duration(Duration::from_secs((due.0 - now) / 1000)).to_string()
    }
}

/// One page of the queue as a table, with how many wait online and offline.
pub fn queue_table(page: &QueuePage) -> String {
    if page.entries.is_empty() {
        return match page.offline {
            0 => "nobody is waiting in the queues you see".into(),
            n => format!("nobody is waiting online in the queues you see ({n} offline)"),
        };
    }
    let mut table = queue_rows(&page.entries, true);
    table.push_str(&format!(
        "{} waiting online, {} offline\n",
        page.online, page.offline
    ));
    table
}

/// Queue entries as table rows, with the header line if `header`. POS is the place in the
/// case's own queue (its TEAM's, or ASSIGNED's when it is assigned to one expert), the
/// number its customer was told; rows are in pull order across the queues shown.
pub fn queue_rows(entries: &[QueueEntry], header: bool) -> String {
    let mut table = String::new();
    if header {
        table.push_str(&format!(
            "{:<4} {:<13} {:<12} {:<12} {:<9} {:<20} {:<12} {:<12} {:<7} {}\n",
            "POS",
            "CODE",
            "TEAM",
            "ASSIGNED",
            "PRIORITY",
            "CUSTOMER",
            "WAITING",
            "RESPOND IN",
            "ONLINE",
            "DESCRIPTION"
        ));
    }
    for e in entries {
        table.push_str(&format!(
            "{:<4} {:<13} {:<12} {:<12} {:<9} {:<20} {:<12} {:<12} {:<7} {}\n",
            e.position
                .map_or_else(|| "-".to_string(), |p| p.to_string()),
            e.code.to_string(),
            truncate(&e.group, 12),
            truncate(e.assigned_to.as_deref().unwrap_or("-"), 12),
            e.priority.as_str(),
            truncate(&e.customer, 20),
            age(e.waiting_since),
            time_left(e.response_due),
            if e.online { "yes" } else { "no" },
            e.description
        ));
    }
    table
}

/// Cases as a table.
pub fn cases_table(cases: &[CaseInfo]) -> String {
    if cases.is_empty() {
        return "no cases".into();
    }
    cases_rows(cases, true)
}

/// Cases as table rows, with the header line if `header`.
pub fn cases_rows(cases: &[CaseInfo], header: bool) -> String {
    let mut table = String::new();
    if header {
        table.push_str(&format!(
            "{:<13} {:<12} {:<20} {:<21} {:<21} {}\n",
            "CODE", "STATE", "CUSTOMER", "CREATED", "UPDATED", "DESCRIPTION"
        ));
    }
    for c in cases {
        table.push_str(&format!(
            "{:<13} {:<12} {:<20} {:<21} {:<21} {}\n",
            c.code.to_string(),
            c.state.as_str(),
            truncate(&c.customer, 20),
            clock_time(c.created_at),
            clock_time(c.updated_at),
            c.description
        ));
    }
    table
}

/// One case in full, with `history` (empty: not shown). An open case says when it
/// expires and when it should be answered; an ended one when it was closed or expired
/// instead. Lines with nothing to say (no description) are left out.
pub fn case_details(case: &CaseInfo, history: &[HistoryEntry]) -> String {
    let mut text = format!(
        "case {}: {} ({} priority)\ncustomer: {}{}\n",
        case.code,
        case.state,
        case.priority,
        case.customer,
        if case.customer_online {
            " (online)"
        } else {
            ""
        },
    );
    if !case.description.is_empty() {
        text.push_str(&format!("description: {}\n", case.description));
    }
    text.push_str(&format!("created: {}\n", clock_time(case.created_at)));
    let open = case.state.is_open();
    if open {
        text.push_str(&format!("expires: {}\n", clock_time(case.expires_at)));
    } else {
        // An ended case changes state no more: its last change is its end.
        text.push_str(&format!(
            "{}: {}\n",
            case.state,
            clock_time(case.updated_at)
        ));
    }
    match (case.response_due, case.response_target_met) {
        (Some(_), Some(true)) => text.push_str("response target: met\n"),
        (Some(_), Some(false)) => text.push_str("response target: missed\n"),
        (Some(due), None) if open => text.push_str(&format!("respond by: {}\n", clock_time(due))),
        (Some(_), None) => text.push_str("first response: none\n"),
        _ => {}
    }
    if let Some(expert) = &case.expert {
        text.push_str(&format!("expert: {expert} (online)\n"));
    }
    if let Some(message) = &case.last_message {
        text.push_str(&format!("latest message: {message}\n"));
    }
    if case.attachments > 0 {
        text.push_str(&format!(
            "attachments: {} (sosq attachments {})\n",
            case.attachments, case.code
        ));
    }
    if history.is_empty() {
        return text;
    }
    text.push_str("history:\n");
    for entry in history {
        text.push_str(&format!(
            "  {}  {:<12} {}\n",
            clock_time(entry.at),
            entry.state.as_str(),
            what(entry, true)
        ));
    }
    text
}

/// What an entry says, for people: its words, a staff note marked as one (its words alone
/// would read like an event), naming its author where no column does (`with_who`).
fn what(entry: &HistoryEntry, with_who: bool) -> String {
    if entry.kind != HistoryKind::Note {
        return entry.event.clone();
    }
    match (&entry.actor, with_who) {
        (Some(actor), true) => format!("note by {actor}: {}", entry.event),
        _ => format!("note: {}", entry.event),
    }
}

/// A case's history as a table: when, state after, who, from where, what.
pub fn history_table(code: SessionCode, state: CaseState, entries: &[HistoryEntry]) -> String {
    let mut table = format!(
        "case {code}: {state}\n{:<21} {:<12} {:<20} {:<22} {}\n",
        "WHEN", "STATE", "WHO", "FROM", "WHAT"
    );
    for entry in entries {
        table.push_str(&format!(
            "{:<21} {:<12} {:<20} {:<22} {}\n",
            clock_time(entry.at),
            entry.state.as_str(),
            truncate(
                &entry
                    .actor
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |actor| actor.to_string()),
                20
            ),
            entry.address.as_deref().unwrap_or("-"),
            what(entry, false)
        ));
    }
    table
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}
