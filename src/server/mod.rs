//! The async shell around the broker core: the QUIC accept loop, one task per connection,
//! the expiry timer, and the place where the core's [`Effect`]s are carried out.
//!
//! Every command runs through [`Shared::execute`]: lock the core, feed it the command and
//! the time, hand the store its changes in order, apply the non-blocking effects (pairing,
//! pushes, disconnects), unlock, and only then wait for the store to commit before the
//! caller replies. So a reply never announces a change the store has not kept.

mod connection;
mod dispatch;
mod expiry;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;
use rand::SeedableRng;
use sosq::protocol::{close_code, ErrorKind, ErrorReply, ServerMessage, Timestamp};
use tokio::sync::{mpsc, Notify};

use crate::broker::{Broker, BrokerError, Effect, PartyId, Persist};
use crate::clock::Clock;
use crate::config::Config;
use crate::relay::Relays;
use crate::store::users::{UserDirectory, UserError};
use crate::store::{CaseStore, CommitReport, StoreError};
use crate::transport::{self, Identity, TlsError, TransportError};

/// Why the server could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The core refused.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The users file failed.
    #[error(transparent)]
    Users(#[from] UserError),
    /// The role may not make this request.
    #[error("{0}")]
    Forbidden(String),
    /// TLS identity problems.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl ServerError {
    /// The refusal a client sees. Internal failures are logged in full and reported
    /// briefly, so file paths and such stay on the server.
    pub fn to_reply(&self) -> ErrorReply {
        let (kind, message) = match self {
            ServerError::Broker(e) => (e.kind(), e.to_string()),
            ServerError::Forbidden(message) => (ErrorKind::Forbidden, message.clone()),
            other => {
                tracing::error!(error = %other, "request failed inside the server");
                (
                    ErrorKind::Internal,
                    "the server failed to carry out the request; try again".to_string(),
                )
            }
        };
        ErrorReply { kind, message }
    }
}

/// A connected party's handle, as other tasks reach it.
pub struct PartyHandle {
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// Messages to write on its control stream.
    pub outbox: mpsc::Sender<ServerMessage>,
}

/// How many messages may wait for a party's control stream before it counts as stuck.
const OUTBOX_CAPACITY: usize = 256;

/// State shared by every task of the daemon.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    broker: Mutex<Broker>,
    store: Arc<dyn CaseStore>,
    users: UserDirectory,
    parties: DashMap<PartyId, PartyHandle>,
    relays: Arc<Relays>,
    expiry_wake: Notify,
    clock: Clock,
    next_party: AtomicU64,
}

impl Shared {
    /// The shared state of a daemon: a core loaded with every stored case.
    pub fn new(
        config: Config,
        store: Arc<dyn CaseStore>,
        clock: Clock,
    ) -> Result<Shared, ServerError> {
        let rng = rand::rngs::StdRng::from_os_rng();
        let mut broker = Broker::new(config.broker(), Box::new(rng));
        for record in store.load_all()? {
            broker.restore(record);
        }
        let relay_limits = config.relay_limits();
        Ok(Shared {
            users: UserDirectory::open(&config.data_dir),
            config,
            broker: Mutex::new(broker),
            store,
            parties: DashMap::new(),
            relays: Arc::new(Relays::new(relay_limits)),
            expiry_wake: Notify::new(),
            clock,
            next_party: AtomicU64::new(1),
        })
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

    /// Runs one command on the core and carries out its effects (see module docs).
    pub async fn execute<T>(
        &self,
        command: impl FnOnce(&mut Broker, Timestamp, &mut Vec<Effect>) -> Result<T, BrokerError>,
    ) -> Result<(T, CommitReport), ServerError> {
        let (value, ticket) = {
            let mut broker = self.broker();
            let now = self.clock.now();
            let mut effects = Vec::new();
            let value = command(&mut broker, now, &mut effects)?;
            let mut changes = Vec::new();
            let mut ended_sessions = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Persist(change) => changes.push(change),
                    Effect::Unpair { code } => {
                        if let Some(traffic) = self.relays.unpair(code) {
                            ended_sessions.push((code, traffic));
                        }
                    }
                    other => self.apply(other),
                }
            }
            // The traffic goes into the same store batch as the change that ended the
            // session, so a closed case's final record carries it.
            for (code, traffic) in ended_sessions {
                broker.record_traffic(now, code, traffic, &mut changes);
            }
            let ticket = (!changes.is_empty()).then(|| self.store.submit(changes));
            if broker.next_deadline().is_some() {
                self.expiry_wake.notify_one();
            }
            (value, ticket)
        };
        let report = match ticket {
            Some(ticket) => ticket.await?,
            None => CommitReport::default(),
        };
        if !report.deleted.is_empty() {
            self.broker().release_codes(&report.deleted);
        }
        Ok((value, report))
    }

    /// Carries out one non-persist effect; never blocks.
    fn apply(&self, effect: Effect) {
        match effect {
            Effect::Persist(_) => {}
            Effect::Notify { party, event } => {
                if let Some(handle) = self.parties.get(&party) {
                    if handle.outbox.try_send(ServerMessage::Event(event)).is_err() {
                        handle.connection.close(
                            close_code::PROTOCOL_ERROR.into(),
                            b"too many unread messages on the control stream",
                        );
                    }
                }
            }
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
            Effect::Unpair { code } => {
                self.relays.unpair(code);
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

    /// A party's connection ended: the core frees its seat.
    async fn party_left(&self, party: PartyId) {
        self.parties.remove(&party);
        let left = self
            .execute(|broker, now, out| {
                broker.disconnect(now, party, out);
                Ok(())
            })
            .await;
        if let Err(e) = left {
            tracing::error!(error = %e, "could not record a disconnect");
        }
    }
}

/// A bound, loaded daemon, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    fingerprint: String,
}

impl Server {
    /// Loads the TLS identity and the stored cases, and binds the endpoint.
    pub fn start(config: Config, store: Arc<dyn CaseStore>) -> Result<Server, ServerError> {
        Server::start_with_clock(config, store, Clock::new())
    }

    /// [`Server::start`] with a chosen clock (tests anchor it).
    pub fn start_with_clock(
        config: Config,
        store: Arc<dyn CaseStore>,
        clock: Clock,
    ) -> Result<Server, ServerError> {
        let identity = Identity::load_or_create(&config.data_dir)?;
        let fingerprint = identity.fingerprint();
        let endpoint = transport::bind(&config, &identity)?;
        let shared = Arc::new(Shared::new(config, store, clock)?);
        Ok(Server {
            shared,
            endpoint,
            fingerprint,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The certificate fingerprint clients pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Serves until `shutdown` completes, then tells every party and closes the endpoint.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let expiry = tokio::spawn(expiry::run(self.shared.clone()));
        let accept = async {
            while let Some(incoming) = self.endpoint.accept().await {
                tokio::spawn(connection::serve(self.shared.clone(), incoming));
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shutdown => tracing::info!("shutting down"),
        }
        expiry.abort();
        self.endpoint
            .close(close_code::SHUTDOWN.into(), b"sosqd is shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
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
        DeleteSelector::Filter(filter)
            if filter.state.is_none() && filter.older_than_ms.is_none() =>
        {
            Err(BrokerError::InvalidInput(
                "a bulk delete needs codes, a state or an age; refusing to delete every case"
                    .into(),
            ))
        }
        DeleteSelector::Filter(filter) => {
            Ok(Persist::DeleteWhere(CaseSelection::resolve(filter, now)))
        }
    }
}
