//! Scale benchmark, not a timed test: `cargo bench --bench scale`.
//!
//! Drives a real release `sosqd` process with the load generator ([`sosqd::loadgen`]) and,
//! in the same run, a bare quinn server with sosqd's own TLS and transport settings (this
//! bench re-run as a separate small process, so its memory is measured the same way):
//!
//! 1. SOS intake: customers/s that connect, say hello, open a durable case and get its
//!    code, vs bare connections/s (connect + stream + one round trip); rounds alternate.
//! 2. Pairing latency at a steady pace: expert's pull → customer holds the relayed stream
//!    the expert opened after `Event::Paired`; p50/p99/max and the achieved rate.
//! 3. Waiting customers held (idle, kept alive) at each step, with the daemon's RSS, vs
//!    the bare server's RSS with as many idle connections.
//! 4. Bulk delete of closed cases (seeded through the store API before the daemon
//!    starts) by filter while pairing goes on: time taken and pairing p99 meanwhile.
//!
//! Scale (environment): `SOSQ_SCALE_INTAKE` customers per intake round (5000),
//! `SOSQ_SCALE_ROUNDS` (3), `SOSQ_SCALE_CONCURRENCY` handshakes in flight (64),
//! `SOSQ_SCALE_PAIRINGS` (5000), `SOSQ_SCALE_RATE` pairings/s (1000), `SOSQ_SCALE_EXPERTS`
//! experts on shift taking the pairings in turn (100; 0 gives each pairing its own), `SOSQ_SCALE_HELD`
//! steps ("1000,10000,100000"), `SOSQ_SCALE_DELETE` closed cases (100000),
//! `SOSQ_SCALE_ENDPOINTS` client endpoints (8), `SOSQ_SCALE_ONLY` a comma list of
//! `intake,pairing,delete,held` (all; `held-bare` or `held-sosqd` for one side of it). Raise `ulimit -n` first for the big steps.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sosq::ConnectOptions;
use sosqd::loadgen::{self, sosqd_command, DaemonProcess, Fleet, PairingPlan};

const BARE_ROLE: &str = "SOSQ_SCALE_BARE_SERVER";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn wanted(figure: &str) -> bool {
    match std::env::var("SOSQ_SCALE_ONLY") {
        Ok(only) => only.split(',').any(|f| f.trim() == figure),
        Err(_) => true,
    }
}

/// Liveness figures other than the defaults, for both servers: `SOSQ_SCALE_KEEP_ALIVE` and
/// `SOSQ_SCALE_IDLE_TIMEOUT` (durations like "5s"), both or neither.
fn liveness() -> Option<(Duration, Duration)> {
    let read = |name: &str| {
        let text = std::env::var(name).ok()?;
        humantime::parse_duration(&text).ok()
    };
    Some((
        read("SOSQ_SCALE_KEEP_ALIVE")?,
        read("SOSQ_SCALE_IDLE_TIMEOUT")?,
    ))
}

fn sources() -> Vec<IpAddr> {
    (1..=4).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == "--list") {
        return Ok(()); // `cargo test --benches` asks; there is nothing to list.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var_os(BARE_ROLE).is_some() {
        return runtime.block_on(bare_server_process());
    }
    runtime.block_on(run())
}

