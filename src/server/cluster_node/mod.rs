//! A cluster node's [`Placement`] (see `cluster` for the shared rows): keeping the lease,
//! bringing a case here before a request about it runs (taking it over from a lost node,
//! or redirecting the client to the live node that serves it), pulling from the shared
//! queue, and the live shared queue for watchers. Its background work is in `upkeep`.
//!
//! The core never waits on the database: every step here runs before or after a core
//! command, outside its lock.

mod upkeep;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sosq::protocol::{close_code, QueuePage, Redirect, Reply, Request, Role};
use sosq::SessionCode;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::dispatch::Caller;
use super::placement::{Pending, Placement};
use super::waiting_pulls::WaitingPulls;
use super::{ServerError, Shared};
use crate::broker::{Broker, BrokerError, CaseRecord, Effect, Persist, Searched};
use crate::cluster::{Claim, Cluster, ClusterError, Home, QueueView, POLL};
use crate::store::CaseStore;

/// Keep at least this many reserved codes; reserve `CODE_BATCH` more below it. About a
/// second of intake at the rates measured (README "Performance", "Cluster").
const CODES_LOW: usize = 1024;

/// How many locks take turns at adopting cases (a case's lock is its code modulo this):
/// requests for one case wait for each other, others rarely do.
const ADOPTION_LOCKS: usize = 64;

/// A node of a cluster whose shared state is in PostgreSQL.
pub struct ClusterNode {
    cluster: Arc<Cluster>,
    /// Until when the last successful renewal of this node's lease holds (from when it
    /// was sent), on the monotonic clock; `None`: it does not.
    lease_until: Mutex<Option<Instant>>,
    /// The pulls waiting here for a case (woken by `NOTIFY sosq_queue`).
    waiting_pulls: WaitingPulls,
    /// Signalled when the reserved codes run low.
    codes_wanted: Notify,
    /// Turns at taking a case over, by code (see [`ClusterNode::adopt`]).
    adopting: [tokio::sync::Mutex<()>; ADOPTION_LOCKS],
}

impl From<ClusterError> for ServerError {
    fn from(error: ClusterError) -> ServerError {
        ServerError::Cluster(error)
    }
}

impl ClusterNode {
    /// A node on `cluster`, holding no lease yet (see [`Placement::join`]).
    pub fn new(cluster: Arc<Cluster>) -> ClusterNode {
        ClusterNode {
            cluster,
            lease_until: Mutex::new(None),
            waiting_pulls: WaitingPulls::new(),
            codes_wanted: Notify::new(),
            adopting: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        }
    }

