//! The listing commands: `queue` (and `--watch`), `cases`, `history` and `status`. Lists
//! come from the daemon in pages; a command shows one page and says how to get the next
//! (`--after TOKEN`), or every page with `--all`, printing each as it arrives so nothing
//! here grows with the number of cases either.

use clap::Args;
use serde_json::json;
use sosq::protocol::{
    CasesCursor, Event, HistoryEntry, HistoryPage, QueueCursor, QueuePage, Reply, Request, Role,
    Timestamp,
};
use sosq::{Client, ClientError};

use super::output::{self, Output};
use super::shapes;
use super::unexpected;

/// How much of a list to show.
#[derive(Args, Debug, Clone, Default)]
pub struct Paging {
    /// Most entries per page (default 100, at most 1000).
    #[arg(long, default_value_t = 0, hide_default_value = true, value_name = "N")]
    pub limit: u32,
    /// Start after this page token (printed after the previous page).
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub after: Option<String>,
    /// Fetch and print every page.
    #[arg(long)]
    pub all: bool,
}

/// `sosq queue`: one page of the waiting cases (or all with `--all`).
pub async fn queue(client: &mut Client, out: &Output, paging: Paging) -> Result<(), ClientError> {
    let mut after = parse_token::<QueueCursor>(paging.after.as_deref())?;
    let mut first = true;
    loop {
        let request = Request::Queue {
            after,
            limit: paging.limit,
        };
        let Reply::Queue(page) = client.request(request).await? else {
            return Err(unexpected());
        };
        if paging.all {
            print_queue_rows(out, &page, first);
        } else {
            out.print(
                output::queue_table(&page),
                with_token(json!(page), page.next),
            );
        }
        first = false;
        match page.next {
            Some(next) if paging.all => after = Some(next),
            Some(next) => {
                let limit = limit_flag(paging.limit);
                more(
                    out,
                    &format!("sosq queue{limit} --after {next}"),
                    next.to_string(),
                );
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

/// A page's JSON with `after`: the token `--after` takes for the next page (the `next`
/// field is the cursor itself, for programs that speak the protocol).
fn with_token(
    mut page: serde_json::Value,
    next: Option<impl std::fmt::Display>,
) -> serde_json::Value {
    if let (Some(fields), Some(next)) = (page.as_object_mut(), next) {
        fields.insert("after".into(), json!(next.to_string()));
    }
    page
}

fn print_queue_rows(out: &Output, page: &QueuePage, header: bool) {
    if out.json {
        for entry in &page.entries {
            super::output::stdout_line(json!(entry));
        }
    } else {
        let table = if header && page.entries.is_empty() {
            output::queue_table(page)
        } else {
            output::queue_rows(&page.entries, header)
        };
        if !table.is_empty() {
            super::output::stdout_line(table.trim_end());
        }
    }
}

/// `sosq queue --watch`: the first page, then again on every change, until Ctrl-C.
pub async fn watch_queue(mut client: Client, out: Output, limit: u32) -> Result<(), ClientError> {
    let Reply::Queue(page) = client.request(Request::WatchQueue { limit }).await? else {
        return Err(unexpected());
    };
    // Taken after the request: a redirect would have moved the client to another
    // connection, whose events these are (they wait in the channel until taken).
    let mut events = client.take_events().ok_or_else(unexpected)?;
    out.print(output::queue_table(&page), json!(page));
    let interrupted = super::signals::interrupted();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::QueueChanged(page)) => {
                    let stamp = output::clock_time(Timestamp::now());
                    out.print(format!("\n-- {stamp}\n{}", output::queue_table(&page)), json!(page));
                }
                Some(_) => {}
                None => {
                    return Err(match client.connection().close_reason() {
                        Some(reason) => ClientError::closed(&reason),
                        None => ClientError::Disconnected("the server closed the connection".into()),
                    });
                }
            },
            _ = &mut interrupted => {
                client.close().await;
                return Ok(());
            }
        }
    }
}