/// The bare baseline server, as its own process: prints its address and fingerprint,
/// serves until stdin closes (the bench ends) or 30 minutes pass.
async fn bare_server_process() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (endpoint, fingerprint) = loadgen::bare_endpoint(dir.path(), liveness())?;
    println!("bare {} {fingerprint}", endpoint.local_addr()?);
    std::io::stdout().flush()?;
    let server = tokio::spawn(loadgen::serve_bare(endpoint.clone()));
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    });
    let _ = tokio::time::timeout(Duration::from_secs(1800), stdin_closed).await;
    server.abort();
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let intake_count = env_or("SOSQ_SCALE_INTAKE", 5000);
    let rounds = env_or("SOSQ_SCALE_ROUNDS", 3).max(1);
    let concurrency = env_or("SOSQ_SCALE_CONCURRENCY", 64);
    let pairings = env_or("SOSQ_SCALE_PAIRINGS", 5000);
    let rate = env_or("SOSQ_SCALE_RATE", 1000) as f64;
    let to_delete = env_or("SOSQ_SCALE_DELETE", 100_000) as u64;
    let endpoints = env_or("SOSQ_SCALE_ENDPOINTS", 8);
    let experts = env_or("SOSQ_SCALE_EXPERTS", 100);
    let held_steps: Vec<usize> = std::env::var("SOSQ_SCALE_HELD")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect();

    let daemon = Daemon::start(if wanted("delete") { to_delete } else { 0 }).await?;
    let bare = BareServer::start()?;
    println!(
        "sosqd pid {}, bare quinn pid {} (release builds); load {}",
        daemon.pid(),
        bare.child.id(),
        load_average()
    );
    let fleet = Arc::new(Fleet::open(&daemon.options(), endpoints, &sources()).await?);
    let bare_fleet = Arc::new(Fleet::open(&bare.options(), endpoints, &sources()).await?);

    if wanted("intake") {
        println!("\n1. SOS intake ({intake_count} per round, {concurrency} in flight)");
        let mut ratios = Vec::new();
        let (mut best_bare, mut best_sosqd) = (0f64, 0f64);
        for round in 1..=rounds {
            let cpu = CpuMeter::start(bare.child.id());
            let b = loadgen::bare_intake(bare_fleet.clone(), intake_count, concurrency).await;
            let b_cpu = cpu.per_item(b.done.len());
            let b_rate = b.per_second();
            let b_failed = b.failures;
            drop(b);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cpu = CpuMeter::start(daemon.pid());
            let s = loadgen::intake(
                fleet.clone(),
                intake_count,
                concurrency,
                Some("intake".into()),
            )
            .await;
            let s_cpu = cpu.per_item(s.done.len());
            let s_rate = s.per_second();
            if s.failures > 0 {
                println!("   sosqd failures: {} e.g. {:?}", s.failures, s.errors);
            }
            let s_failed = s.failures;
            drop(s);
            tokio::time::sleep(Duration::from_millis(500)).await;
            println!(
                "   round {round}: bare quinn {b_rate:.0}/s ({b_failed} failed), sosqd {s_rate:.0}/s ({s_failed} failed), ratio {:.2}",
                s_rate / b_rate
            );
            println!(
                "      CPU per connection (server, load generator): bare {b_cpu}, sosqd {s_cpu}"
            );
            ratios.push(s_rate / b_rate);
            best_bare = best_bare.max(b_rate);
            best_sosqd = best_sosqd.max(s_rate);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "   best: bare {best_bare:.0}/s, sosqd {best_sosqd:.0}/s, ratio {:.2}; median ratio {:.2}",
            best_sosqd / best_bare,
            ratios[ratios.len() / 2]
        );
        // Let the daemon record the departures before the next figure.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    if wanted("pairing") {
        println!("\n2. Pairing latency ({pairings} pairings paced at {rate:.0}/s)");
        let pacing = Arc::new(tokio::sync::Notify::new());
        let plan = PairingPlan {
            pairings,
            per_second: rate,
            customer_lead: Duration::from_millis(20),
            group: None,
            experts,
            pacing: Some(pacing.clone()),
        };
        // CPU of both processes while paced (not while the parties connect beforehand).
        let daemon_pid = daemon.pid();
        let cpu = tokio::spawn(async move {
            pacing.notified().await;
            CpuMeter::start(daemon_pid)
        });
        let report = loadgen::pairing(fleet.clone(), &daemon.expert, plan).await;
        let ([daemon_cpu, own_cpu], paced) = cpu.await?.shares();
        println!(
            "   CPU while paced ({paced:.1} s): sosqd {daemon_cpu}, load generator {own_cpu} (of 200%)"
        );
        let (p50, p99, max) = loadgen::percentiles(&report.latencies);
        println!(
            "   {} paired ({} failed{}), achieved {:.0}/s: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}",
            report.latencies.len(),
            report.failures,
            errors_hint(&report.errors),
            report.per_second()
        );
        for (name, samples) in loadgen::PAIRING_STAGES.iter().zip(&report.stages) {
            let (p50, p99, max) = loadgen::percentiles(samples);
            println!("     {name:<34} p50 {p50:>9.2?}, p99 {p99:>9.2?}, max {max:>9.2?}");
        }
    }

    if wanted("delete") {
        println!("\n3. Bulk delete of {to_delete} closed cases while pairing at {rate:.0}/s");
        let during_pairings = (rate * 8.0) as usize;
        let pacing = Arc::new(tokio::sync::Notify::new());
        let plan = PairingPlan {
            pairings: during_pairings,
            per_second: rate,
            customer_lead: Duration::from_millis(20),
            group: None,
            experts,
            pacing: Some(pacing.clone()),
        };
        let admin = fleet.party(Some(&daemon.admin)).await?;
        let pairing = {
            let (fleet, expert) = (fleet.clone(), daemon.expert.clone());
            tokio::spawn(async move { loadgen::pairing(fleet, &expert, plan).await })
        };
        // Start the delete two seconds into the paced pairings.
        pacing.notified().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let (count, took) = loadgen::delete_closed(admin, Duration::from_secs(3600)).await?;
        let ended = started + took;
        let report = pairing.await?;
        let during: Vec<Duration> = report
            .pulled_at
            .iter()
            .zip(&report.latencies)
            .filter(|(at, _)| **at >= started && **at <= ended)
            .map(|(_, latency)| *latency)
            .collect();
        let outside: Vec<Duration> = report
            .pulled_at
            .iter()
            .zip(&report.latencies)
            .filter(|(at, _)| **at < started || **at > ended)
            .map(|(_, latency)| *latency)
            .collect();
        let (d50, d99, dmax) = loadgen::percentiles(&during);
        let (o50, o99, _) = loadgen::percentiles(&outside);
        println!("   deleted {count} in {took:.2?}");
        println!(
            "   pairings during the delete: {} (p50 {d50:.2?}, p99 {d99:.2?}, max {dmax:.2?}); outside it: {} (p50 {o50:.2?}, p99 {o99:.2?}); {} failed{}, achieved {:.0}/s",
            during.len(),
            outside.len(),
            report.failures,
            errors_hint(&report.errors),
            report.per_second()
        );
    }

    fleet.close().await;
    bare_fleet.close().await;
    drop((daemon, bare));

    let held_bare = wanted("held") || wanted("held-bare");
    let held_sosqd = wanted("held") || wanted("held-sosqd");
    if (held_bare || held_sosqd) && !held_steps.is_empty() {
        let defaults = sosqd::config::Config::default();
        let (keep_alive, idle_timeout) =
            liveness().unwrap_or((defaults.keep_alive, defaults.idle_timeout));
        println!(
            "\n4. Waiting customers held (idle; keep_alive {keep_alive:?}, idle_timeout {idle_timeout:?}), fresh processes"
        );
        // Fresh processes, so neither carries memory from the figures before.
        let daemon = Daemon::start(0).await?;
        let bare = BareServer::start()?;
        let fleet = Arc::new(Fleet::open(&daemon.options(), endpoints, &sources()).await?);
        let bare_fleet = Arc::new(Fleet::open(&bare.options(), endpoints, &sources()).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let concurrency = concurrency.max(128);
        // Bare quinn first, the same steps measured the same way.
        let base = rss(bare.child.id())?;
        let mut held = Vec::new();
        let mut bare_per = Vec::new();
        for &step in held_steps.iter().filter(|_| held_bare) {
            let more = step.saturating_sub(held.len());
            let batch = loadgen::bare_intake(bare_fleet.clone(), more, concurrency).await;
            if batch.failures > 0 {
                println!(
                    "   bare: {} failed, e.g. {:?}",
                    batch.failures, batch.errors
                );
            }
            held.extend(batch.done);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = rss(bare.child.id())?;
            let per = now.saturating_sub(base) as f64 / held.len().max(1) as f64;
            println!(
                "   bare quinn: {} idle connections, RSS {} MiB, {:.1} KiB per connection",
                held.len(),
                now / (1 << 20),
                per / 1024.0
            );
            bare_per.push(per);
            println!("      {}", idle_cost(bare.child.id(), held.len()).await);
        }
        drop(held);
        bare_fleet.close().await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let base = rss(daemon.pid())?;
        let mut waiting = Vec::new();
        for (i, &step) in held_steps.iter().enumerate().filter(|_| held_sosqd) {
            let more = step.saturating_sub(waiting.len());
            let started = Instant::now();
            let batch =
                loadgen::intake(fleet.clone(), more, concurrency, Some("held".into())).await;
            if batch.failures > 0 {
                println!(
                    "   sosqd: {} failed, e.g. {:?}",
                    batch.failures, batch.errors
                );
            }
            let took = started.elapsed();
            waiting.extend(batch.done);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = rss(daemon.pid())?;
            let per = now.saturating_sub(base) as f64 / waiting.len().max(1) as f64;
            println!(
                "   sosqd: {} waiting customers (last {more} added in {took:.1?}), RSS {} MiB, {:.1} KiB per customer, {:.2}x bare",
                waiting.len(),
                now / (1 << 20),
                per / 1024.0,
                per / bare_per.get(i).copied().unwrap_or(f64::NAN)
            );
            println!("      {}", idle_cost(daemon.pid(), waiting.len()).await);
            // Everyone still there after the idle window: keep-alives held them.
            let still = online_in_line(&daemon).await?;
            println!("      still online after it: {still} of {}", waiting.len());
        }
        drop(waiting);
        fleet.close().await;
    }
    println!("\nload after the run: {}", load_average());
    Ok(())
}

