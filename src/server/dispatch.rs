//! From a request to a reply: the role check (`roles.rs`), then the core command, then the
//! answer.

use std::net::SocketAddr;

use sosq::protocol::{
    page_items, ActorRole, Assignee, CaseInfo, CasesCursor, CasesPage, DeleteSelector, HistoryPage,
    QueueCursor, QueuePage, Reply, Request, Role, Timestamp,
};
use sosq::SessionCode;

use super::commands::{self, Route};
use super::roles::authorize;
use super::{deletion, ServerError, Shared};
use crate::broker::{
    Actor, AuditEntry, BrokerError, CaseSelection, Effect, PartyId, Persist, QueueViewer, GENERAL,
    MAX_NAME_CHARS,
};
use crate::store::CommitReport;

/// Who sent the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The connection.
    pub party: PartyId,
    /// Its role, fixed at hello.
    pub role: Role,
    /// The staff member's name (empty for customers).
    pub name: String,
    /// The staff account, to re-check it is not revoked.
    pub user: Option<crate::store::users::User>,
    /// Where the connection comes from.
    pub address: SocketAddr,
    /// Which way in the request came: the QUIC protocol or the web console.
    pub channel: Channel,
}

/// Which way in a request came. Both run the same role matrix and the same core; the
/// history and audit log say which one it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The QUIC protocol (`sosq`, or any client speaking it).
    Quic,
    /// The web console, signed in with a staff token (or a public page).
    Console,
    /// A customer's browser (`/help`), through the web front's in-process party.
    Browser,
}

impl Caller {
    /// The teams whose queues this caller works (`general` for experts without a group).
    pub fn teams(&self) -> Vec<String> {
        self.user
            .as_ref()
            .map(|user| user.teams())
            .unwrap_or_else(|| vec![GENERAL.to_string()])
    }

    /// Who this caller is in a case's history: "expert ana", "admin root", "customer" (named
    /// after its case when stamped).
    pub fn actor(&self) -> Actor {
        let who = match self.role {
            Role::Customer => sosq::protocol::Actor {
                role: ActorRole::Customer,
                name: None,
            },
            role => sosq::protocol::Actor::new(role.into(), self.name.clone()),
        };
        let address = match self.channel {
            Channel::Quic => self.address.to_string(),
            Channel::Console => format!("{} via console", self.address),
            Channel::Browser => format!("{} via browser", self.address),
        };
        Actor {
            who,
            address: Some(address),
        }
    }
}

/// Answers one request; refusals become [`Reply::Error`].
pub async fn handle(shared: &Shared, caller: &Caller, request: Request) -> Reply {
    let started = tokio::time::Instant::now();
    let result = match authorize(caller.role, &request) {
        Ok(()) => throttled(shared, caller, request).await,
        Err(refusal) => Err(refusal),
    };
    if let Ok(Reply::Attached { case, .. }) = &result {
        if case.state == sosq::protocol::CaseState::InProgress {
            shared.counters.observe_pairing(started.elapsed());
        }
    }
    result.unwrap_or_else(|e| match e {
        ServerError::Redirect(redirect) => Reply::Redirect(*redirect),
        e => Reply::Error(e.to_reply()),
    })
}

/// Runs requests that look up a typed session code under the wrong-code budgets of the
/// caller's connection, its address and the broker: refused while any of them is spent,
/// charged to all three when the code is wrong.
async fn throttled(
    shared: &Shared,
    caller: &Caller,
    request: Request,
) -> Result<Reply, ServerError> {
    // Staff hold 256-bit tokens; the budget is for anonymous parties guessing codes.
    let looks_up_code = matches!(
        request,
        Request::Join { .. }
            | Request::Connect { .. }
            | Request::Close { .. }
            | Request::Status { .. }
            | Request::AddMessage { .. }
            | Request::AttachStart { .. }
    );
    if !looks_up_code || caller.role != Role::Customer {
        return run(shared, caller, request).await;
    }
    let ip = caller.address.ip();
    shared.check_throttle(caller.party, ip)?;
    let result = run(shared, caller, request).await;
    if let Err(ServerError::Broker(
        BrokerError::UnknownCode(_) | BrokerError::BadCode(_) | BrokerError::NotYourCase(_),
    )) = &result
    {
        shared.charge_wrong_code(caller.party, ip);
    }
    result
}

