//! A cluster node's side of the shell (see `cluster` for the shared rows): keeping the
//! lease, bringing a case here before a request about it runs (taking it over from a lost
//! node, or redirecting the client to the live node that serves it), pulling from the
//! shared queue, and the live shared queue for watchers.
//!
//! The core never waits on the database: every step here runs before or after a core
//! command, outside its lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::{close_code, Event, QueuePage, Redirect, Reply, Request, Role, Timestamp};
use sosq::SessionCode;
use tokio::time::Instant;

use super::dispatch::Caller;
use super::{ServerError, Shared};
use crate::broker::{BrokerError, Effect, Searched};
use crate::cluster::{Claim, Cluster, ClusterError, Home, QueueView, POLL};
use crate::store::postgres::QueueWake;

/// Keep at least this many reserved codes; reserve [`CODE_BATCH`] more below it. About a
/// second of intake at the rates measured (README "Performance", "Cluster").
pub(super) const CODES_LOW: usize = 1024;
/// How many codes one reservation asks for (one statement).
const CODE_BATCH: usize = 2048;
/// How often watchers of the shared queue get a fresh page (when it changed).
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What a node knows of its own lease, on its monotonic clock.
#[derive(Debug)]
pub struct LeaseState {
    /// Until when the last successful renewal holds (from when it was sent).
    valid_until: Option<Instant>,
}

impl LeaseState {
    /// No lease yet.
    pub fn new() -> LeaseState {
        LeaseState { valid_until: None }
    }
}

impl Default for LeaseState {
    fn default() -> Self {
        LeaseState::new()
    }
}

impl From<ClusterError> for ServerError {
    fn from(error: ClusterError) -> ServerError {
        ServerError::Cluster(error)
    }
}

impl Shared {
    /// Whether this node's lease holds now (always, on one node).
    pub fn lease_holds(&self) -> bool {
        if self.cluster.is_none() {
            return true;
        }
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        lease
            .valid_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Notes until when this node's lease holds (`None`: it does not).
    fn set_lease(&self, until: Option<Instant>) {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .valid_until = until;
    }

    /// Joins the cluster before the node serves: takes its name's lease and reserves its
    /// first session codes. A no-op on one node.
    ///
    /// Errors: the database fails, or another process holds this node's name.
    pub async fn join_cluster(&self) -> Result<(), ServerError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let sent = Instant::now();
        cluster.register().await?;
        self.set_lease(Some(sent + cluster.lease()));
        top_up_codes(self, cluster).await?;
        tracing::info!(node = %cluster.node(), address = %cluster.address(), "joined the cluster");
        Ok(())
    }