    /// Whether this node's lease holds now.
    fn lease_holds(&self) -> bool {
        self.lease_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    /// Notes until when this node's lease holds (`None`: it does not).
    fn set_lease(&self, until: Option<Instant>) {
        *self.lease_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// Makes sure the case a request names (`code`, as typed) is served here before the
    /// request runs: held already, or taken over from a node whose lease lapsed (waiting
    /// out a lease that is about to lapse). A case served by a live node becomes
    /// [`ServerError::Redirect`] there, with a ticket for `caller`. Codes that do not parse
    /// or name no open case are left to the core, which refuses them in its words.
    async fn bring_here(
        &self,
        shared: &Shared,
        caller: &Caller,
        code: &str,
        request: &Request,
    ) -> Result<(), ServerError> {
        let Ok(code) = code.parse::<SessionCode>() else {
            return Ok(());
        };
        if shared.broker().case(code).is_some() {
            return Ok(());
        }
        loop {
            match self.cluster.locate(code).await? {
                Home::Missing | Home::Finished => return Ok(()),
                Home::Here | Home::Orphaned => return self.adopt(shared, code).await,
                Home::Lapsing(left) => tokio::time::sleep(left + POLL / 5).await,
                Home::Elsewhere { node, address } => {
                    return Err(self.redirect(caller, code, node, address, request).await?)
                }
            }
        }
    }

    /// Takes `code` over and puts it in the core, unless another node was faster, or a
    /// request here already did.
    async fn adopt(&self, shared: &Shared, code: SessionCode) -> Result<(), ServerError> {
        // After a node's loss its customer and expert come back at once, often to the same
        // survivor. Taking the case over twice would bump its epoch twice, and the two
        // epochs could reach the ledger in either order, leaving it behind the row: every
        // later write of the case refused as "served by another node now". One at a time,
        // and the second finds the case here.
        let lock = &self.adopting[(code.number() % ADOPTION_LOCKS as u64) as usize];
        let _turn = lock.lock().await;
        if shared.broker().case(code).is_some() {
            return Ok(());
        }
        let Some(record) = self.cluster.take_over(code).await? else {
            return Ok(());
        };
        let why = format!("taken over by node {}", self.cluster.node());
        tracing::info!(%code, node = %self.cluster.node(), "took a case over");
        shared
            .execute(&crate::broker::Actor::daemon(), |broker, now, out| {
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
    async fn pull_shared(
        &self,
        shared: &Shared,
        caller: &Caller,
        wait: bool,
    ) -> Result<Reply, ServerError> {
        let teams = caller.teams();
        // Waiting before the first claim: a case committed while it runs still wakes this
        // pull, instead of leaving it to the next poll.
        let waiting = wait.then(|| self.waiting_pulls.wait(&caller.name, &teams));
        loop {
            if let Some(claim) = self.cluster.claim_next(&caller.name, &teams).await? {
                match self.seat_claimed(shared, caller, claim).await {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => continue,
                    Err(e) => return Err(e),
                }
            }
            let Some(waiting) = &waiting else {
                return Err(BrokerError::QueueEmpty(Searched { teams }).into());
            };
            if !shared.parties.contains_key(&caller.party) {
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
        shared: &Shared,
        caller: &Caller,
        claim: Claim,
    ) -> Result<Option<Reply>, ServerError> {
        let request = Request::Connect {
            code: claim.code.to_string(),
            working_queue: true,
        };
        if claim.node != self.cluster.node() {
            let redirect = self
                .redirect(caller, claim.code, claim.node, claim.address, &request)
                .await?;
            return Err(redirect);
        }
        let actor = caller.actor();
        let code = claim.code.to_string();
        let paired = shared.execute_pairing(&actor, |broker, now, out| {
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
                self.cluster.release_claim(claim.code).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The shared queue for `caller` (one page).
    async fn queue_page(
        &self,
        caller: &Caller,
        after: Option<&sosq::protocol::QueueCursor>,
        limit: u32,
    ) -> Result<QueuePage, ServerError> {
        let teams = caller.teams();
        let view = match caller.role {
            Role::Admin => QueueView::Everyone,
            _ => QueueView::Expert {
                name: &caller.name,
                teams: &teams,
            },
        };
        Ok(self
            .cluster
            .queue_page(view, after, sosq::protocol::page_items(limit))
            .await?)
    }

    /// Lets go of every case the core holds (this node lost its lease), telling their
    /// parties to reconnect: another node serves them from now on.
    fn give_up_all(&self, shared: &Shared, reason: &str) {
        let codes = shared.broker().open_codes();
        for code in codes {
            self.forget(shared, code, close_code::SHUTDOWN, reason);
        }
    }

    /// Lets go of one case (served elsewhere now, or deleted or closed there), closing its
    /// parties' connections with `close` (SHUTDOWN: the clients connect again).
    fn forget(&self, shared: &Shared, code: SessionCode, close: u32, reason: &str) {
        self.cluster.ledger().release(code);
        let mut out = Vec::new();
        let held = shared.broker().forget(code, close, reason, &mut out);
        if held {
            for effect in out {
                match effect {
                    Effect::Unpair { code, .. } => {
                        let _ = shared.end_pairing(code, false);
                    }
                    other => shared.apply(other),
                }
            }
        }
    }

    /// What [`Placement::before`] does on a cluster node: a pull or the queue is answered
    /// from the shared queue, a redirect's ticket by running its request; a request naming
    /// a case brings it here first; new cases are refused while the lease does not hold.
    async fn answer_here(
        &self,
        shared: &Shared,
        caller: &Caller,
        request: &Request,
    ) -> Result<Option<Reply>, ServerError> {
        match request {
            Request::Pull { wait } => Ok(Some(self.pull_shared(shared, caller, *wait).await?)),
            Request::Queue { after, limit } => Ok(Some(Reply::Queue(
                self.queue_page(caller, after.as_ref(), *limit).await?,
            ))),
            Request::WatchQueue { limit } => {
                shared
                    .queue_watchers
                    .insert(caller.party, (caller.clone(), *limit));
                Ok(Some(Reply::Queue(
                    self.queue_page(caller, None, *limit).await?,
                )))
            }
            Request::OpenSos { .. } | Request::Create { .. } if !self.lease_holds() => {
                Err(ServerError::Cluster(ClusterError::Database {
                    store: self.cluster.node().to_string(),
                    cause: "this node's lease lapsed; it takes no new cases until it reaches the database again".into(),
                }))
            }
            Request::Join { code, .. }
            | Request::Connect { code, .. }
            | Request::Close { code, .. }
            | Request::Assign { code, .. }
            | Request::Transfer { code, .. }
            | Request::InviteNative { code, .. }
            | Request::Escalate { code, .. }
            | Request::Note { code, .. }
            | Request::AddMessage { code, .. }
            | Request::AttachStart { code, .. } => {
                self.bring_here(shared, caller, code, request).await?;
                Ok(None)
            }
            // Staff read a case from the store wherever it lives; a customer's view comes
            // from the node holding its case.
            Request::Status { code, .. } if caller.role == Role::Customer => {
                self.bring_here(shared, caller, code, request).await?;
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
                    true => self.cluster.presence(code).await?,
                    false => (false, None),
                };
                Ok(Some(Reply::Case(record.info(online, expert))))
            }
            Request::Redeem { ticket, request } => {
                let staff = (caller.role != Role::Customer).then_some(caller.name.as_str());
                let code = self.cluster.redeem_ticket(ticket, staff).await?;
                match (code, named_code(request)) {
                    (Some(code), Some(named)) if named == code => {}
                    _ => {
                        return Err(BrokerError::InvalidInput(
                            "this redirect's ticket is not valid here (expired, used already, or for another node or user); run the command again".into(),
                        )
                        .into())
                    }
                }
                let inner = (**request).clone();
                Ok(Some(
                    Box::pin(super::dispatch::run(shared, caller, inner)).await?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// A redirect to `node` at `address` for `code`, with a fresh ticket for `caller`.
    async fn redirect(
        &self,
        caller: &Caller,
        code: SessionCode,
        node: String,
        address: String,
        request: &Request,
    ) -> Result<ServerError, ServerError> {
        let staff = (caller.role != Role::Customer).then_some(caller.name.as_str());
        let ticket = self.cluster.issue_ticket(code, &node, staff).await?;
        Ok(ServerError::Redirect(Box::new(Redirect {
            node,
            address,
            ticket,
            request: Box::new(request.clone()),
        })))
    }
}

impl Placement for ClusterNode {
    /// A cluster node loads nothing: it takes cases over one at a time as their parties
    /// come to it, and draws codes from those it reserves in the shared store.
    fn open_cases(
        &self,
        broker: &mut Broker,
        _store: &dyn CaseStore,
    ) -> Result<Vec<CaseRecord>, ServerError> {
        broker.use_code_supply();
        Ok(Vec::new())
    }

    /// Takes the node's lease and reserves its first session codes. Errors: the database
    /// fails, or another process holds this node's name.
    fn join<'a>(&'a self, shared: &'a Shared) -> Pending<'a, ()> {
        Box::pin(async move {
            let sent = Instant::now();
            self.cluster.register().await?;
            self.set_lease(Some(sent + self.cluster.lease()));
            upkeep::top_up_codes(self, shared).await?;
            tracing::info!(node = %self.cluster.node(), address = %self.cluster.address(), "joined the cluster");
            Ok(())
        })
    }

    fn start(self: Arc<Self>, shared: Arc<Shared>) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(upkeep::heartbeat(self.clone(), shared.clone())),
            tokio::spawn(upkeep::keep_codes(self.clone(), shared.clone())),
            tokio::spawn(upkeep::wake_on_new_cases(self.clone(), shared.clone())),
            tokio::spawn(upkeep::watch_shared_queue(self, shared)),
        ]
    }

    /// While the lease holds: a node that lost it serves nobody, so a client goes on to
    /// the next node it was given.
    fn serving(&self) -> bool {
        self.lease_holds()
    }

    fn before<'a>(
        &'a self,
        shared: &'a Shared,
        caller: &'a Caller,
        request: &'a Request,
    ) -> Pending<'a, Option<Reply>> {
        Box::pin(self.answer_here(shared, caller, request))
    }

    /// Asks for codes when they run low, and notes in the ledger whether each saved case
    /// waits online and who its expert is: the shared queue hands out what the rows say.
    fn after_command(&self, broker: &Broker, changes: &[Persist]) {
        if broker.codes_supplied().is_some_and(|left| left < CODES_LOW) {
            self.codes_wanted.notify_one();
        }
        self.cluster.ledger().note_saves(broker, changes);
    }

    fn shared_queue(&self) -> bool {
        true
    }

    fn metrics<'a>(
        &'a self,
        shared: &'a Shared,
    ) -> Pin<Box<dyn Future<Output = String> + Send + 'a>> {
        Box::pin(super::metrics::render_cluster(
            shared,
            &self.cluster,
            self.lease_holds(),
            self.waiting_pulls.waiting(),
        ))
    }

    /// Gives the lease up, so the node its parties reconnect to takes their cases over
    /// at once instead of sending them back here.
    fn leave(&self) -> Pending<'_, ()> {
        Box::pin(async move { Ok(self.cluster.resign().await?) })
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
        | Request::InviteNative { code, .. }
        | Request::Escalate { code, .. }
        | Request::Note { code, .. }
        | Request::AddMessage { code, .. }
        | Request::AttachStart { code, .. }
        | Request::Status { code, .. } => code.parse().ok(),
        _ => None,
    }
}
