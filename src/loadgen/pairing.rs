//! The pairing run of the scale benchmark: customers open SOS cases on a pace, experts on
//! shift pull them one after another and run each session to its end, and every pairing's
//! marks (pull, reply, `Paired` at each party, the stream accepted) are collected for the
//! latency figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sosq::protocol::{Event, Reply, Request, StreamKind};
use sosq::{Client, SessionCode};

use super::{open_sos_on, run_many, within, Fleet, LoadError};

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
    pairing_spread(vec![fleet], expert_token, plan).await
}

/// [`pairing`] with the parties spread round-robin over `fleets` (the nodes of a cluster,
/// one fleet each): customers and experts alike, so most pulls claim a case homed on
/// another node and follow its redirect.
pub async fn pairing_spread(
    fleets: Vec<Arc<Fleet>>,
    expert_token: &str,
    plan: PairingPlan,
) -> PairingReport {
    let mut report = PairingReport::default();
    let fleets = Arc::new(fleets);
    let next_fleet = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let experts_on_shift = match plan.experts {
        0 => plan.pairings,
        n => n.min(plan.pairings),
    };
    let connect = |count: usize, token: Option<String>| {
        let (fleets, next_fleet) = (fleets.clone(), next_fleet.clone());
        run_many(count, 64, move || {
            let n = next_fleet.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fleet = fleets[n % fleets.len()].clone();
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
        let moves = expert.redirects();
        let reply = within("pulling", async {
            Ok(expert.request(Request::Pull { wait: true }).await?)
        })
        .await?;
        if expert.redirects() != moves {
            // A cluster node sent the pull to the case's home node: the session's events
            // come on the connection there.
            events = expert
                .take_events()
                .ok_or_else(|| LoadError::Unexpected("events already taken".into()))?;
        }
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
