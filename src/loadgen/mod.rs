//! The load generator behind `cargo bench --bench scale` and the scale smoke test: many
//! simulated customers, experts and an admin driving a running sosqd from one process,
//! plus the bare-quinn baseline (a trivial server with sosqd's own TLS and transport
//! settings, and the client side of its one round trip).
//!
//! Connections are spread over a few [`SharedEndpoint`]s (one UDP socket each), the way
//! one quinn endpoint carries many connections. Every loop here is bounded in count, and
//! every network wait in time ([`PATIENCE`]), so a broken daemon ends a run with errors
//! rather than a hang. Nothing here judges a figure: callers print or check counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sosq::protocol::{CaseFilter, CaseState, DeleteSelector, Event, Priority, Reply, Request};
use sosq::{Client, ClientError, ConnectOptions, SessionCode, SharedEndpoint};
use tokio::sync::mpsc;

mod pairing;
pub mod process;
mod seed;

pub use pairing::{
    pairing, pairing_spread, percentiles, PairingPlan, PairingReport, PAIRING_STAGES,
};
pub use process::{cpu_seconds, rss_bytes, sosqd_command, DaemonProcess};
pub use seed::{seed_closed_cases, seed_finished_cases, SEED_BATCH};

use crate::store::StoreError;

/// The longest any single network step of the generator may take before it counts as a
/// failure; a guard against hangs, not a performance figure.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Why a simulated party failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The client library failed (connect, hello, a refusal, a lost connection).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A bare-quinn step failed.
    #[error("bare quinn: {0}")]
    Quinn(String),
    /// The daemon answered something the scenario does not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// A step took longer than [`PATIENCE`].
    #[error("timed out while {0}")]
    TimedOut(&'static str),
    /// Seeding the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn within<T>(
    what: &'static str,
    step: impl std::future::Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    tokio::time::timeout(PATIENCE, step)
        .await
        .map_err(|_| LoadError::TimedOut(what))?
}

/// A few client endpoints to one daemon; connections go round-robin over them.
pub struct Fleet {
    endpoints: Vec<SharedEndpoint>,
    next: AtomicUsize,
}

impl Fleet {
    /// Opens `endpoints` client endpoints to the daemon in `options`, bound round-robin on
    /// the `sources` addresses (each on an ephemeral port). Loopback load may spread over
    /// 127.0.0.1, 127.0.0.2, ... so per-address limits see several addresses.
    pub async fn open(
        options: &ConnectOptions,
        endpoints: usize,
        sources: &[IpAddr],
    ) -> Result<Fleet, LoadError> {
        let mut opened = Vec::with_capacity(endpoints.max(1));
        for i in 0..endpoints.max(1) {
            let ip = sources
                .get(i % sources.len().max(1))
                .copied()
                .unwrap_or(IpAddr::from([127, 0, 0, 1]));
            opened.push(SharedEndpoint::open(options, SocketAddr::new(ip, 0)).await?);
        }
        Ok(Fleet {
            endpoints: opened,
            next: AtomicUsize::new(0),
        })
    }

    fn pick(&self) -> &SharedEndpoint {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.endpoints[i % self.endpoints.len()]
    }

    /// Connects and greets one party (`token` none: a customer).
    pub async fn party(&self, token: Option<&str>) -> Result<Client, LoadError> {
        let endpoint = self.pick();
        within("connecting", async move {
            Ok(Client::connect_on(endpoint, token.map(str::to_string)).await?)
        })
        .await
    }

