//! The async shell around the broker core: the state every task shares ([`Shared`]) and
//! the place where the core's [`Effect`]s are carried out. The daemon's life (start, the
//! accept loop, background tasks, shutdown) is in `daemon.rs`, one connection's in
//! `connection.rs`, a request's in `dispatch.rs`.
//!
//! Every command runs through [`Shared::execute`]: lock the core, feed it the command and
//! the time, hand the store its changes in order, apply the non-blocking effects (pairing,
//! pushes, disconnects), unlock, and only then wait for the store to commit before the
//! caller replies. So a reply never announces a change the store has not kept.

mod admission;
mod attachments;
mod cluster_node;
pub mod commands;
mod connection;
mod console;
mod daemon;
mod delegation;
mod dispatch;
mod drains;
mod error;
mod expiry;
mod help_profiles;
pub mod metrics;
pub mod pages;
mod placement;
mod queue_updates;
mod reload;
mod reports;
mod retention;
mod roles;
mod sos_throttle;
mod throttle;
mod uploads;
mod waiting_pulls;
mod web_pass;

/// The core's settings from the daemon's: the case ttl, the open-case cap and the
/// first-response targets. Built here, in the shell, so the core knows nothing of config
/// files and `config` depends on no layer above it.
fn broker_config(config: &Config) -> crate::broker::BrokerConfig {
    crate::broker::BrokerConfig {
        case_ttl: config.case_ttl,
        max_open_cases: config.max_open_cases,
        response_targets: crate::broker::ResponseTargets {
            critical: config.response_target_critical,
            high: config.response_target_high,
            normal: config.response_target_normal,
            low: config.response_target_low,
        },
        max_attachment_bytes: config.max_attachment_bytes,
        max_attachments_per_case: config.max_attachments_per_case,
    }
}

#[cfg(test)]
mod largest_messages;

pub use admission::{Admission, AdmissionLimits, Decision};
pub use daemon::{console_line, listening_line, parse_console_line, parse_listening_line, Server};
pub(crate) use dispatch::handle;
pub use dispatch::{Caller, Channel};
pub use error::ServerError;
pub use help_profiles::HelpProfile;
pub use reload::{ReloadReport, Reloader};
pub use reports::TOP_EXPERTS;
pub use roles::authorize;
pub use throttle::{Budget, Throttle, ThrottleLimits};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use rand::SeedableRng;
use sosq::protocol::{close_code, ServerMessage, Timestamp};
use tokio::sync::{mpsc, Notify};

use crate::broker::{Actor, Broker, BrokerError, Departure, Effect, PartyId, Persist};
use crate::clock::Clock;
use crate::config::Config;
use crate::relay::Relays;
use crate::store::users::UserDirectory;
use crate::store::{CaseStore, CommitReport, CommitTicket};
use placement::Placement;

/// A connected party's handle, as other tasks reach it.
pub struct PartyHandle {
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// Messages to write on its control stream. Boxed: the channel allocates its slots in
    /// blocks of 32, and 32 unboxed messages (the largest reply is a few hundred bytes) made
    /// the biggest part of what an idle waiting customer costs beyond quinn's own state.
    pub outbox: mpsc::Sender<Box<ServerMessage>>,
    /// The staff account behind the connection (none for customers).
    pub user: Option<crate::store::users::User>,
}

/// How many messages may wait for a party's control stream before it counts as stuck.
const OUTBOX_CAPACITY: usize = 256;

