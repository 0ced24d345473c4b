//! Relay throughput, not a timed test: `cargo bench --bench relay`.
//!
//! In one run on one machine, the same bulk transfer (one stream, client to server) goes
//! (a) over a direct quinn connection to an in-process endpoint built with sosqd's own TLS
//! and transport settings, and (b) through a real `sosqd` process, customer → broker →
//! expert. Prints both throughputs, their ratio, and the broker's CPU seconds per GB
//! relayed (utime + stime of the daemon from `/proc/<pid>/stat`).
//!
//! `SOSQ_BENCH_MB` sets the transfer size (default 1024 MiB), `SOSQ_BENCH_ROUNDS` the
//! rounds of each (default 3; the best round of each is reported).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sosq::protocol::{Event, Reply, Request, StreamKind};
use sosq::{Client, ConnectOptions};
use sosqd::loadgen::{self, sosqd_command, DaemonProcess};

const CHUNK: usize = 64 * 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let bytes = env_or("SOSQ_BENCH_MB", 1024) * 1024 * 1024;
    let rounds = env_or("SOSQ_BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let daemon = Daemon::start()?;
        println!("sosqd pid {} (release build)", daemon.process.child.id());
        let mut direct_best = 0f64;
        let mut relayed_best = 0f64;
        let mut cpu_per_gb = Vec::new();
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let direct = direct_transfer(bytes).await?;
            let (relayed, cpu) = relayed_transfer(&daemon, bytes).await?;
            let gb = bytes as f64 / 1e9;
            let ratio = mbps(bytes, relayed) / mbps(bytes, direct);
            println!(
                "round {round}: direct {:.0} MB/s, relayed {:.0} MB/s, ratio {ratio:.2}, broker {:.2} CPU-s/GB",
                mbps(bytes, direct),
                mbps(bytes, relayed),
                cpu / gb
            );
            ratios.push(ratio);
            direct_best = direct_best.max(mbps(bytes, direct));
            relayed_best = relayed_best.max(mbps(bytes, relayed));
            cpu_per_gb.push(cpu / gb);
        }
        cpu_per_gb.sort_by(f64::total_cmp);
        let median_cpu = cpu_per_gb[cpu_per_gb.len() / 2];
        ratios.sort_by(f64::total_cmp);
        let median_ratio = ratios[ratios.len() / 2];
        println!();
        println!(
            "transfer: {} MiB per round, best of {rounds} rounds",
            bytes / (1024 * 1024)
        );
        println!("direct quinn (baseline): {direct_best:.0} MB/s");
        println!("relayed through sosqd:   {relayed_best:.0} MB/s");
        println!(
            "ratio relayed/direct:    {:.2} (best vs best), {median_ratio:.2} (median of rounds)",
            relayed_best / direct_best
        );
        println!("broker CPU per GB:       {median_cpu:.2} s (median)");
        Ok(())
    })
}

fn mbps(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Writes `bytes` on `send`, finishes, and waits for the receiver's 8-byte count.
async fn send_all(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    bytes: u64,
) -> anyhow::Result<Duration> {
    let chunk = vec![0x5a_u8; CHUNK];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        send.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    send.finish()?;
    let answer = recv.read_to_end(8).await?;
    let took = started.elapsed();
    let count = u64::from_be_bytes(answer.as_slice().try_into()?);
    if count != bytes {
        bail!("receiver got {count} of {bytes} bytes");
    }
    Ok(took)
}

/// Reads to EOF and answers with the byte count.
async fn receive_all(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> anyhow::Result<()> {
    let mut count = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        count += chunk.bytes.len() as u64;
    }
    send.write_all(&count.to_be_bytes()).await?;
    send.finish()?;
    let _ = send.stopped().await;
    Ok(())
}

/// (a) client → in-process server, same TLS and transport settings as sosqd.
async fn direct_transfer(bytes: u64) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let (endpoint, fingerprint) = loadgen::bare_endpoint(dir.path(), None)?;
    let addr = endpoint.local_addr()?;
    let sink = tokio::spawn(async move {
        let incoming = endpoint
            .accept()
            .await
            .ok_or_else(|| anyhow!("no client"))?;
        let connection = incoming.await?;
        let (send, recv) = connection.accept_bi().await?;
        receive_all(send, recv).await?;
        connection.close(0u32.into(), b"done");
        anyhow::Ok(())
    });
    let options = ConnectOptions {
        server: addr.to_string(),
        fingerprint,
        token: None,
        ca: None,
    };
    let (client_endpoint, connection) = sosq::client::connect_quic(&options).await?;
    let (send, recv) = connection.open_bi().await?;
    let took = send_all(send, recv, bytes).await?;
    sink.await??;
    connection.close(0u32.into(), b"done");
    client_endpoint.wait_idle().await;
    Ok(took)
}

/// (b) customer → sosqd → expert; returns the time and the broker's CPU seconds.
async fn relayed_transfer(daemon: &Daemon, bytes: u64) -> anyhow::Result<(Duration, f64)> {
    let mut customer = Client::connect(&daemon.options(None)).await?;
    let mut events = customer.take_events().ok_or_else(|| anyhow!("no events"))?;
    customer
        .request(Request::OpenSos {
            customer: "bench".into(),
            description: String::new(),
            priority: Default::default(),
            group: None,
        })
        .await?;
    let mut expert = Client::connect(&daemon.options(Some(&daemon.token))).await?;
    match expert.request(Request::Pull { wait: false }).await? {
        Reply::Attached { .. } => {}
        other => bail!("pull: {other:?}"),
    }
    while !matches!(events.recv().await, Some(Event::Paired { .. })) {}
    let cpu_before = daemon.cpu_seconds()?;
    let (send, recv) = customer.open_stream(StreamKind::Chat).await?;
    let sink = async {
        let (_, send, recv) = expert.accept_stream().await?;
        receive_all(send, recv).await
    };
    let (took, sunk) = tokio::join!(send_all(send, recv, bytes), sink);
    sunk?;
    let took = took?;
    let cpu = daemon.cpu_seconds()? - cpu_before;
    expert.close().await;
    customer.close().await;
    Ok((took, cpu))
}

/// A real sosqd (release build) with one expert.
struct Daemon {
    process: DaemonProcess,
    token: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> anyhow::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let bin = Path::new(env!("CARGO_BIN_EXE_sosqd"));
        let token = sosqd_command(
            bin,
            dir.path(),
            &["user", "add", "bench", "--role", "expert"],
        )?;
        let process = DaemonProcess::start(bin, dir.path(), &[], "warn,sosqd=info", None)?;
        Ok(Daemon {
            process,
            token,
            _dir: dir,
        })
    }

    fn options(&self, token: Option<&str>) -> ConnectOptions {
        self.process.options(token)
    }

    /// utime + stime of the daemon, in seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        loadgen::cpu_seconds(self.process.child.id()).context("reading the daemon's CPU time")
    }
}
