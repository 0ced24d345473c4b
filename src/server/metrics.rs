//! The Prometheus endpoint (`metrics_listen`, off by default): a tiny HTTP/1.1 responder
//! serving `GET /metrics` in the Prometheus text format and `GET /healthz` (200 "ok" while
//! serving, 503 once shutdown has begun, for load balancers and orchestrators). Nothing else
//! is served, every request is read with a size and time limit, and the connection is closed
//! after one answer.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sosq::protocol::{CaseState, Priority};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Shared;
use crate::broker::{QueueId, RESPONSE_BUCKETS};

/// Upper bounds (seconds) of the pairing-latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Counters kept by the shell (the core keeps its own, see `broker::Stats`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connection attempts refused before the handshake.
    pub refused_connections: AtomicU64,
    /// Hellos with an unknown or revoked token.
    pub failed_authentications: AtomicU64,
    /// Bytes copied between paired parties.
    pub relayed_bytes: AtomicU64,
    /// Server time from a request to the reply that paired two parties.
    pairing_latency: Mutex<LatencyHistogram>,
}

#[derive(Debug, Default)]
struct LatencyHistogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Counters {
    /// Records how long a pairing request took.
    pub fn observe_pairing(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut histogram = self
            .pairing_latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }
}

/// Serves the endpoint until aborted.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let mut filled = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while filled < request.len() {
                    let n = stream.read(&mut request[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                    if request[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&request[..filled]);
            let response = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                let mut body = render(&shared);
                body.push_str(&shared.placement.metrics(&shared).await);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else if head.starts_with("GET /healthz ") {
                let (status, body) = health(&shared);
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The `/healthz` answer: the HTTP status line's code and reason, and the body.
fn health(shared: &Shared) -> (&'static str, &'static str) {
    if shared.is_shutting_down() {
        ("503 Service Unavailable", "shutting down\n")
    } else {
        ("200 OK", "ok\n")
    }
}

/// A cluster node's own figures (whether its lease holds, how many pulls wait on it) and
/// the shared queue's (see `ClusterNode`'s `Placement::metrics`). The shared figures are
/// the same on every node: sum them per node, not across nodes.
pub(super) async fn render_cluster(
    shared: &Shared,
    cluster: &crate::cluster::Cluster,
    lease_holds: bool,
    waiting_pulls: usize,
) -> String {
    let mut out = String::new();
    let mut lines = Vec::new();
    let name = family(
        &mut out,
        "sosqd_cluster_lease_valid",
        "gauge",
        "1 while this node's lease holds (it serves its cases), else 0.",
    );
    let node = escape(cluster.node());
    lines.push(format!(
        "{name}{{node=\"{node}\"}} {}",
        u8::from(lease_holds)
    ));
    flush(&mut out, &mut lines);
    let name = family(
        &mut out,
        "sosqd_cluster_cases_homed",
        "gauge",
        "Open cases this node serves (their customers' connections, their relays).",
    );
    lines.push(format!(
        "{name}{{node=\"{node}\"}} {}",
        shared.broker().open_cases()
    ));
    flush(&mut out, &mut lines);
    let name = family(
        &mut out,
        "sosqd_cluster_waiting_pulls",
        "gauge",
        "Pulls on this node waiting for a case of their queues (`sosq pull --wait`).",
    );
    lines.push(format!("{name}{{node=\"{node}\"}} {}", waiting_pulls));
    flush(&mut out, &mut lines);
    match cluster.summary().await {
        Ok(summary) => {
            let name = family(
                &mut out,
                "sosq_cluster_nodes_live",
                "gauge",
                "Nodes of the cluster whose lease holds.",
            );
            lines.push(format!("{name} {}", summary.live_nodes));
            flush(&mut out, &mut lines);
            let name = family(
                &mut out,
                "sosq_cluster_queue_length",
                "gauge",
                "Cases waiting in the shared queue, per team, online or not (the same on every node).",
            );
            for (team, online, count) in summary.waiting {
                lines.push(format!(
                    "{name}{{team=\"{}\",online=\"{online}\"}} {count}",
                    escape(&team)
                ));
            }
            flush(&mut out, &mut lines);
        }
        Err(error) => tracing::warn!(%error, "no cluster figures for /metrics"),
    }
    out
}

/// The metrics in Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let now = shared.now();
    let (open, stats, queues) = {
        let broker = shared.broker();
        (
            broker.open_by_state(),
            broker.stats().clone(),
            broker.queue_summary(),
        )
    };
    let mut out = String::new();
    let mut lines = Vec::new();

    let name = family(
        &mut out,
        "sosqd_build_info",
        "gauge",
        "Always 1; the labels say which build runs.",
    );
    lines.push(format!(
        "{name}{{version=\"{}\",commit=\"{}\"}} 1",
        escape(crate::VERSION),
        escape(crate::COMMIT)
    ));
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosqd_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    lines.push(format!("{name} {:.3}", shared.uptime().as_secs_f64()));
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosqd_open_connections",
        "gauge",
        "QUIC connections open now, handshakes in progress included.",
    );
    lines.push(format!("{name} {}", shared.open_connections()));
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosqd_upload_bytes_in_flight",
        "gauge",
        "Bytes reserved by customers' unfinished attachment uploads (max_upload_bytes_in_flight bounds it).",
    );
    lines.push(format!("{name} {}", shared.uploads.reserved()));
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosqd_connected_parties",
        "gauge",
        "Parties connected now (past their hello), by role.",
    );
    for (role, count) in shared.connected_by_role() {
        lines.push(format!("{name}{{role=\"{role}\"}} {count}"));
    }
    flush(&mut out, &mut lines);

    let name = family(&mut out, "sosq_open_cases", "gauge", "Open cases by state.");
    for (state, count) in open {
        lines.push(format!("{name}{{state=\"{state}\"}} {count}"));
    }
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosq_cases_ended_total",
        "counter",
        "Cases closed or expired since start.",
    );
    lines.push(format!(
        "{name}{{state=\"{}\"}} {}",
        CaseState::Closed,
        stats.closed
    ));
    lines.push(format!(
        "{name}{{state=\"{}\"}} {}",
        CaseState::Expired,
        stats.expired
    ));
    flush(&mut out, &mut lines);

    let length = family(
        &mut out,
        "sosq_queue_length",
        "gauge",
        "Cases waiting, per queue.",
    );
    for (id, count, _) in &queues {
        lines.push(format!("{length}{{{}}} {count}", queue_labels(id)));
    }
    flush(&mut out, &mut lines);
    let oldest = family(
        &mut out,
        "sosq_queue_oldest_wait_seconds",
        "gauge",
        "How long the longest-waiting case of each queue has waited.",
    );
    for (id, _, since) in &queues {
        let waited = now.since(*since).as_secs_f64();
        lines.push(format!("{oldest}{{{}}} {waited:.3}", queue_labels(id)));
    }
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosq_first_response_seconds",
        "histogram",
        "Time from starting to wait to the first expert, by priority.",
    );
    for (priority, histogram) in Priority::ALL.iter().zip(&stats.first_response) {
        for (bound, count) in RESPONSE_BUCKETS.iter().zip(histogram.buckets) {
            lines.push(format!(
                "{name}_bucket{{priority=\"{priority}\",le=\"{bound}\"}} {count}"
            ));
        }
        lines.push(format!(
            "{name}_bucket{{priority=\"{priority}\",le=\"+Inf\"}} {}",
            histogram.count
        ));
        lines.push(format!(
            "{name}_sum{{priority=\"{priority}\"}} {:.3}",
            histogram.sum
        ));
        lines.push(format!(
            "{name}_count{{priority=\"{priority}\"}} {}",
            histogram.count
        ));
    }
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosq_response_targets_missed_total",
        "counter",
        "First responses that came after their target, by priority.",
    );
    for (priority, missed) in Priority::ALL.iter().zip(stats.targets_missed) {
        lines.push(format!("{name}{{priority=\"{priority}\"}} {missed}"));
    }
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosq_pairings_total",
        "counter",
        "Times a customer and an expert were connected.",
    );
    lines.push(format!("{name} {}", stats.pairings));
    flush(&mut out, &mut lines);

    let name = family(
        &mut out,
        "sosq_pairing_latency_seconds",
        "histogram",
        "Server time from a request to the reply that paired two parties.",
    );
    {
        let latency = shared
            .counters
            .pairing_latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (bound, count) in LATENCY_BUCKETS.iter().zip(latency.buckets) {
            lines.push(format!("{name}_bucket{{le=\"{bound}\"}} {count}"));
        }
        lines.push(format!("{name}_bucket{{le=\"+Inf\"}} {}", latency.count));
        lines.push(format!("{name}_sum {:.6}", latency.sum));
        lines.push(format!("{name}_count {}", latency.count));
    }
    flush(&mut out, &mut lines);

    let counters = &shared.counters;
    for (name, help, value) in [
        (
            "sosq_relayed_bytes_total",
            "Bytes relayed between paired parties.",
            &counters.relayed_bytes,
        ),
        (
            "sosq_refused_connections_total",
            "Connection attempts refused before the handshake.",
            &counters.refused_connections,
        ),
        (
            "sosq_failed_authentications_total",
            "Hellos with an unknown or revoked token.",
            &counters.failed_authentications,
        ),
    ] {
        let name = family(&mut out, name, "counter", help);
        lines.push(format!("{name} {}", value.load(Ordering::Relaxed)));
        flush(&mut out, &mut lines);
    }
    out
}

/// Writes the HELP and TYPE lines of a metric family; returns its name.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> String {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name.to_string()
}

fn flush(out: &mut String, lines: &mut Vec<String>) {
    for line in lines.drain(..) {
        out.push_str(&line);
        out.push('\n');
    }
}

fn queue_labels(id: &QueueId) -> String {
    match id {
        QueueId::Group(group) => format!("group=\"{}\"", escape(group)),
        QueueId::Expert(expert) => format!("expert=\"{}\"", escape(expert)),
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