/// `sosq cases`: one page of the stored cases (or all with `--all`).
pub async fn cases(
    client: &mut Client,
    out: &Output,
    filter: super::filters::FilterArgs,
    paging: Paging,
) -> Result<(), ClientError> {
    let wire = filter.filter()?;
    let mut after = parse_token::<CasesCursor>(paging.after.as_deref())?;
    let mut first = true;
    loop {
        let request = Request::Cases {
            filter: wire.clone(),
            after,
            limit: paging.limit,
        };
        let Reply::Cases(page) = client.request(request).await? else {
            return Err(unexpected());
        };
        if paging.all {
            if out.json {
                for case in &page.cases {
                    super::output::stdout_line(shapes::case(case));
                }
            } else {
                let table = if first && page.cases.is_empty() {
                    "no cases".to_string()
                } else {
                    output::cases_rows(&page.cases, first)
                };
                if !table.is_empty() {
                    super::output::stdout_line(table.trim_end());
                }
            }
        } else {
            out.print(
                output::cases_table(&page.cases),
                with_token(shapes::cases_page(&page), page.next),
            );
        }
        first = false;
        match page.next {
            Some(next) if paging.all => after = Some(next),
            Some(next) => {
                let flags = filter.flags();
                let limit = limit_flag(paging.limit);
                more(
                    out,
                    &format!("sosq cases{flags}{limit} --after {next}"),
                    next.to_string(),
                );
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

/// `sosq history CODE`: every page of the case's history (it is bounded per case).
pub async fn history(client: &mut Client, out: &Output, code: String) -> Result<(), ClientError> {
    let (page, entries) = whole_history(client, &code).await?;
    out.print(
        output::history_table(page.code, page.state, &entries),
        json!({ "code": page.code, "state": page.state, "history": entries }),
    );
    Ok(())
}

/// `sosq status CODE`: the case, with its history for staff (customers see their case
/// only).
pub async fn status(
    client: &mut Client,
    out: &Output,
    code: String,
    secret: Option<String>,
) -> Result<(), ClientError> {
    let reply = client
        .request(Request::Status {
            code: code.clone(),
            resume_secret: secret,
        })
        .await?;
    let Reply::Case(case) = reply else {
        return Err(unexpected());
    };
    let history = if client.role() == Role::Customer {
        Vec::new()
    } else {
        whole_history(client, &case.code.to_string()).await?.1
    };
    let mut value = shapes::case(&case);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("history".into(), json!(history));
    }
    out.print(output::case_details(&case, &history), value);
    Ok(())
}

/// Every entry of a case's history, page by page.
async fn whole_history(
    client: &mut Client,
    code: &str,
) -> Result<(HistoryPage, Vec<HistoryEntry>), ClientError> {
    let mut entries = Vec::new();
    let mut from = 0;
    loop {
        let request = Request::History {
            code: code.to_string(),
            from,
            limit: sosq::protocol::MAX_PAGE_ITEMS,
        };
        let Reply::History(mut page) = client.request(request).await? else {
            return Err(unexpected());
        };
        entries.append(&mut page.entries);
        match page.next {
            Some(next) if next > from => from = next,
            _ => return Ok((page, entries)),
        }
    }
}

/// ` --limit N` when the user gave one, so the next page is as long as this one.
fn limit_flag(limit: u32) -> String {
    match limit {
        0 => String::new(),
        n => format!(" --limit {n}"),
    }
}

/// The line after a page when there are more: how to get the next one.
fn more(out: &Output, command: &str, token: String) {
    out.status(
        "more",
        format!("more: {command} (or --all for every page)"),
        json!({ "next": token }),
    );
}

fn parse_token<T: std::str::FromStr<Err = String>>(
    token: Option<&str>,
) -> Result<Option<T>, ClientError> {
    token
        .map(|token| token.parse().map_err(ClientError::Options))
        .transpose()
}
