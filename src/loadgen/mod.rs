//! The load generator behind `cargo bench --bench scale` and the scale smoke test: many
//! simulated customers, experts and an admin driving a running sosqd from one process,
//! plus the bare-quinn baseline (a trivial server with sosqd's own TLS and transport
//! settings, and the client side of its one round trip).
//!
//! Connections are spread over a few [`SharedEndpoint`]s (one UDP socket each), the way
//! one quinn endpoint carries many connections. Every loop here is bounded in count, and
//! every network wait in time ([`PATIENCE`]), so a broken daemon ends a run with errors
//! rather than a hang. Nothing here judges a figure: callers print or check counts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sosq::protocol::{
    CaseFilter, CaseState, DeleteSelector, Event, Priority, Reply, Request, StreamKind,
};
use sosq::{Client, ClientError, ConnectOptions, SessionCode, SharedEndpoint};
use tokio::sync::mpsc;

pub mod process;
mod seed;

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

/// How a pairing run is paced.
#[derive(Debug, Clone)]
pub struct PairingPlan {
    /// Pairings to make.
    pub pairings: usize,
    /// Pulls started per second.
    pub per_second: f64,
    /// How far ahead of its expert's pull each customer opens its case, so the queue is
    /// not empty when the pull comes.
    pub customer_lead: Duration,
    /// The team queue to use (none: `general`).
    pub group: Option<String>,
    /// Experts on shift: expert `j` takes slots `j`, `j + experts`, ... one session after
    /// another on the same connection, as staff working the queue do. `0` (or as many as
    /// `pairings`) gives every pairing an expert of its own that leaves after it.
    pub experts: usize,
    /// Notified when every party is connected and the paced pulls begin.
    pub pacing: Option<Arc<tokio::sync::Notify>>,
}

/// The names of [`PairingReport::stages`]: the expert's pull until its reply, the reply
/// until the expert's `Paired` event, the pull until the customer's `Paired` event, and
/// the expert's `Paired` until the customer accepted the expert's stream.
pub const PAIRING_STAGES: [&str; 4] = [
    "pull -> reply",
    "reply -> expert Paired",
    "pull -> customer Paired",
    "expert Paired -> stream accepted",
];

/// What a pairing run measured.
#[derive(Debug, Default)]
pub struct PairingReport {
    /// From each expert's pull to the customer holding the relayed stream the expert
    /// opened after `Event::Paired`.
    pub latencies: Vec<Duration>,
    /// When each pull of `latencies` started, in the same order.
    pub pulled_at: Vec<Instant>,
    /// Where the time went, per pairing: see [`PAIRING_STAGES`].
    pub stages: [Vec<Duration>; 4],
    /// Pairings that did not complete (with the first few errors).
    pub failures: usize,
    /// Up to five errors.
    pub errors: Vec<String>,
    /// From the first pull to the last pairing.
    pub elapsed: Duration,
}

impl PairingReport {
    /// Pairings completed per second.
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// p50, p99 and max of a set of durations (zero when empty).
pub fn percentiles(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| {
        if sorted.is_empty() {
            Duration::ZERO
        } else {
            sorted[((sorted.len() - 1) as f64 * q).round() as usize]
        }
    };
    (at(0.50), at(0.99), at(1.0))
}

/// When each side of one pairing reached each step; each side writes its own at once.
#[derive(Default)]
struct PairingMarks {
    /// The expert's pull sent, its reply, and the expert's `Paired`.
    expert: Option<[Instant; 3]>,
    /// The customer's `Paired`, and the customer holding the expert's stream.
    customer: Option<[Instant; 2]>,
}

/// The marks of every pairing of a run, by session code.
type Marks = HashMap<SessionCode, PairingMarks>;

/// Pairing at a steady pace. First every party is connected and greeted (not timed:
/// a handshake is intake's cost, and a 2-core box cannot do two handshakes per pairing
/// at 1,000 pairings/s besides). Then, for pairing `i`, a customer opens an SOS case
/// `customer_lead` before slot `i`; the expert whose turn slot `i` is pulls at that slot
/// and opens a chat stream on `Event::Paired`; the customer accepts it, which ends the
/// measured span, then closes its case and leaves. Pulls take the queue's front, so pull
/// and customer are matched by session code afterwards.
pub async fn pairing(fleet: Arc<Fleet>, expert_token: &str, plan: PairingPlan) -> PairingReport {
    let mut report = PairingReport::default();
    let experts_on_shift = match plan.experts {
        0 => plan.pairings,
        n => n.min(plan.pairings),
    };
    let connect = |count: usize, token: Option<String>| {
        let fleet = fleet.clone();
        run_many(count, 64, move || {
            let fleet = fleet.clone();
            let token = token.clone();
            async move { fleet.party(token.as_deref()).await }
        })
    };
    let customers = connect(plan.pairings, None).await;
    let experts = connect(experts_on_shift, Some(expert_token.to_string())).await;
    for batch in [&customers.errors, &experts.errors] {
        report.errors.extend(batch.iter().take(2).cloned());
    }
    report.failures += customers.failures + experts.failures;

    let marks = Arc::new(Mutex::new(Marks::default()));
    let interval = Duration::from_secs_f64(1.0 / plan.per_second.max(0.001));
    let lead = plan.customer_lead.max(interval);
    let start = tokio::time::Instant::now() + lead + Duration::from_millis(100);
    if let Some(pacing) = &plan.pacing {
        pacing.notify_one();
    }
    let mut tasks = Vec::with_capacity(plan.pairings + experts_on_shift);
    for (i, customer) in customers.done.into_iter().enumerate() {
        let slot = start + interval * i as u32;
        let marks = marks.clone();
        let group = plan.group.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(slot - lead).await;
            paired_customer(customer, group.as_deref(), &marks).await
        }));
    }
    let shift = experts.done.len().max(1);
    for (j, expert) in experts.done.into_iter().enumerate() {
        let slots: Vec<_> = (j..plan.pairings)
            .step_by(shift)
            .map(|i| start + interval * i as u32)
            .collect();
        let marks = marks.clone();
        tasks.push(tokio::spawn(async move {
            pulling_expert(expert, slots, &marks).await
        }));
    }
    for task in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(LoadError::Unexpected(e.to_string())),
        };
        match outcome {
            Ok(()) => {}
            Err(e) => {
                report.failures += 1;
                if report.errors.len() < 5 {
                    report.errors.push(e.to_string());
                }
            }
        }
    }
    let marks = marks.lock().unwrap_or_else(|p| p.into_inner());
    let first = marks
        .values()
        .filter_map(|m| m.expert)
        .map(|[pulled, ..]| pulled)
        .min();
    let last = marks
        .values()
        .filter_map(|m| m.customer)
        .map(|[_, accepted]| accepted)
        .max();
    for pairing in marks.values() {
        let (Some([pulled, replied, expert_paired]), Some([customer_paired, accepted])) =
            (pairing.expert, pairing.customer)
        else {
            continue;
        };
        report
            .latencies
            .push(accepted.saturating_duration_since(pulled));
        report.pulled_at.push(pulled);
        let stages = [
            (pulled, replied),
            (replied, expert_paired),
            (pulled, customer_paired),
            (expert_paired, accepted),
        ];
        for (samples, (from, to)) in report.stages.iter_mut().zip(stages) {
            samples.push(to.saturating_duration_since(from));
        }
    }
    if let (Some(first), Some(last)) = (first, last) {
        report.elapsed = last.saturating_duration_since(first);
    }
    report
}