/// The asynchronous step: the look-ups a command needs first (does the team exist?), then
/// the synchronous step ([`commands::command`]) under the core lock, then waiting for the
/// commit (or not, for a pairing); reads go to the core's views and the store.
pub(super) async fn run(
    shared: &Shared,
    caller: &Caller,
    request: Request,
) -> Result<Reply, ServerError> {
    // A cluster node first brings the case here (or redirects), or answers from the
    // shared queue; then the request runs as on one node.
    if let Some(reply) = shared.placement.before(shared, caller, &request).await? {
        return Ok(reply);
    }
    let actor = &caller.actor();
    match commands::route(&request) {
        Route::Durable => {
            check_names(shared, caller, &request)?;
            let committed = shared
                .execute(actor, |b, now, out| {
                    commands::command(b, caller, &request, now, out)
                })
                .await;
            match (committed, &request) {
                (Ok((answer, report)), _) => Ok(answer.once_committed(&report)),
                (
                    Err(ServerError::Broker(BrokerError::UnknownCode(code))),
                    Request::Close { .. },
                ) if caller.role != Role::Customer => Err(explain_unknown(shared, code, "close")?),
                (Err(e), _) => Err(e),
            }
        }
        Route::Pairing => {
            let answer = shared.execute_pairing(actor, |b, now, out| {
                commands::command(b, caller, &request, now, out)
            })?;
            Ok(answer.once_committed(&CommitReport::default()))
        }
        Route::BulkDelete => {
            let Request::Delete(selector) = request else {
                return Err(
                    BrokerError::InvalidInput("a bulk delete names a filter".into()).into(),
                );
            };
            let count = delete_by_filter(shared, actor, &caller.name, &selector).await?;
            tracing::info!(admin = %caller.name, count, "bulk delete");
            Ok(Reply::Deleted {
                count,
                not_found: Vec::new(),
            })
        }
        Route::Read => read(shared, caller, request).await,
        Route::Note => {
            let Request::Note { code, text } = &request else {
                return Err(BrokerError::InvalidInput("a note names a case".into()).into());
            };
            add_note(shared, actor, code, text).await
        }
        Route::Message => super::attachments::add_message(shared, caller, request).await,
        Route::Upload => super::attachments::upload(shared, caller, request).await,
        Route::Attachments => super::attachments::read(shared, request).await,
        Route::Redeem => Err(BrokerError::InvalidInput(
            "this sosqd is not a cluster node: it never redirects, so it has no ticket to redeem"
                .into(),
        )
        .into()),
    }
}