    /// The bare baseline's client step: connect, open a stream, one byte there and back.
    /// Returns the connection and its stream, held open for as long as the caller keeps
    /// them (an idle connection, kept alive like a waiting customer's).
    pub async fn bare_round_trip(&self) -> Result<BareConnection, LoadError> {
        let endpoint = self.pick();
        within("a bare round trip", async move {
            let connection = endpoint.connect().await?;
            let quinn = |e: &dyn std::fmt::Display| LoadError::Quinn(e.to_string());
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| quinn(&e))?;
            send.write_all(&[1]).await.map_err(|e| quinn(&e))?;
            let mut answer = [0u8; 1];
            recv.read_exact(&mut answer).await.map_err(|e| quinn(&e))?;
            Ok(BareConnection {
                connection,
                _streams: (send, recv),
            })
        })
        .await
    }

    /// Closes every endpoint's connections and waits (bounded) for them to go idle.
    pub async fn close(&self) {
        for shared in &self.endpoints {
            shared.endpoint().close(0u32.into(), b"load run over");
        }
        for shared in &self.endpoints {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), shared.endpoint().wait_idle()).await;
        }
    }
}

/// A baseline connection held open by the load generator.
pub struct BareConnection {
    /// The connection.
    pub connection: quinn::Connection,
    _streams: (quinn::SendStream, quinn::RecvStream),
}