/// What idling costs: over a quiet window of [`IDLE_WINDOW`], the server's CPU (share of
/// one core), this load generator's, and the UDP datagrams delivered on the machine per
/// second (loopback: the server's keep-alives and acknowledgements and the clients', each
/// counted once, at its receiver), per connection too.
async fn idle_cost(server: u32, connections: usize) -> String {
    let meter = CpuMeter::start(server);
    let before = udp_in_datagrams();
    tokio::time::sleep(IDLE_WINDOW).await;
    let after = udp_in_datagrams();
    let ([server_share, own_share], elapsed) = meter.shares();
    let rate = match (before, after) {
        (Some(before), Some(after)) => {
            let per_second = after.saturating_sub(before) as f64 / elapsed;
            format!(
                "{per_second:.0} datagrams/s ({:.2} per connection per second)",
                per_second / connections.max(1) as f64
            )
        }
        _ => "datagrams: /proc/net/snmp unreadable".into(),
    };
    format!(
        "idle for {elapsed:.0} s: server CPU {server_share}, load generator {own_share}, {rate}"
    )
}

/// How long [`idle_cost`] watches.
const IDLE_WINDOW: Duration = Duration::from_secs(20);

/// UDP datagrams delivered on this machine so far (`Udp: InDatagrams` of /proc/net/snmp).
fn udp_in_datagrams() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let at = names.iter().position(|name| *name == "InDatagrams")?;
    values.get(at)?.parse().ok()
}