/// Adds a staff note: to the open case the core holds, or else to the stored case (closed
/// or expired), whose record is read first, outside the core lock, for the core to check
/// and answer with (see `broker/notes.rs`). A case that closes between the look-up and the
/// command is looked up once more, from the store.
async fn add_note(
    shared: &Shared,
    actor: &Actor,
    typed: &str,
    text: &str,
) -> Result<Reply, ServerError> {
    let code: SessionCode = typed.parse().map_err(BrokerError::from)?;
    let mut stored = None;
    if shared.broker().case(code).is_none() {
        stored = shared.store.get(code)?;
    }
    for last in [false, true] {
        let looked = stored.is_some();
        let result = shared
            .execute(actor, |b, now, out| {
                b.add_note(now, typed, text, stored.as_ref(), out)
            })
            .await;
        match result {
            Ok((case, _)) => return Ok(Reply::Case(case)),
            Err(ServerError::Broker(BrokerError::UnknownCode(_))) if !looked && !last => {
                stored = shared.store.get(code)?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(BrokerError::UnknownCode(code).into())
}

/// Refuses a command naming a team or expert the users file does not have, before the
/// core runs it: an SOS request's team, an assignment's or transfer's target; and an SOS
/// request from an address whose SOS budget is spent.
fn check_names(shared: &Shared, caller: &Caller, request: &Request) -> Result<(), ServerError> {
    match request {
        Request::OpenSos { group, .. } => {
            // A native client on this machine (a load tool, a test) is not a remote
            // script filling the queue; a browser is charged whatever its address.
            if caller.channel == Channel::Browser || !caller.address.ip().is_loopback() {
                shared.take_sos(caller.address.ip())?;
            }
            let group = group.as_deref().unwrap_or(GENERAL);
            if !shared.users.group_exists(group)? {
                return Err(no_such_team(group).into());
            }
            Ok(())
        }
        Request::Assign { to, .. } | Request::Transfer { to, .. } => check_assignee(shared, to),
        _ => Ok(()),
    }
}

/// Answers a request that changes nothing: the queue (and subscribing to it), a case, a
/// page of cases or of a case's history.
async fn read(shared: &Shared, caller: &Caller, request: Request) -> Result<Reply, ServerError> {
    let me = caller.party;
    Ok(match request {
        Request::Queue { after, limit } => {
            Reply::Queue(queue_for(caller, &shared.broker(), after.as_ref(), limit))
        }
        Request::WatchQueue { limit } => {
            // Subscribe under the core lock, so no change between snapshot and subscription
            // is missed.
            let broker = shared.broker();
            shared.queue_watchers.insert(me, (caller.clone(), limit));
            Reply::Queue(queue_for(caller, &broker, None, limit))
        }
        Request::Status {
            code,
            resume_secret,
        } => {
            if caller.role == Role::Customer {
                Reply::Case(
                    shared
                        .broker()
                        .customer_view(me, &code, resume_secret.as_deref())?,
                )
            } else {
                Reply::Case(staff_view(shared, &code)?)
            }
        }
        Request::Cases {
            filter,
            after,
            limit,
        } => {
            let selection = CaseSelection::resolve(&filter, shared.now())?;
            Reply::Cases(list_cases(shared, &selection, after, limit).await?)
        }
        Request::History { code, from, limit } => {
            Reply::History(history_page(shared, &code, from, limit)?)
        }
        _ => return Err(BrokerError::InvalidInput("not a read".into()).into()),
    })
}

/// A page of the queue as `caller` may see it: admins everything, experts their teams' and
/// their own.
pub(super) fn queue_for(
    caller: &Caller,
    broker: &crate::broker::Broker,
    after: Option<&QueueCursor>,
    limit: u32,
) -> QueuePage {
    let teams = caller.teams();
    let viewer = match caller.role {
        Role::Admin => QueueViewer::Everyone,
        _ => QueueViewer::Expert {
            name: &caller.name,
            teams: &teams,
        },
    };
    broker.queue_page(viewer, after, page_items(limit))
}

/// Refuses an assignment to an expert or team that does not exist.
fn check_assignee(shared: &Shared, to: &Assignee) -> Result<(), ServerError> {
    let exists = match to {
        Assignee::Expert(name) => shared.users.expert(name)?.is_some(),
        Assignee::Group(group) => shared.users.group_exists(group)?,
    };
    if exists {
        Ok(())
    } else {
        Err(no_such_assignee(to).into())
    }
}

/// The refusal of an SOS request for a team that does not exist.
pub(super) fn no_such_team(group: &str) -> BrokerError {
    BrokerError::InvalidInput(format!(
        "there is no support team {:?}; check your support profile",
        as_typed(group)
    ))
}

/// The refusal of an assignment or a transfer to an expert or team that does not exist.
pub(super) fn no_such_assignee(to: &Assignee) -> BrokerError {
    let to = match to {
        Assignee::Expert(name) => Assignee::Expert(as_typed(name)),
        Assignee::Group(name) => Assignee::Group(as_typed(name)),
    };
    BrokerError::InvalidInput(format!("there is no {to}"))
}

/// A name a peer typed, as a refusal repeats it: at most [`MAX_NAME_CHARS`] characters (no
/// team or user name is longer), so a refusal never grows with what the peer sent. Without
/// the cut, a 60 KiB team name of control characters, escaped by `{:?}`, made a reply five
/// times the frame limit, and the peer got an internal error instead of the reason.
fn as_typed(name: &str) -> String {
    let mut shown: String = name.chars().take(MAX_NAME_CHARS).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    shown
}

/// An admin's delete selector in words, for the audit log.
pub(super) fn describe_selector(selector: &DeleteSelector, now: Timestamp) -> String {
    match selector {
        DeleteSelector::Codes(codes) => {
            let codes: Vec<String> = codes.iter().map(ToString::to_string).collect();
            format!("codes {}", codes.join(" "))
        }
        DeleteSelector::Filter(filter) => {
            let mut parts = Vec::new();
            if let Some(state) = filter.state {
                parts.push(format!("state {state}"));
            }
            if let Some(ms) = filter.older_than_ms {
                parts.push(format!(
                    "created more than {} ago (before {})",
                    crate::broker::humanize(std::time::Duration::from_millis(ms)),
                    Timestamp(now.0.saturating_sub(ms)).rfc3339()
                ));
            }
            if let Some(team) = &filter.team {
                parts.push(format!("team {team:?}"));
            }
            if let Some(priority) = filter.priority {
                parts.push(format!("priority {priority}"));
            }
            if let Some(range) = describe_range(filter.created_from, filter.created_to) {
                parts.push(format!("created {range}"));
            }
            if let Some(range) = describe_range(filter.closed_from, filter.closed_to) {
                parts.push(format!("closed or expired {range}"));
            }
            if let Some(text) = &filter.text {
                parts.push(format!("text {text:?} in customer or description"));
            }
            parts.join(", ")
        }
    }
}

/// A time range `[from, to)` in words (UTC times), or None when neither end is given.
fn describe_range(from: Option<Timestamp>, to: Option<Timestamp>) -> Option<String> {
    match (from, to) {
        (None, None) => None,
        (Some(from), None) => Some(format!("at or after {}", from.rfc3339())),
        (None, Some(to)) => Some(format!("before {}", to.rfc3339())),
        (Some(from), Some(to)) => Some(format!(
            "at or after {} and before {}",
            from.rfc3339(),
            to.rfc3339()
        )),
    }
}

/// For staff: a code that is not open may still be a closed or expired case; say so.
fn explain_unknown(
    shared: &Shared,
    code: SessionCode,
    action: &'static str,
) -> Result<ServerError, ServerError> {
    Ok(match shared.store.get(code)? {
        Some(record) if !record.state.is_open() => {
            ServerError::Broker(BrokerError::IllegalTransition {
                code,
                from: record.state,
                action,
            })
        }
        _ => ServerError::Broker(BrokerError::UnknownCode(code)),
    })
}

fn staff_view(shared: &Shared, typed: &str) -> Result<CaseInfo, ServerError> {
    let code: SessionCode = typed.parse().map_err(BrokerError::from)?;
    if let Some(case) = shared.broker().case(code) {
        return Ok(case.info());
    }
    match shared.store.get(code)? {
        Some(record) => Ok(record.info(false, None)),
        None => Err(BrokerError::UnknownCode(code).into()),
    }
}

/// How many cases one step of a bulk delete by filter removes. Each step is its own
/// store commit, so pairing and intake commits queue behind at most one step, not behind
/// the whole delete (100,000 cases took the store writer about 18 s in one transaction).
const DELETE_STEP: usize = 500;

/// A bulk delete by filter, in steps of [`DELETE_STEP`] cases: the matching codes are read
/// once (from the store's read connection, plus open cases the core holds), then each step
/// ends the sessions of the open cases among its codes and deletes them. The audit entry
/// goes with the last step and counts every step. A crash part-way leaves the steps
/// already committed deleted, like retention's batches.
async fn delete_by_filter(
    shared: &Shared,
    actor: &Actor,
    name: &str,
    selector: &DeleteSelector,
) -> Result<u64, ServerError> {
    let selection = match deletion(selector, shared.now())? {
        Persist::DeleteWhere(selection) => selection,
        _ => {
            return Err(
                BrokerError::InvalidInput("a bulk delete by filter needs a filter".into()).into(),
            )
        }
    };
    let store = shared.store.clone();
    let wanted = selection.clone();
    let mut codes = tokio::task::spawn_blocking(move || store.codes(&wanted))
        .await
        .map_err(|e| crate::store::StoreError::Backend(e.to_string()))??;
    codes.extend(shared.broker().open_matching(&selection));
    codes.sort_unstable();
    codes.dedup();
    let described = describe_selector(selector, shared.now());
    let mut deleted = 0u64;
    let mut steps = codes.chunks(DELETE_STEP).peekable();
    loop {
        let step = steps.next().unwrap_or(&[]);
        let last = steps.peek().is_none();
        let ((), report) = shared
            .execute(actor, |b, now, out| {
                // An open case is judged by the core's live state, not the store's.
                let still: Vec<SessionCode> = step
                    .iter()
                    .copied()
                    .filter(|code| {
                        b.case(*code)
                            .is_none_or(|case| selection.matches(&case.record))
                    })
                    .collect();
                b.delete(now, name, Persist::Delete(still), out)?;
                if last {
                    out.push(Effect::Persist(Persist::Audit(AuditEntry {
                        at: now,
                        actor: actor.who.to_string(),
                        address: actor.address.clone(),
                        action: "delete".into(),
                        selector: described.clone(),
                        count: deleted,
                    })));
                }
                Ok(())
            })
            .await?;
        deleted += report.deleted.len() as u64;
        if last {
            return Ok(deleted);
        }
    }
}

/// One page of the stored cases, with the live presence of the open ones.
async fn list_cases(
    shared: &Shared,
    selection: &CaseSelection,
    after: Option<CasesCursor>,
    limit: u32,
) -> Result<CasesPage, ServerError> {
    let store = shared.store.clone();
    let wanted = selection.clone();
    let items = page_items(limit);
    // One more than the page holds tells whether there is a next page.
    let after = after.map(|cursor| (cursor.created_at, cursor.code));
    let records = tokio::task::spawn_blocking(move || store.page(&wanted, after, items + 1))
        .await
        .map_err(|e| crate::store::StoreError::Backend(e.to_string()))??;
    let broker = shared.broker();
    let infos = records
        .into_iter()
        .map(|record| match broker.case(record.code) {
            Some(case) => case.info(),
            _ => record.info(false, None),
        });
    Ok(super::pages::cases_page(infos, items))
}

/// One page of a case's history (open, closed or expired), for staff.
fn history_page(
    shared: &Shared,
    typed: &str,
    from: u32,
    limit: u32,
) -> Result<HistoryPage, ServerError> {
    let code: SessionCode = typed.parse().map_err(BrokerError::from)?;
    let items = page_items(limit);
    // An open case's page is cut under the core lock: only the page is copied.
    let open = shared.broker().case(code).map(|case| {
        let record = &case.record;
        super::pages::history_page(code, record.state, &record.history, from, items)
    });
    if let Some(page) = open {
        return Ok(page);
    }
    match shared.store.get(code)? {
        Some(record) => Ok(super::pages::history_page(
            code,
            record.state,
            &record.history,
            from,
            items,
        )),
        None => Err(BrokerError::UnknownCode(code).into()),
    }
}