/// A customer that opened an SOS case and waits in its queue.
pub struct WaitingCustomer {
    /// The connected party.
    pub client: Client,
    /// The case's session code.
    pub code: SessionCode,
    /// The events the daemon pushes to it (queue position, pairing).
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// One SOS request as `sosq request` makes it: connect, then hello and the request of a
/// durable case in `group`'s queue (none: `general`) in one flight, and its code back.
pub async fn open_sos(fleet: &Fleet, group: Option<&str>) -> Result<WaitingCustomer, LoadError> {
    let endpoint = fleet.pick();
    let request = sos_request(group);
    let (client, reply) = within("connecting and opening an SOS case", async move {
        Ok(Client::connect_on_with(endpoint, None, Some(request)).await?)
    })
    .await?;
    waiting_customer(client, reply)
}

/// An SOS request on an already greeted customer connection.
pub async fn open_sos_on(
    mut client: Client,
    group: Option<&str>,
) -> Result<WaitingCustomer, LoadError> {
    let request = sos_request(group);
    let reply = within("opening an SOS case", async {
        Ok(client.request(request).await?)
    })
    .await?;
    waiting_customer(client, Some(reply))
}

fn sos_request(group: Option<&str>) -> Request {
    Request::OpenSos {
        customer: "load customer".into(),
        description: "scale benchmark".into(),
        priority: Priority::Normal,
        group: group.map(str::to_string),
    }
}

/// The waiting customer an SOS `reply` on `client` made.
fn waiting_customer(
    mut client: Client,
    reply: Option<Reply>,
) -> Result<WaitingCustomer, LoadError> {
    let events = client
        .take_events()
        .ok_or_else(|| LoadError::Unexpected("events already taken".into()))?;
    match reply {
        Some(Reply::Attached { case, .. }) => Ok(WaitingCustomer {
            client,
            code: case.code,
            events,
        }),
        other => Err(LoadError::Unexpected(format!("{other:?}"))),
    }
}

/// What a batch of connection attempts gave.
pub struct Batch<T> {
    /// What succeeded, in no particular order.
    pub done: Vec<T>,
    /// Attempts that failed, with the first few errors.
    pub failures: usize,
    /// Up to five of the errors, for the report.
    pub errors: Vec<String>,
    /// Wall time from the first attempt to the last answer.
    pub elapsed: Duration,
}

impl<T> Batch<T> {
    /// Successes per second over the batch.
    pub fn per_second(&self) -> f64 {
        self.done.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `count` attempts of `attempt`, `concurrency` at a time, and keeps what they return.
pub async fn run_many<T, F, Fut>(count: usize, concurrency: usize, attempt: F) -> Batch<T>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, LoadError>> + Send,
{
    let attempt = Arc::new(attempt);
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let attempt = attempt.clone();
            let issued = issued.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut errors = Vec::new();
                while issued.fetch_add(1, Ordering::Relaxed) < count {
                    match attempt().await {
                        Ok(value) => done.push(value),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let mut batch = Batch {
        done: Vec::with_capacity(count),
        failures: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        match worker.await {
            Ok((done, errors)) => {
                batch.done.extend(done);
                batch.failures += errors.len();
                batch
                    .errors
                    .extend(errors.into_iter().take(5 - batch.errors.len().min(5)));
            }
            Err(e) => {
                batch.failures += 1;
                batch.errors.push(e.to_string());
            }
        }
    }
    batch.elapsed = started.elapsed();
    batch
}

/// SOS intake: `count` customers, `concurrency` at a time, each connecting, greeting and
/// opening a case in `group`; the customers stay connected and waiting in the result.
pub async fn intake(
    fleet: Arc<Fleet>,
    count: usize,
    concurrency: usize,
    group: Option<String>,
) -> Batch<WaitingCustomer> {
    run_many(count, concurrency, move || {
        let fleet = fleet.clone();
        let group = group.clone();
        async move { open_sos(&fleet, group.as_deref()).await }
    })
    .await
}

/// The baseline of intake: `count` bare connections with one round trip each.
pub async fn bare_intake(
    fleet: Arc<Fleet>,
    count: usize,
    concurrency: usize,
) -> Batch<BareConnection> {
    run_many(count, concurrency, move || {
        let fleet = fleet.clone();
        async move { fleet.bare_round_trip().await }
    })
    .await
}

/// An admin's bulk delete of every closed case created more than `older_than` ago, on
/// the admin's connection (made beforehand, so a busy daemon's handshake queue is not
/// part of it); returns how many the daemon deleted and how long the request took.
pub async fn delete_closed(
    mut admin: Client,
    older_than: Duration,
) -> Result<(u64, Duration), LoadError> {
    let filter = CaseFilter {
        state: Some(CaseState::Closed),
        older_than_ms: Some(older_than.as_millis() as u64),
        ..CaseFilter::default()
    };
    let started = Instant::now();
    let reply = tokio::time::timeout(
        PATIENCE * 10,
        admin.request(Request::Delete(DeleteSelector::Filter(filter))),
    )
    .await
    .map_err(|_| LoadError::TimedOut("deleting"))??;
    let took = started.elapsed();
    admin.close().await;
    match reply {
        Reply::Deleted { count, .. } => Ok((count, took)),
        other => Err(LoadError::Unexpected(format!("{other:?}"))),
    }
}

/// The bare baseline's endpoint: sosqd's own TLS and transport settings
/// (`transport::bind` with the default config, or `liveness` as (keep_alive, idle_timeout)
/// when a bench compares other figures) on a loopback port, with a fresh self-signed
/// identity in `dir`. Returns it with its certificate's fingerprint.
pub fn bare_endpoint(
    dir: &std::path::Path,
    liveness: Option<(Duration, Duration)>,
) -> Result<(quinn::Endpoint, String), crate::transport::TransportError> {
    let defaults = crate::config::Config::default();
    let (keep_alive, idle_timeout) =
        liveness.unwrap_or((defaults.keep_alive, defaults.idle_timeout));
    let config = crate::config::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_path_buf(),
        keep_alive,
        idle_timeout,
        ..defaults
    };
    let identity = crate::transport::Identity::load_or_create(dir)?;
    let endpoint = crate::transport::bind(&config, &identity)?;
    Ok((endpoint, identity.fingerprint()))
}

/// Serves the bare baseline: accepts every connection, answers one byte on its first
/// stream, then holds the connection until the peer goes. Runs until the endpoint closes.
pub async fn serve_bare(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            let Ok((mut send, mut recv)) = connection.accept_bi().await else {
                return;
            };
            let mut byte = [0u8; 1];
            if recv.read_exact(&mut byte).await.is_ok() {
                let _ = send.write_all(&byte).await;
            }
            connection.closed().await;
        });
    }
}