/// Customers waiting online in every queue, as the admin's first queue page counts them.
async fn online_in_line(daemon: &Daemon) -> anyhow::Result<u32> {
    let mut options = daemon.options();
    options.token = Some(daemon.admin.clone());
    let mut admin = sosq::Client::connect(&options).await?;
    let reply = admin
        .request(sosq::protocol::Request::Queue {
            after: None,
            limit: 1,
        })
        .await?;
    admin.close().await;
    match reply {
        sosq::protocol::Reply::Queue(page) => Ok(page.online),
        other => anyhow::bail!("not a queue page: {other:?}"),
    }
}

fn errors_hint(errors: &[String]) -> String {
    match errors.first() {
        Some(first) => format!(", e.g. {first}"),
        None => String::new(),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// CPU time a server process and this load generator spend over one measured step.
struct CpuMeter {
    server: u32,
    at_start: [Option<f64>; 2],
    started: Instant,
}

impl CpuMeter {
    fn start(server: u32) -> CpuMeter {
        CpuMeter {
            server,
            at_start: [
                loadgen::cpu_seconds(server),
                loadgen::cpu_seconds(std::process::id()),
            ],
            started: Instant::now(),
        }
    }

    /// CPU seconds the server and this process used since the start (none: unreadable).
    fn used(&self) -> [Option<f64>; 2] {
        let pids = [self.server, std::process::id()];
        std::array::from_fn(|i| {
            let now = loadgen::cpu_seconds(pids[i]);
            now.zip(self.at_start[i]).map(|(now, then)| now - then)
        })
    }

    /// Microseconds of each process's CPU per item done since the start, as text.
    fn per_item(&self, items: usize) -> String {
        let [server, own] = self.used().map(|used| {
            used.map_or("?".into(), |cpu| {
                format!("{:.0} µs", cpu * 1e6 / items.max(1) as f64)
            })
        });
        format!("{server} + {own}")
    }

    /// Each process's CPU as a share of one core since the start, and the seconds elapsed.
    fn shares(&self) -> ([String; 2], f64) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let shares = self
            .used()
            .map(|used| used.map_or("?".into(), |cpu| format!("{:.0}%", 100.0 * cpu / elapsed)));
        (shares, elapsed)
    }
}

fn rss(pid: u32) -> anyhow::Result<u64> {
    loadgen::rss_bytes(pid).context("read VmRSS")
}

/// A real sosqd (release build) with an expert, an admin, the `intake` and `held` teams
/// (queues nobody pulls), limits raised for loopback load, and `seeded` closed cases.
struct Daemon {
    process: DaemonProcess,
    expert: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(seeded: u64) -> anyhow::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        if seeded > 0 {
            let started = Instant::now();
            loadgen::seed_closed_cases(dir.path(), seeded, Duration::from_secs(2 * 3600)).await?;
            println!(
                "seeded {seeded} closed cases through the store API in {:.1?}",
                started.elapsed()
            );
        }
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            "max_connections = 500000\n\
             max_connections_per_address = 500000\n\
             max_open_cases = 1000000\n\
             retry_above_handshakes_per_second = 1000000\n",
        )?;
        if let Some((keep_alive, idle_timeout)) = liveness() {
            let mut text = std::fs::read_to_string(&config)?;
            text.push_str(&format!(
                "keep_alive = \"{}\"\nidle_timeout = \"{}\"\n",
                humantime::format_duration(keep_alive),
                humantime::format_duration(idle_timeout)
            ));
            std::fs::write(&config, text)?;
        }
        let bin = Path::new(env!("CARGO_BIN_EXE_sosqd"));
        let admin = |args: &[&str]| sosqd_command(bin, dir.path(), args);
        admin(&["group", "add", "intake"])?;
        admin(&["group", "add", "held"])?;
        let expert = admin(&["user", "add", "load-expert", "--role", "expert"])?;
        let admin_token = admin(&["user", "add", "load-admin", "--role", "admin"])?;
        // The log goes to a file, for refusals and errors.
        let run = dir.path().file_name().unwrap_or_default().to_string_lossy();
        let log = std::env::temp_dir().join(format!("sosqd-scale-{run}.log"));
        let config = config.to_string_lossy();
        let process = DaemonProcess::start(
            bin,
            dir.path(),
            &["--config", &config],
            "warn,sosqd::server=warn,sosqd=info",
            Some(log.clone()),
        )?;
        println!("sosqd log: {}", log.display());
        Ok(Daemon {
            process,
            expert,
            admin: admin_token,
            _dir: dir,
        })
    }

    fn options(&self) -> ConnectOptions {
        self.process.options(None)
    }

    fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// This bench re-run as the bare quinn server (see [`bare_server_process`]).
struct BareServer {
    child: Child,
    addr: String,
    fingerprint: String,
}

impl BareServer {
    fn start() -> anyhow::Result<BareServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(BARE_ROLE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let mut words = line.split_whitespace().skip(1);
        let addr = words.next().context("bare address")?.to_string();
        let fingerprint = words.next().context("bare fingerprint")?.to_string();
        Ok(BareServer {
            child,
            addr,
            fingerprint,
        })
    }

    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            server: self.addr.clone(),
            fingerprint: self.fingerprint.clone(),
            token: None,
            ca: None,
        }
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