/// State shared by every task of the daemon.
pub struct Shared {
    /// The configuration in force; a reload swaps it (see `reload.rs`).
    config: RwLock<Arc<Config>>,
    broker: Mutex<Broker>,
    store: Arc<dyn CaseStore>,
    users: UserDirectory,
    parties: DashMap<PartyId, PartyHandle>,
    relays: Arc<Relays>,
    expiry_wake: Notify,
    clock: Clock,
    next_party: AtomicU64,
    throttle: Mutex<Throttle>,
    /// SOS requests per address (`sos_throttle.rs`).
    sos_throttle: Mutex<sos_throttle::SosThrottle>,
    /// Signalled when a command changed the queue.
    queue_changed: Notify,
    /// The queue's version after each batch of live updates, for the web console's live
    /// views (`queue_updates.rs` sends, `console.rs` subscribes).
    queue_seen: tokio::sync::watch::Sender<u64>,
    /// Counters for the metrics endpoint.
    pub counters: metrics::Counters,
    /// Staff watching the queue live, with what each may see and how many entries each
    /// update carries.
    queue_watchers: DashMap<PartyId, (dispatch::Caller, u32)>,
    /// Pairings whose streams still drain, for [`drains`] to note their traffic when done.
    drains: mpsc::UnboundedSender<(sosq::SessionCode, crate::relay::Draining)>,
    /// The other end of `drains`, taken by [`Server::run`].
    drained: Mutex<Option<mpsc::UnboundedReceiver<(sosq::SessionCode, crate::relay::Draining)>>>,
    /// Who gets in: connection counts and limits (limits change on reload).
    admission: Arc<Admission>,
    /// When the daemon started, for `sosqd_uptime_seconds`.
    started: std::time::Instant,
    /// Set once shutdown has begun: `/healthz` then answers 503.
    shutting_down: AtomicBool,
    /// Held while shutdown begins and while a reload swaps the endpoint's TLS setup, so a
    /// reload never re-opens an endpoint that shutdown closed to new connections.
    endpoint_gate: Mutex<()>,
    /// Where cases are served: this node alone, or a node of a cluster (see
    /// [`placement`]).
    placement: Arc<dyn Placement>,
    /// The web console's HTTPS setup while the console is on; a reload with a new
    /// certificate swaps it, as it does the QUIC endpoint's.
    web_tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// On a cluster node: the key of the console's delegation tokens (see
    /// [`delegation`]); unset on a single node, which never issues nor accepts one.
    delegation: std::sync::OnceLock<delegation::Delegation>,
    /// The key of the passes the web front's in-process parties say hello with (see
    /// [`web_pass`]); set at start.
    web_pass: std::sync::OnceLock<web_pass::WebPassKey>,
    /// The local address of the web front's client endpoint, whose connections are the
    /// browser parties' (admitted apart: see `Admission::decide_web_front`).
    web_front: RwLock<Option<std::net::SocketAddr>>,
    /// The address the QUIC endpoint bound (its port chosen when `listen` says 0), for
    /// what the console tells customers to dial.
    quic_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// The fingerprint of the certificate in force (set at start, swapped by a reload),
    /// for what the console hands out and pins.
    fingerprint: RwLock<String>,
    /// Customers' uploads in progress, one per connection at most.
    uploads: uploads::Uploads,
}