    /// Makes sure the case a request names (`code`, as typed) is served here before the
    /// request runs: held already, or taken over from a node whose lease lapsed (waiting
    /// out a lease that is about to lapse). A case served by a live node becomes
    /// [`ServerError::Redirect`] there, with a ticket for `caller`. Codes that do not parse
    /// or name no open case are left to the core, which refuses them in its words.
    pub async fn bring_here(
        &self,
        caller: &Caller,
        code: &str,
        request: &Request,
    ) -> Result<(), ServerError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let Ok(code) = code.parse::<SessionCode>() else {
            return Ok(());
        };
        if self.broker().case(code).is_some() {
            return Ok(());
        }
        loop {
            match cluster.locate(code).await? {
                Home::Missing | Home::Finished => return Ok(()),
                Home::Here | Home::Orphaned => return self.adopt(cluster, code).await,
                Home::Lapsing(left) => tokio::time::sleep(left + POLL / 5).await,
                Home::Elsewhere { node, address } => {
                    return Err(redirect(cluster, caller, code, node, address, request).await?)
                }
            }
        }
    }

    /// Takes `code` over and puts it in the core, unless another node was faster.
    async fn adopt(&self, cluster: &Cluster, code: SessionCode) -> Result<(), ServerError> {
        let Some(record) = cluster.take_over(code).await? else {
            return Ok(());
        };
        let why = format!("taken over by node {}", cluster.node());
        tracing::info!(%code, node = %cluster.node(), "took a case over");
        self.execute(&crate::broker::Actor::daemon(), |broker, now, out| {
            broker.adopt(now, record, &why, out);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// A pull on a cluster node: claims the next case of the expert's queues on any node;
    /// one homed here is paired at once, one homed elsewhere becomes a redirect there. With
    /// `wait`, keeps claiming (when woken for a case of its queues, see `waiting_pulls`, or
    /// every [`POLL`]) until a case comes or the expert leaves; the reply waits that long.
    pub async fn pull_shared(&self, caller: &Caller, wait: bool) -> Result<Reply, ServerError> {
        let Some(cluster) = &self.cluster else {
            return Err(BrokerError::InvalidInput("not a cluster node".into()).into());
        };
        let teams = caller.teams();
        // Waiting before the first claim: a case committed while it runs still wakes this
        // pull, instead of leaving it to the next poll.
        let waiting = wait.then(|| self.waiting_pulls.wait(&caller.name, &teams));
        loop {
            if let Some(claim) = cluster.claim_next(&caller.name, &teams).await? {
                match self.seat_claimed(cluster, caller, claim).await {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => continue,
                    Err(e) => return Err(e),
                }
            }
            let Some(waiting) = &waiting else {
                return Err(BrokerError::QueueEmpty(Searched { teams }).into());
            };
            if !self.parties.contains_key(&caller.party) {
                return Err(BrokerError::InvalidInput("the expert left".into()).into());
            }
            waiting.rearm();
            waiting.woken_or(POLL).await;
        }
    }

    /// Pairs `caller` with a case it claimed; `None` if the case slipped away (its customer
    /// left a moment ago), so the pull goes on with the next one.
    async fn seat_claimed(
        &self,
        cluster: &Cluster,
        caller: &Caller,
        claim: Claim,
    ) -> Result<Option<Reply>, ServerError> {
        let request = Request::Connect {
            code: claim.code.to_string(),
            working_queue: true,
        };
        if claim.node != cluster.node() {
            let redirect = redirect(
                cluster,
                caller,
                claim.code,
                claim.node,
                claim.address,
                &request,
            )
            .await?;
            return Err(redirect);
        }
        let actor = caller.actor();
        let code = claim.code.to_string();
        let paired = self.execute_pairing(&actor, |broker, now, out| {
            broker.connect(now, caller.party, &caller.name, &code, true, out)
        });
        match paired {
            Ok(case) => Ok(Some(Reply::Attached {
                case,
                resume_secret: None,
                position: None,
            })),
            Err(ServerError::Broker(refusal)) => {
                tracing::debug!(code = %claim.code, %refusal, "a claimed case could not be paired; trying the next");
                cluster.release_claim(claim.code).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The shared queue for `caller` (one page).
    pub async fn shared_queue(
        &self,
        caller: &Caller,
        after: Option<&sosq::protocol::QueueCursor>,
        limit: u32,
    ) -> Result<QueuePage, ServerError> {
        let Some(cluster) = &self.cluster else {
            return Err(BrokerError::InvalidInput("not a cluster node".into()).into());
        };
        let teams = caller.teams();
        let view = match caller.role {
            Role::Admin => QueueView::Everyone,
            _ => QueueView::Expert {
                name: &caller.name,
                teams: &teams,
            },
        };
        Ok(cluster
            .queue_page(view, after, sosq::protocol::page_items(limit))
            .await?)
    }

    /// Lets go of every case the core holds (this node lost its lease), telling their
    /// parties to reconnect: another node serves them from now on.
    fn give_up_all(&self, cluster: &Cluster, reason: &str) {
        let codes = self.broker().open_codes();
        for code in codes {
            self.forget(cluster, code, close_code::SHUTDOWN, reason);
        }
    }

    /// Lets go of one case (served elsewhere now, or deleted or closed there), closing its
    /// parties' connections with `close` (SHUTDOWN: the clients connect again).
    fn forget(&self, cluster: &Cluster, code: SessionCode, close: u32, reason: &str) {
        cluster.ledger().release(code);
        let mut out = Vec::new();
        let held = self.broker().forget(code, close, reason, &mut out);
        if held {
            for effect in out {
                match effect {
                    Effect::Unpair { code, .. } => {
                        let _ = self.end_pairing(code, false);
                    }
                    other => self.apply(other),
                }
            }
        }
    }
}

/// What a cluster node does with a request before it runs as on one node: `Some` reply
/// when the request is answered here (a pull or the queue, from the shared queue; a
/// redirect's ticket, by running its request), `None` to go on (after bringing the case
/// it names here). A no-op on one node.
///
/// Errors: a redirect to the case's node ([`ServerError::Redirect`]), the database, an
/// invalid ticket, new cases while the lease does not hold.
pub(super) async fn before(
    shared: &Shared,
    caller: &Caller,
    request: &Request,
) -> Result<Option<Reply>, ServerError> {
    let Some(cluster) = &shared.cluster else {
        return Ok(None);
    };
    match request {
        Request::Pull { wait } => Ok(Some(shared.pull_shared(caller, *wait).await?)),
        Request::Queue { after, limit } => Ok(Some(Reply::Queue(
            shared.shared_queue(caller, after.as_ref(), *limit).await?,
        ))),
        Request::WatchQueue { limit } => {
            shared
                .queue_watchers
                .insert(caller.party, (caller.clone(), *limit));
            Ok(Some(Reply::Queue(
                shared.shared_queue(caller, None, *limit).await?,
            )))
        }
        Request::OpenSos { .. } | Request::Create { .. } if !shared.lease_holds() => {
            Err(ServerError::Cluster(ClusterError::Database {
                store: cluster.node().to_string(),
                cause: "this node's lease lapsed; it takes no new cases until it reaches the database again".into(),
            }))
        }
        Request::Join { code, .. }
        | Request::Connect { code, .. }
        | Request::Close { code, .. }
        | Request::Assign { code, .. }
        | Request::Transfer { code, .. }
        | Request::Escalate { code, .. } => {
            shared.bring_here(caller, code, request).await?;
            Ok(None)
        }
        // Staff read a case from the store wherever it lives; a customer's view comes
        // from the node holding its case.
        Request::Status { code, .. } if caller.role == Role::Customer => {
            shared.bring_here(caller, code, request).await?;
            Ok(None)
        }
        Request::Status { code: typed, .. } => {
            let Ok(code) = typed.parse::<SessionCode>() else {
                return Ok(None);
            };
            if shared.broker().case(code).is_some() {
                return Ok(None);
            }
            let Some(record) = shared.store.get(code)? else {
                return Ok(None);
            };
            let (online, expert) = match record.state.is_open() {
                true => cluster.presence(code).await?,
                false => (false, None),
            };
            Ok(Some(Reply::Case(record.info(online, expert))))
        }
        Request::Redeem { ticket, request } => {
            let staff = (caller.role != Role::Customer).then_some(caller.name.as_str());
            let code = cluster.redeem_ticket(ticket, staff).await?;
            let named = named_code(request);
            match (code, named) {
                (Some(code), Some(named)) if named == code => {}
                _ => {
                    return Err(BrokerError::InvalidInput(
                        "this redirect's ticket is not valid here (expired, used already, or for another node or user); run the command again".into(),
                    )
                    .into())
                }
            }
            let inner = (**request).clone();
            Ok(Some(Box::pin(super::dispatch::run(shared, caller, inner)).await?))
        }
        _ => Ok(None),
    }
}

/// The case a request names, if it names one that parses.
fn named_code(request: &Request) -> Option<SessionCode> {
    match request {
        Request::Join { code, .. }
        | Request::Connect { code, .. }
        | Request::Close { code, .. }
        | Request::Assign { code, .. }
        | Request::Transfer { code, .. }
        | Request::Escalate { code, .. }
        | Request::Status { code, .. } => code.parse().ok(),
        _ => None,
    }
}

/// A redirect to `node` at `address` for `code`, with a fresh ticket for `caller`.
async fn redirect(
    cluster: &Cluster,
    caller: &Caller,
    code: SessionCode,
    node: String,
    address: String,
    request: &Request,
) -> Result<ServerError, ServerError> {
    let staff = (caller.role != Role::Customer).then_some(caller.name.as_str());
    let ticket = cluster.issue_ticket(code, &node, staff).await?;
    Ok(ServerError::Redirect(Box::new(Redirect {
        node,
        address,
        ticket,
        request: Box::new(request.clone()),
    })))
}

/// Reserves codes until the node holds at least [`CODES_LOW`].
async fn top_up_codes(shared: &Shared, cluster: &Cluster) -> Result<(), ServerError> {
    loop {
        let candidates = {
            let mut broker = shared.broker();
            match broker.codes_supplied() {
                Some(left) if left < CODES_LOW => broker.code_candidates(CODE_BATCH),
                _ => return Ok(()),
            }
        };
        let reserved = cluster.reserve_codes(&candidates).await?;
        shared.broker().supply_codes(reserved);
    }
}

/// The node's background work, until aborted: renew the lease every third of it; while
/// it holds, let go of cases the store says another node serves now (or that were
/// deleted), keep codes reserved, and take over the expired cases of lost nodes so they
/// expire exactly once; when it lapses, let go of every case.
pub async fn run(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(cluster.lease() / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lapsed = false;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        match cluster.renew().await {
            Ok(()) => {
                shared.set_lease(Some(sent + cluster.lease()));
                if lapsed {
                    tracing::warn!("the lease is renewed again; serving cases");
                    // Every party was let go at the lapse: none of this node's rows may
                    // show a customer online until it is back.
                    if let Err(error) = cluster.nobody_here().await {
                        tracing::warn!(%error, "cannot mark this node's waiting customers offline");
                        continue;
                    }
                    lapsed = false;
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot renew this node's lease");
                if matches!(error, ClusterError::NodeTaken(_)) {
                    shared.set_lease(None);
                }
            }
        }
        if !shared.lease_holds() {
            if !lapsed {
                tracing::error!(
                    "this node's lease lapsed: other nodes take its cases over; letting go of them"
                );
                lapsed = true;
            }
            shared.give_up_all(
                &cluster,
                "this node lost its database; your case continues on another node: connect again",
            );
            continue;
        }
        if let Err(error) = keep_up(&shared, &cluster).await {
            tracing::warn!(%error, "cluster upkeep failed; trying again at the next heartbeat");
        }
    }
}

/// One heartbeat's upkeep while the lease holds.
async fn keep_up(shared: &Arc<Shared>, cluster: &Arc<Cluster>) -> Result<(), ServerError> {
    // What the ledger held *before* the query: a case whose first row commits meanwhile
    // is in the ledger only afterwards, and would look lost.
    let held = cluster.ledger().held();
    let homed: HashMap<SessionCode, i64> = cluster.homed_here().await?.into_iter().collect();
    for (code, epoch) in held {
        // Taken over again here meanwhile (a new epoch in the ledger) is ours too.
        let now_held = cluster.ledger().holding(code).0;
        let still_ours = homed
            .get(&code)
            .is_some_and(|stored| *stored == epoch || *stored == now_held);
        let open_here = shared.broker().case(code).is_some();
        if !still_ours && open_here {
            let (close, reason) = match cluster.locate(code).await? {
                // Homed here after all (the listing raced a takeover by this node).
                Home::Here => continue,
                Home::Missing => (close_code::DELETED, "your case was deleted"),
                Home::Finished => (close_code::SESSION_ENDED, "your case was closed"),
                _ => (
                    close_code::SHUTDOWN,
                    "your case continues on another node; connect again",
                ),
            };
            tracing::info!(%code, reason, "letting go of a case");
            shared.forget(cluster, code, close, reason);
        } else if !open_here && !still_ours {
            cluster.ledger().release(code);
        }
    }
    let now: Timestamp = shared.now();
    let due = cluster
        .orphans_due(i64::try_from(now.0).unwrap_or(i64::MAX), 100)
        .await?;
    for code in due {
        shared.adopt(cluster, code).await?;
        shared.expiry_wake.notify_one();
    }
    Ok(())
}

/// Keeps this node's reserved codes topped up: woken by intake when they run low, and
/// every second in case a wake-up came while the database was unreachable.
pub async fn keep_codes(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    loop {
        tokio::select! {
            _ = shared.codes_wanted.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !shared.lease_holds() {
            continue;
        }
        if let Err(error) = top_up_codes(&shared, &cluster).await {
            tracing::warn!(%error, "cannot reserve session codes; trying again in a second");
        }
    }
}

/// Wakes one of this node's waiting pulls that may take it whenever any node (this one
/// too) commits a case waiting online (see `cluster::listen_for_cases`), reconnecting
/// after a lost connection.
pub async fn wake_on_new_cases(shared: Arc<Shared>) {
    if shared.cluster.is_none() {
        return;
    }
    let url = shared.config().store.clone();
    loop {
        let woken = |case: Option<QueueWake>| {
            shared.waiting_pulls.case_waiting(case.as_ref());
        };
        if let Err(error) = crate::cluster::listen_for_cases(&url, woken).await {
            tracing::debug!(%error, "the queue's wake-up connection ended; pulls poll meanwhile");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pushes the shared queue to every watcher whose page changed, every [`WATCH_EVERY`].
pub async fn watch_shared_queue(shared: Arc<Shared>) {
    if shared.cluster.is_none() {
        return;
    }
    let mut last: HashMap<crate::broker::PartyId, QueuePage> = HashMap::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let watchers: Vec<_> = shared
            .queue_watchers
            .iter()
            .map(|w| (*w.key(), w.value().clone()))
            .collect();
        last.retain(|party, _| watchers.iter().any(|(p, _)| p == party));
        for (party, (caller, limit)) in watchers {
            match shared.shared_queue(&caller, None, limit).await {
                Ok(page) => {
                    if last.get(&party) != Some(&page) {
                        last.insert(party, page.clone());
                        shared.push(party, Event::QueueChanged(page));
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the shared queue"),
            }
        }
    }
}
