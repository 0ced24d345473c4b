//! Cluster benchmark, not a timed test: `cargo build --release --workspace && cargo bench
//! --bench cluster` with `SOSQ_TEST_DATABASE_URL` naming a PostgreSQL server where it may
//! create databases (each configuration gets a fresh one, dropped at the end).
//!
//! 1. Failover: three nodes; customers (real `sosq request` processes listing every node,
//!    the victim first) wait on one node, which is killed with SIGKILL; the time from the
//!    kill until each customer's case is back in the shared queue, online, on a survivor
//!    (read from the case rows every 20 ms). `SOSQ_CLUSTER_KILLS` (20) kills of
//!    `SOSQ_CLUSTER_WAITING` (5) customers each; p50/p99/max.
//! 2. Intake and pairing on one node with SQLite, one node with PostgreSQL and three nodes
//!    with PostgreSQL (load spread over the nodes), against bare quinn in the same run:
//!    `SOSQ_CLUSTER_INTAKE` (2000) customers per configuration, `SOSQ_CLUSTER_PAIRINGS`
//!    (2000) pairings paced at `SOSQ_CLUSTER_RATE` (1000/s) by `SOSQ_CLUSTER_EXPERTS` (50).
//!
//! 3. A redirect's cost: a new connection's status request on a case's home node, or on
//!    another node that redirects it there (`SOSQ_CLUSTER_REDIRECTS` rounds, 300).
//!
//! `SOSQ_CLUSTER_ONLY`: a comma list of `failover,load,redirect` (all).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sosqd::loadgen::{self, sosqd_command, DaemonProcess, Fleet, PairingPlan};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn wanted(figure: &str) -> bool {
    match std::env::var("SOSQ_CLUSTER_ONLY") {
        Ok(only) => only.split(',').any(|f| f.trim() == figure),
        Err(_) => true,
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == "--list") {
        return Ok(());
    }
    let Ok(admin_url) = std::env::var("SOSQ_TEST_DATABASE_URL") else {
        println!(
            "skipped: the cluster benchmark needs SOSQ_TEST_DATABASE_URL (a PostgreSQL server)"
        );
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(admin_url))
}

fn sosqd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sosqd"))
}