impl Shared {
    /// The shared state of a daemon, back where the store left it: every stored code held
    /// (never handed out again), every open case restored with its queue place and expiry
    /// deadline (one that passed while the daemon was down fires at once), and cases that
    /// were in progress back to pending until their partners reconnect.
    ///
    /// With `cluster`, the daemon is a node of that cluster (`cluster_node::ClusterNode`),
    /// which loads nothing: it takes cases over one at a time as their parties come to it,
    /// and draws codes from those it reserves in the shared store.
    pub fn new(
        config: Config,
        store: Arc<dyn CaseStore>,
        clock: Clock,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Result<Shared, ServerError> {
        let rng = rand::rngs::StdRng::from_os_rng();
        let config_throttle = ThrottleLimits::from_config(&config);
        let config_sos = sos_budget(&config);
        let config_admission = AdmissionLimits::from_config(&config);
        let mut broker = Broker::new(broker_config(&config), Box::new(rng));
        broker.set_clock_skew(clock.skew_ms());
        let placement: Arc<dyn Placement> = match cluster {
            Some(cluster) => Arc::new(cluster_node::ClusterNode::new(cluster)),
            None => Arc::new(placement::SingleNode),
        };
        let open = placement.open_cases(&mut broker, store.as_ref())?;
        let restored = open.len();
        for record in open {
            broker.restore(record);
        }
        let mut effects = Vec::new();
        broker.resume_after_restart(clock.now(), &mut effects);
        broker.attribute(&Actor::daemon(), &mut effects);
        let changes: Vec<Persist> = effects
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Persist(change) => Some(change),
                _ => None,
            })
            .collect();
        if !changes.is_empty() {
            // Ordered before any command; nobody waits for it, nobody was told anything.
            drop(store.submit(changes));
        }
        tracing::info!(
            open = restored,
            codes = broker.codes_held(),
            "case store loaded"
        );
        let relay_limits = crate::relay::RelayLimits::from_config(&config);
        let (drains, drained) = mpsc::unbounded_channel();
        Ok(Shared {
            users: UserDirectory::from_config(&config)?,
            config: RwLock::new(Arc::new(config)),
            broker: Mutex::new(broker),
            store,
            parties: DashMap::new(),
            relays: Arc::new(Relays::new(relay_limits)),
            expiry_wake: Notify::new(),
            clock,
            next_party: AtomicU64::new(1),
            queue_changed: Notify::new(),
            queue_seen: tokio::sync::watch::Sender::new(0),
            counters: metrics::Counters::default(),
            queue_watchers: DashMap::new(),
            drains,
            drained: Mutex::new(Some(drained)),
            throttle: Mutex::new(Throttle::new(config_throttle, tokio::time::Instant::now())),
            sos_throttle: Mutex::new(sos_throttle::SosThrottle::new(config_sos)),
            admission: Admission::new(config_admission),
            started: std::time::Instant::now(),
            shutting_down: AtomicBool::new(false),
            endpoint_gate: Mutex::new(()),
            placement,
            web_tls: RwLock::new(None),
            delegation: std::sync::OnceLock::new(),
            web_pass: std::sync::OnceLock::new(),
            web_front: RwLock::new(None),
            quic_addr: std::sync::OnceLock::new(),
            fingerprint: RwLock::new(String::new()),
            uploads: uploads::Uploads::default(),
        })
    }

    /// The configuration in force now (a reload may replace it; hold the `Arc` only for
    /// the decision at hand).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts a reloaded configuration in force: the core's limits and targets, the
    /// wrong-code budgets, admission limits, and every setting read per use.
    fn set_config(&self, config: Config) {
        self.broker().set_config(broker_config(&config));
        self.throttle()
            .set_limits(ThrottleLimits::from_config(&config));
        self.sos_throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_budget(sos_budget(&config));
        self.admission
            .set_limits(AdmissionLimits::from_config(&config));
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
    }

    /// Marks that shutdown has begun (see `endpoint_gate`).
    fn begin_shutdown(&self) {
        let _gate = self.endpoint_gate.lock().unwrap_or_else(|p| p.into_inner());
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Runs `change` on the endpoint unless shutdown has begun; whether it ran.
    fn unless_shutting_down(&self, change: impl FnOnce()) -> bool {
        let _gate = self.endpoint_gate.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_shutting_down() {
            return false;
        }
        change();
        true
    }

    /// Whether shutdown has begun (the grace period runs or is over).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// QUIC connections open now, handshakes in progress included.
    pub fn open_connections(&self) -> usize {
        self.admission.open_connections()
    }

    /// How long the daemon has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Connected parties (hello done, not yet gone) by role: customers, experts, admins.
    pub fn connected_by_role(&self) -> [(sosq::protocol::Role, usize); 3] {
        use crate::store::users::StaffRole;
        let (mut customers, mut experts, mut admins) = (0, 0, 0);
        for party in self.parties.iter() {
            match party.user.as_ref().map(|user| user.role) {
                None => customers += 1,
                Some(StaffRole::Expert) => experts += 1,
                Some(StaffRole::Admin) => admins += 1,
            }
        }
        use sosq::protocol::Role;
        [
            (Role::Customer, customers),
            (Role::Expert, experts),
            (Role::Admin, admins),
        ]
    }

    fn broker(&self) -> MutexGuard<'_, Broker> {
        // The core only panics on a broken invariant; keep serving rather than cascade.
        self.broker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_party_id(&self) -> PartyId {
        PartyId(self.next_party.fetch_add(1, Ordering::Relaxed))
    }

    /// The current time as the core sees it.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Runs a command whose outcome needs no durability before the reply: pairing an
    /// expert with a waiting customer. An `in_progress` case goes back to `pending` on a
    /// restart anyway, so waiting for the fsync would only add its latency to every
    /// pairing. The change is still handed to the store in order, so any later
    /// acknowledged change (a close, anyone's new case) implies it is on disk too. What a
    /// crash in between loses is the pairing's history line, not the case.
    pub fn execute_pairing<T>(
        &self,
        actor: &Actor,
        command: impl FnOnce(&mut Broker, Timestamp, &mut Vec<Effect>) -> Result<T, BrokerError>,
    ) -> Result<T, ServerError> {
        // Nobody waits for the ticket: the store's writer logs a failed batch itself, and a
        // task per pull only to log it again would be work on the pairing path.
        let (value, _ticket) = self.run_command(actor, command)?;
        Ok(value)
    }

    /// Runs one command on the core for `actor` (named in the history entries it writes)
    /// and carries out its effects (see module docs).
    pub async fn execute<T>(
        &self,
        actor: &Actor,
        command: impl FnOnce(&mut Broker, Timestamp, &mut Vec<Effect>) -> Result<T, BrokerError>,
    ) -> Result<(T, CommitReport), ServerError> {
        let (value, ticket) = self.run_command(actor, command)?;
        let report = match ticket {
            Some(ticket) => ticket.await?,
            None => CommitReport::default(),
        };
        if !report.deleted.is_empty() {
            self.broker().release_codes(&report.deleted);
        }
        Ok((value, report))
    }

    /// The synchronous part of a command: the core under its lock, the store changes
    /// submitted in order, the other effects applied; returns the store's ticket.
    fn run_command<T>(
        &self,
        actor: &Actor,
        command: impl FnOnce(&mut Broker, Timestamp, &mut Vec<Effect>) -> Result<T, BrokerError>,
    ) -> Result<(T, Option<CommitTicket>), ServerError> {
        let (value, ticket) = {
            let mut broker = self.broker();
            let (now, skew_ms) = self.clock.read();
            broker.set_clock_skew(skew_ms);
            let mut effects = Vec::new();
            let queue_before = broker.queue_version();
            let deadline_before = broker.next_deadline();
            let value = command(&mut broker, now, &mut effects)?;
            if broker.queue_version() != queue_before {
                self.queue_changed.notify_one();
            }
            broker.attribute(actor, &mut effects);
            let mut changes = Vec::new();
            let mut ended_sessions = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Persist(change) => changes.push(change),
                    Effect::Unpair { code, drain } => {
                        if let Some(traffic) = self.end_pairing(code, drain) {
                            ended_sessions.push((code, traffic));
                        }
                    }
                    other => self.apply(other),
                }
            }
            // The traffic goes into the same store batch as the change that ended the
            // session, so a closed case's final record carries it.
            for (code, traffic) in ended_sessions {
                self.counters.relayed_bytes.fetch_add(
                    traffic.customer_to_expert + traffic.expert_to_customer,
                    Ordering::Relaxed,
                );
                broker.record_traffic(now, code, traffic, &mut changes);
            }
            self.placement.after_command(&broker, &changes);
            let ticket = (!changes.is_empty()).then(|| self.store.submit(changes));
            // The timer sleeps until the earliest deadline; only a new earliest one wakes it.
            if broker.next_deadline() != deadline_before {
                self.expiry_wake.notify_one();
            }
            (value, ticket)
        };
        Ok((value, ticket))
    }

    /// Ends the relay of a pairing: lets what was already spliced run to its end (`drain`:
    /// a party left on purpose), or resets every stream at once (the case ended, a party
    /// was lost) and returns what it carried.
    fn end_pairing(
        &self,
        code: sosq::SessionCode,
        drain: bool,
    ) -> Option<crate::broker::SessionTraffic> {
        if drain {
            // Noted once the streams are done (see `drains`).
            if let Some(draining) = self.relays.unlink(code) {
                let _ = self.drains.send((code, draining));
            }
            None
        } else {
            self.relays.unpair(code)
        }
    }

    /// Carries out one effect that needs neither the store nor the core; never blocks.
    /// (`Persist` and `Unpair` are handled by [`Shared::run_command`].)
    fn apply(&self, effect: Effect) {
        match effect {
            Effect::Persist(_) | Effect::Unpair { .. } => {}
            Effect::Notify { party, event } => self.push(party, event),
            Effect::Pair {
                code,
                customer,
                expert,
            } => {
                let connection_of = |party| self.parties.get(&party).map(|h| h.connection.clone());
                if let (Some(c), Some(e)) = (connection_of(customer), connection_of(expert)) {
                    self.relays.pair(code, (customer, c), (expert, e));
                }
            }
            Effect::Disconnect {
                party,
                code,
                reason,
            } => {
                if let Some(handle) = self.parties.get(&party) {
                    handle.connection.close(code.into(), reason.as_bytes());
                }
            }
        }
    }

    /// Whether a staff account (if any) still holds a valid token. An unreadable users file
    /// counts as "no": failing closed is the safe side for access control.
    pub(crate) fn still_authorized(&self, user: Option<&crate::store::users::User>) -> bool {
        match user {
            None => true,
            Some(user) => self.users.still_valid(user).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the users file");
                false
            }),
        }
    }

    /// The wrong-code budgets; a panic elsewhere leaves them usable.
    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` if `party`, connected from `address`, must wait before trying another
    /// session code.
    fn check_throttle(&self, party: PartyId, address: std::net::IpAddr) -> Result<(), ServerError> {
        self.throttle()
            .check(party, address, tokio::time::Instant::now())
            .map_err(ServerError::Throttled)
    }

    /// Takes one SOS request from `address`'s budget. Errors: the budget is spent (with
    /// how long to wait).
    fn take_sos(&self, address: std::net::IpAddr) -> Result<(), ServerError> {
        self.sos_throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(address, tokio::time::Instant::now())
            .map_err(ServerError::SosThrottled)
    }

    /// Charges a wrong session code to `party`, its `address` and the total.
    fn charge_wrong_code(&self, party: PartyId, address: std::net::IpAddr) {
        self.throttle()
            .failed(party, address, tokio::time::Instant::now());
    }

    /// Closes every staff connection whose token was revoked since it connected.
    fn drop_revoked(&self) {
        for party in self.parties.iter() {
            if !self.still_authorized(party.user.as_ref()) {
                tracing::warn!(user = ?party.user.as_ref().map(|u| &u.name), "closing a revoked user's connection");
                party.connection.close(
                    close_code::UNAUTHENTICATED.into(),
                    connection::REVOKED.as_bytes(),
                );
            }
        }
    }

    /// Pushes an event to a party; one that stopped reading its control stream is cut off
    /// rather than buffered without bound.
    fn push(&self, party: PartyId, event: sosq::protocol::Event) {
        if let Some(handle) = self.parties.get(&party) {
            if handle
                .outbox
                .try_send(Box::new(ServerMessage::Event(event)))
                .is_err()
            {
                handle.connection.close(
                    close_code::PROTOCOL_ERROR.into(),
                    b"too many unread messages on the control stream",
                );
            }
        }
    }

    /// A party's connection ended: the core frees its seat, the throttle its budget.
    async fn party_left(&self, party: PartyId, actor: &Actor, departure: Departure) {
        self.parties.remove(&party);
        self.queue_watchers.remove(&party);
        self.uploads.drop_party(party);
        self.throttle().forget(party);
        let left = self
            .execute(actor, |broker, now, out| {
                broker.disconnect(now, party, departure, out);
                Ok(())
            })
            .await;
        if let Err(e) = left {
            tracing::error!(error = %e, "could not record a disconnect");
        }
    }
}

/// Turns a selection request into the store operation the core expects.
pub(crate) fn deletion(
    selector: &sosq::protocol::DeleteSelector,
    now: Timestamp,
) -> Result<Persist, BrokerError> {
    use crate::broker::CaseSelection;
    use sosq::protocol::DeleteSelector;
    match selector {
        DeleteSelector::Codes(codes) if codes.is_empty() => Err(BrokerError::InvalidInput(
            "name at least one code to delete".into(),
        )),
        DeleteSelector::Codes(codes) => Ok(Persist::Delete(codes.clone())),
        DeleteSelector::Filter(filter) if filter.is_empty() => Err(BrokerError::InvalidInput(
            "a bulk delete needs codes or a filter (state, age, team, priority, times or \
             text); refusing to delete every case"
                .into(),
        )),
        DeleteSelector::Filter(filter) => {
            Ok(Persist::DeleteWhere(CaseSelection::resolve(filter, now)?))
        }
    }
}

/// The SOS budget per address from the daemon's settings.
fn sos_budget(config: &Config) -> throttle::Budget {
    throttle::Budget {
        burst: config.sos_per_address_burst,
        per_minute: config.sos_per_address_per_minute,
    }
}