/// The customer of one pairing: marks when it accepted the expert's stream.
async fn paired_customer(
    client: Client,
    group: Option<&str>,
    marks: &Mutex<Marks>,
) -> Result<(), LoadError> {
    let mut waiting = open_sos_on(client, group).await?;
    within("waiting to be paired", async {
        loop {
            match waiting.events.recv().await {
                Some(Event::Paired { .. }) => break Ok(()),
                Some(_) => continue,
                None => break Err(LoadError::Unexpected("disconnected before pairing".into())),
            }
        }
    })
    .await?;
    let paired = Instant::now();
    let (_kind, _send, _recv) = within("accepting the expert's stream", async {
        Ok(waiting.client.accept_stream().await?)
    })
    .await?;
    let accepted = Instant::now();
    {
        let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.entry(waiting.code).or_default().customer = Some([paired, accepted]);
    }
    let close = Request::Close {
        code: waiting.code.to_string(),
        resume_secret: None,
    };
    within("closing the case", async {
        Ok(waiting.client.request(close).await?)
    })
    .await?;
    waiting.client.close().await;
    Ok(())
}

/// An expert on shift: connected beforehand, pulls at each of its `slots` and runs that
/// session to its end before the next.
async fn pulling_expert(
    mut expert: Client,
    slots: Vec<tokio::time::Instant>,
    marks: &Mutex<Marks>,
) -> Result<(), LoadError> {
    let mut events = expert
        .take_events()
        .ok_or_else(|| LoadError::Unexpected("events already taken".into()))?;
    for slot in slots {
        tokio::time::sleep_until(slot).await;
        let pulled = Instant::now();
        let reply = within("pulling", async {
            Ok(expert.request(Request::Pull { wait: true }).await?)
        })
        .await?;
        let replied = Instant::now();
        if !matches!(reply, Reply::Attached { .. } | Reply::Waiting) {
            return Err(LoadError::Unexpected(format!("{reply:?}")));
        }
        let code = within("waiting for Paired", async {
            loop {
                match events.recv().await {
                    Some(Event::Paired { code, .. }) => break Ok(code),
                    Some(_) => continue,
                    None => break Err(LoadError::Unexpected("disconnected before pairing".into())),
                }
            }
        })
        .await?;
        let paired = Instant::now();
        {
            let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
            marks.entry(code).or_default().expert = Some([pulled, replied, paired]);
        }
        let (_send, _recv) = expert.open_stream(StreamKind::Chat).await?;
        // The customer closes the case once it holds the stream; the session then ends.
        within("waiting for the session to end", async {
            loop {
                match events.recv().await {
                    Some(Event::SessionEnded { code: ended, .. }) if ended == code => break Ok(()),
                    Some(_) => continue,
                    None => break Err(LoadError::Unexpected("disconnected in a session".into())),
                }
            }
        })
        .await?;
    }
    expert.close().await;
    Ok(())
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
        Reply::Deleted { count } => Ok((count, took)),
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