fn sosq_bin() -> anyhow::Result<PathBuf> {
    let path = sosqd_bin().with_file_name("sosq");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --release --workspace` first",
        path.display()
    );
    Ok(path)
}

/// A database made for one configuration, dropped at the end.
struct Database {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin_url: &str, tag: &str) -> anyhow::Result<Database> {
        let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .context("connecting to SOSQ_TEST_DATABASE_URL")?;
        tokio::spawn(connection);
        let name = format!("sosq_bench_{tag}_{}", std::process::id());
        // One statement each: DROP DATABASE refuses to run in a multi-statement batch.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let base = admin_url.split('?').next().unwrap_or(admin_url);
        let at = base
            .rfind('/')
            .context("a URL like postgres://user@host:port/db")?;
        let url = format!("{}/{name}", &base[..at]);
        Ok(Database { admin, name, url })
    }

    async fn drop_now(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// Nodes sharing one identity (the first data dir's certificate) and one store.
struct Nodes {
    dir: tempfile::TempDir,
    config: PathBuf,
    store: Option<String>,
    nodes: Vec<Option<DaemonProcess>>,
    expert: String,
}

impl Nodes {
    /// `count` nodes on `store` (None: one node on its own SQLite store).
    fn start(count: usize, store: Option<&str>, extra_config: &str) -> anyhow::Result<Nodes> {
        let dir = tempfile::tempdir()?;
        let identity = dir.path().join("identity");
        sosqd_command(sosqd_bin(), &identity, &["fingerprint", "--create"])?;
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n\
                 max_connections = 500000\nmax_connections_per_address = 500000\n\
                 max_open_cases = 1000000\nretry_above_handshakes_per_second = 1000000\n{extra_config}",
                identity.join("cert.pem").display(),
                identity.join("key.pem").display()
            ),
        )?;
        let admin = |args: &[&str]| -> anyhow::Result<String> {
            let mut args: Vec<&str> = args.to_vec();
            if let Some(store) = store {
                args.extend(["--store", store]);
            }
            Ok(sosqd_command(sosqd_bin(), &dir.path().join("n1"), &args)?)
        };
        admin(&["group", "add", "intake"])?;
        let expert = admin(&["user", "add", "load-expert", "--role", "expert"])?;
        let mut nodes = Nodes {
            dir,
            config,
            store: store.map(str::to_string),
            nodes: Vec::new(),
            expert,
        };
        for i in 1..=count {
            let node = nodes.start_node(i)?;
            nodes.nodes.push(Some(node));
        }
        Ok(nodes)
    }

    fn start_node(&self, i: usize) -> anyhow::Result<DaemonProcess> {
        let config = self.config.to_string_lossy().into_owned();
        let name = format!("n{i}");
        let mut args = vec!["--config", config.as_str()];
        if let Some(store) = &self.store {
            args.extend(["--store", store.as_str(), "--node-id", name.as_str()]);
        }
        let log = self.dir.path().join(format!("{name}.log"));
        Ok(DaemonProcess::start(
            sosqd_bin(),
            &self.dir.path().join(&name),
            &args,
            "warn,sosqd=info",
            Some(log),
        )?)
    }

    fn node(&self, i: usize) -> &DaemonProcess {
        self.nodes[i].as_ref().expect("node running")
    }

    async fn fleets(&self, endpoints: usize) -> anyhow::Result<Vec<Arc<Fleet>>> {
        let mut fleets = Vec::new();
        for node in self.nodes.iter().flatten() {
            let sources = [std::net::IpAddr::from([127, 0, 0, 1])];
            fleets.push(Arc::new(
                Fleet::open(&node.options(None), endpoints, &sources).await?,
            ));
        }
        Ok(fleets)
    }
}

async fn run(admin_url: String) -> anyhow::Result<()> {
    if wanted("failover") {
        failover(&admin_url).await?;
    }
    if wanted("load") {
        load(&admin_url).await?;
    }
    if wanted("redirect") {
        redirect(&admin_url).await?;
    }
    Ok(())
}

/// Section 3: what a redirect adds. A customer's case lives on n1; a new connection asks
/// for its status (with the secret) on n1 itself, or on n2, which redirects it to n1: the
/// difference is the redirect's extra handshake, hello and ticket.
async fn redirect(admin_url: &str) -> anyhow::Result<()> {
    let rounds = env_or("SOSQ_CLUSTER_REDIRECTS", 300);
    let db = Database::create(admin_url, "redirect").await?;
    let nodes = Nodes::start(3, Some(&db.url), "")?;
    let mut customer = sosq::Client::connect(&nodes.node(0).options(None)).await?;
    let reply = customer
        .request(sosq::protocol::Request::OpenSos {
            customer: "Alice".into(),
            description: "redirect benchmark".into(),
            priority: sosq::protocol::Priority::Normal,
            group: None,
        })
        .await?;
    let sosq::protocol::Reply::Attached {
        case,
        resume_secret: Some(secret),
        ..
    } = reply
    else {
        anyhow::bail!("unexpected answer to the SOS request: {reply:?}");
    };
    let status = sosq::protocol::Request::Status {
        code: case.code.to_string(),
        resume_secret: Some(secret),
    };
    let (mut direct, mut redirected) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (node, samples) in [(0, &mut direct), (1, &mut redirected)] {
            let started = Instant::now();
            let mut client = sosq::Client::connect(&nodes.node(node).options(None)).await?;
            match client.request(status.clone()).await? {
                sosq::protocol::Reply::Case(_) => {}
                other => anyhow::bail!("round {round}: unexpected status answer {other:?}"),
            }
            samples.push(started.elapsed());
            client.close().await;
        }
    }
    println!(
        "\n3. A redirect's cost: a new connection asking for a case's status, {rounds} rounds each"
    );
    for (label, samples) in [
        ("on its home node", &direct),
        ("redirected there", &redirected),
    ] {
        let (p50, p99, max) = loadgen::percentiles(samples);
        println!(
            "   {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    drop(customer);
    drop(nodes);
    db.drop_now().await;
    Ok(())
}

/// Section 1: see the module documentation.
async fn failover(admin_url: &str) -> anyhow::Result<()> {
    let kills = env_or("SOSQ_CLUSTER_KILLS", 20);
    let waiting = env_or("SOSQ_CLUSTER_WAITING", 5);
    let sosq = sosq_bin()?;
    let db = Database::create(admin_url, "failover").await?;
    let mut nodes = Nodes::start(3, Some(&db.url), "")?;
    let (rows, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    println!("1. Failover: {kills} kills of a node with {waiting} waiting customers each (default lease and liveness)");
    let mut samples = Vec::new();
    let mut lost = 0;
    for round in 0..kills {
        let victim = round % 3;
        let order: Vec<String> = (0..3)
            .map(|k| nodes.node((victim + k) % 3).addr.clone())
            .collect();
        let mut customers: Vec<Child> = Vec::new();
        let names: Vec<String> = (0..waiting).map(|i| format!("fo-{round}-{i}")).collect();
        for name in &names {
            customers.push(
                Command::new(&sosq)
                    .args(["--server", &order.join(","), "--fingerprint"])
                    .arg(&nodes.node(0).fingerprint)
                    .args(["request", "--name", name, "--description", "failover"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
        let victim_name = format!("n{}", victim + 1);
        let homed =
            |rows: Vec<tokio_postgres::Row>| -> Vec<(String, Option<String>, Option<String>)> {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            };
        let query = "SELECT customer, home_node, queued FROM cases WHERE customer = ANY($1)";
        let ready = Instant::now();
        loop {
            let found = homed(rows.query(query, &[&names]).await?);
            let all_there = found.len() == names.len()
                && found.iter().all(|(_, home, queued)| {
                    home.as_deref() == Some(victim_name.as_str())
                        && queued.as_deref() == Some("online")
                });
            if all_there {
                break;
            }
            anyhow::ensure!(
                ready.elapsed() < Duration::from_secs(30),
                "customers never settled on {victim_name}: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A moment of steady state: the victim's lease renewed as usual.
        tokio::time::sleep(Duration::from_millis(300 + 97 * round as u64 % 700)).await;
        let mut dead = nodes.nodes[victim].take().expect("victim running");
        let killed = Instant::now();
        dead.child.kill()?;
        let _ = dead.child.wait();
        drop(dead);
        let mut back: std::collections::HashMap<String, Duration> = Default::default();
        while back.len() < names.len() && killed.elapsed() < Duration::from_secs(60) {
            for (customer, home, queued) in homed(rows.query(query, &[&names]).await?) {
                if home.as_deref() != Some(victim_name.as_str())
                    && queued.as_deref() == Some("online")
                {
                    back.entry(customer).or_insert_with(|| killed.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lost += names.len() - back.len();
        let mut these: Vec<Duration> = back.values().copied().collect();
        these.sort();
        println!(
            "   kill {:>2} ({victim_name}): back in {:?}",
            round + 1,
            these
                .iter()
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
        );
        samples.extend(these);
        for mut customer in customers {
            let _ = customer.kill();
            let _ = customer.wait();
        }
        nodes.nodes[victim] = Some(nodes.start_node(victim + 1)?);
    }
    let (p50, p99, max) = loadgen::percentiles(&samples);
    println!(
        "   kill -9 -> back in the queue on a survivor: p50 {:.2}s, p99 {:.2}s, max {:.2}s over {} customers ({lost} never came back)",
        p50.as_secs_f64(),
        p99.as_secs_f64(),
        max.as_secs_f64(),
        samples.len()
    );
    drop(nodes);
    db.drop_now().await;
    Ok(())
}

/// Section 2: see the module documentation.
async fn load(admin_url: &str) -> anyhow::Result<()> {
    let intake = env_or("SOSQ_CLUSTER_INTAKE", 2000);
    let pairings = env_or("SOSQ_CLUSTER_PAIRINGS", 2000);
    let rate = env_or("SOSQ_CLUSTER_RATE", 1000) as f64;
    let experts = env_or("SOSQ_CLUSTER_EXPERTS", 50);
    println!("\n2. Intake ({intake} customers, 64 in flight) and pairing ({pairings} paced at {rate:.0}/s, {experts} experts)");
    let bare_dir = tempfile::tempdir()?;
    let (bare_endpoint, bare_fp) = loadgen::bare_endpoint(bare_dir.path(), None)?;
    let bare_addr = bare_endpoint.local_addr()?;
    let bare_server = tokio::spawn(loadgen::serve_bare(bare_endpoint.clone()));
    let bare_options = sosq::ConnectOptions {
        server: bare_addr.to_string(),
        fingerprint: bare_fp,
        token: None,
        ca: None,
    };
    let bare_fleet =
        Arc::new(Fleet::open(&bare_options, 4, &[std::net::IpAddr::from([127, 0, 0, 1])]).await?);
    for (label, count, postgres) in [
        ("1 node, SQLite", 1, false),
        ("1 node, PostgreSQL", 1, true),
        ("3 nodes, PostgreSQL", 3, true),
    ] {
        let db = if postgres {
            Some(Database::create(admin_url, &format!("load{count}")).await?)
        } else {
            None
        };
        let nodes = Nodes::start(count, db.as_ref().map(|d| d.url.as_str()), "")?;
        let fleets = nodes.fleets(4).await?;
        let bare = loadgen::bare_intake(bare_fleet.clone(), intake, 64).await;
        let bare_rate = bare.per_second();
        drop(bare);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let mut runs = Vec::new();
        for fleet in &fleets {
            runs.push(tokio::spawn(loadgen::intake(
                fleet.clone(),
                intake / fleets.len(),
                64 / fleets.len(),
                Some("intake".into()),
            )));
        }
        let (mut done, mut failed) = (0, 0);
        let mut errors = Vec::new();
        for run in runs {
            let batch = run.await?;
            done += batch.done.len();
            failed += batch.failures;
            errors.extend(batch.errors);
        }
        let rate_sosqd = done as f64 / started.elapsed().as_secs_f64();
        println!(
            "   {label}: intake {rate_sosqd:.0}/s ({failed} failed{}), bare quinn {bare_rate:.0}/s, ratio {:.2}",
            errors.first().map(|e| format!(", e.g. {e}")).unwrap_or_default(),
            rate_sosqd / bare_rate
        );
        let plan = PairingPlan {
            pairings,
            per_second: rate,
            customer_lead: Duration::from_millis(20),
            group: None,
            experts,
            pacing: None,
        };
        let report = loadgen::pairing_spread(fleets.clone(), &nodes.expert, plan).await;
        let (p50, p99, max) = loadgen::percentiles(&report.latencies);
        println!(
            "   {label}: pairing p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms at {:.0}/s ({} failed{})",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            report.per_second(),
            report.failures,
            report
                .errors
                .first()
                .map(|e| format!(", e.g. {e}"))
                .unwrap_or_default()
        );
        for fleet in &fleets {
            fleet.close().await;
        }
        drop(nodes);
        if let Some(db) = db {
            db.drop_now().await;
        }
    }
    bare_fleet.close().await;
    bare_server.abort();
    Ok(())
}
