//! A cluster of real `sosqd` processes sharing one PostgreSQL database (issue 14), and
//! `sosq` clients that know every node.
//!
//! Each node is a [`Daemon`] on 127.0.0.1 (an ephemeral port the first time, the same port
//! after a restart, as a real node keeps its address) with a data dir of its own, node id
//! `n1`..`nN`, the same store URL (optionally through a [`Proxy`] of its own, so that a
//! test can cut one node off from PostgreSQL) and the same TLS identity: one certificate,
//! so one pin for the whole cluster, as the issue asks. Staff users are added once for the
//! whole cluster ([`Cluster::add_user`]).
//!
//! Nodes are indexed from 0 in the test's calls (`node(0)` is `n1`), and client helpers
//! take the list of nodes to name in `--server`, in the test's order: a client tries them
//! in that order, so the first is where it lands while that node answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sosq::protocol::{CaseInfo, QueueEntry, Reply, Request};
use sosq::{Client, ConnectOptions, SessionCode};

use super::postgres::{server_addr, via, FreshDatabase};
use super::proxy::Proxy;
use super::{run_with_patience, sosq_bin, sosqd_bin, Daemon, Session, PATIENCE};

/// The `RUST_LOG` filter nodes run with (`SOSQ_TEST_NODE_LOG` overrides it, for a
/// debugging run).
fn node_log_filter() -> String {
    std::env::var("SOSQ_TEST_NODE_LOG").unwrap_or_else(|_| "info".into())
}

/// Lines of each node's log a failing test prints.
const LOG_TAIL: usize = 80;

/// Several `sosqd` nodes on one store; every node is killed when it is dropped, and a
/// failing test (a panic while it is alive) prints the tail of each node's log.
pub struct Cluster {
    nodes: Vec<Node>,
    /// The store URL as given (admin commands reach PostgreSQL directly, never through a
    /// node's proxy).
    store: String,
    /// The shared certificate and key (`cert.pem`, `key.pem`) and the nodes' config files.
    files: tempfile::TempDir,
    /// The SHA-256 pin of the shared certificate.
    pub fingerprint: String,
}

/// One node of a [`Cluster`].
pub struct Node {
    /// Its node id: `n1`, `n2`, ...
    pub name: String,
    /// `127.0.0.1:PORT`, the same across restarts.
    pub addr: String,
    /// The certificate fingerprint it logged when it last started.
    pub fingerprint: String,
    dir: Arc<tempfile::TempDir>,
    config: PathBuf,
    /// The store URL this node is given: the database's, or its proxy's.
    store: String,
    proxy: Option<Proxy>,
    daemon: Option<Daemon>,
    /// What earlier runs of this node logged (before a kill or a stop).
    earlier_logs: String,
}

impl Cluster {
    /// Starts `n` nodes on the database `db_url`, each with `extra_config` (TOML lines:
    /// `lease = "1s"`, `case_ttl = "2s"`...) in its config file.
    pub fn start(n: usize, db_url: &str, extra_config: &str) -> Cluster {
        Cluster::launch(n, db_url, extra_config, false)
    }

    /// [`Cluster::start`] with a [`Proxy`] of its own between each node and PostgreSQL
    /// ([`Node::proxy`]).
    pub fn start_proxied(n: usize, db_url: &str, extra_config: &str) -> Cluster {
        Cluster::launch(n, db_url, extra_config, true)
    }

    fn launch(n: usize, db_url: &str, extra_config: &str, proxied: bool) -> Cluster {
        assert!(n > 0, "a cluster has at least one node");
        let files = tempfile::tempdir().expect("temp dir");
        let fingerprint = make_identity(files.path());
        let cert = files.path().join(sosqd::transport::tls::CERT_FILE);
        let key = files.path().join(sosqd::transport::tls::KEY_FILE);
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            let name = format!("n{i}");
            let config = files.path().join(format!("{name}.toml"));
            let text = format!(
                "# node {name}, written by tests/common/cluster.rs\n\
                 tls_cert = {}\ntls_key = {}\n{extra_config}\n",
                toml_path(&cert),
                toml_path(&key),
            );
            std::fs::write(&config, text).expect("write the node's config");
            let proxy = proxied.then(|| Proxy::start(server_addr(db_url)));
            let store = match &proxy {
                Some(proxy) => via(db_url, proxy.addr()),
                None => db_url.to_string(),
            };
            let mut node = Node {
                name,
                addr: "127.0.0.1:0".into(),
                fingerprint: String::new(),
                dir: Arc::new(tempfile::tempdir().expect("temp dir")),
                config,
                store,
                proxy,
                daemon: None,
                earlier_logs: String::new(),
            };
            node.restart();
            assert_eq!(
                node.fingerprint, fingerprint,
                "{} does not present the cluster's certificate",
                node.name
            );
            nodes.push(node);
        }
        Cluster {
            nodes,
            store: db_url.to_string(),
            files,
            fingerprint,
        }
    }

    /// Node `i` (0 is `n1`).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Node `i`, to kill, restart, cut...
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Every node, `i` first, then the others in order (wrapping): a client list that
    /// lands on `i` and fails over to the rest.
    pub fn starting_at(&self, i: usize) -> Vec<usize> {
        let n = self.nodes.len();
        (0..n).map(|k| (i + k) % n).collect()
    }

    /// The `--server` value naming `order`'s nodes, in that order.
    pub fn servers(&self, order: &[usize]) -> String {
        assert!(!order.is_empty(), "name at least one node");
        let addrs: Vec<&str> = order.iter().map(|&i| self.nodes[i].addr.as_str()).collect();
        addrs.join(",")
    }

    /// Adds a staff user to the whole cluster; its token. Groups go the same way
    /// ([`Cluster::add_group`]).
    /// Returns once every running node accepts the token: nodes may learn of a user a
    /// moment after the command wrote it (a users file's change, a store's reload).
    pub fn add_user(&self, name: &str, role: &str) -> String {
        let token = self.shared_admin(&["user", "add", name, "--role", role]);
        self.await_token(&token, &format!("{role} {name}"));
        token
    }

    /// Adds many staff users, each `(name, role, groups)`, to the whole cluster; their
    /// tokens, in order. Faster than [`Cluster::add_user`] one by one: it waits for the
    /// nodes only once, for the last token. That suffices because a node's copy of the
    /// users is one snapshot of the whole directory (the users file, or the store's
    /// tables reloaded at once) and each user was written before the next one was, so a
    /// node that knows the last knows them all.
    pub fn add_users(&self, users: &[(&str, &str, &[&str])]) -> Vec<String> {
        let tokens: Vec<String> = users
            .iter()
            .map(|(name, role, groups)| {
                let mut args = vec!["user", "add", name, "--role", role];
                for group in groups.iter() {
                    args.extend(["--group", group]);
                }
                self.shared_admin(&args)
            })
            .collect();
        if let (Some(token), Some((name, role, _))) = (tokens.last(), users.last()) {
            self.await_token(token, &format!("{role} {name}"));
        }
        tokens
    }

    /// Waits until every running node accepts `token` (of `who`, for the message).
    fn await_token(&self, token: &str, who: &str) {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.daemon.is_none() {
                continue;
            }
            let deadline = Instant::now() + PATIENCE;
            loop {
                let out = self.run(&[i], Some(token), &["--json", "queue"]);
                if out.status.success() {
                    break;
                }
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("unauthenticated") && Instant::now() < deadline,
                    "{} does not accept {who}: {stderr}",
                    node.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Defines a team for the whole cluster.
    pub fn add_group(&self, name: &str) {
        self.shared_admin(&["group", "add", name]);
    }

    /// Runs `sosqd ARGS` so that every node sees the change; its stdout, trimmed.
    ///
    /// In a cluster, users and groups live in PostgreSQL and `sosqd ... --store URL`
    /// writes them there (issue 14). Until the daemon takes `--store` on these commands,
    /// the change is made in `n1`'s data dir and its users file copied to every other node
    /// (a running daemon reloads it when it changes), so all nodes share the same users,
    /// groups and tokens. This is the one place to change when that lands.
    pub fn shared_admin(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(sosqd_bin());
        // Where a command that still wants a data dir would make its default one.
        cmd.args(args)
            .arg("--store")
            .arg(&self.store)
            .current_dir(self.files.path())
            .stdin(Stdio::null());
        let out = run_with_patience(cmd);
        if out.status.success() {
            return stdout_of(&out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unexpected argument '--store'"),
            "sosqd {args:?} --store {}: {stderr}",
            self.store
        );
        let first = &self.nodes[0];
        let mut cmd = Command::new(sosqd_bin());
        cmd.args(args)
            .arg("--data-dir")
            .arg(first.dir.path())
            .stdin(Stdio::null());
        let out = run_with_patience(cmd);
        assert!(
            out.status.success(),
            "sosqd {args:?} on {}: {}",
            first.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let users = first.dir.path().join(sosqd::store::users::USERS_FILE);
        for node in &self.nodes[1..] {
            // Written beside and renamed into place: a node never reads half a file.
            let target = node.dir.path().join(sosqd::store::users::USERS_FILE);
            let partial = target.with_extension("json.partial");
            std::fs::copy(&users, &partial).expect("copy the users file");
            std::fs::rename(&partial, &target).expect("put the users file in place");
        }
        stdout_of(&out)
    }

    /// A `sosq` command naming `order`'s nodes, with `token` if given.
    pub fn sosq(&self, order: &[usize], token: Option<&str>) -> Command {
        let mut cmd = Command::new(sosq_bin());
        cmd.env("SOSQ_SERVER", self.servers(order))
            .env("SOSQ_FINGERPRINT", &self.fingerprint)
            .env_remove("SOSQ_TOKEN")
            .env_remove("SOSQ_SECRET");
        if let Some(token) = token {
            cmd.env("SOSQ_TOKEN", token);
        }
        cmd
    }

    /// Runs a short `sosq` command against `order`'s nodes to completion.
    pub fn run(&self, order: &[usize], token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = self.sosq(order, token);
        cmd.args(args).stdin(Stdio::null());
        run_with_patience(cmd)
    }

    /// Runs a short `sosq --json` command that must succeed; its stdout as JSON.
    pub fn json(&self, order: &[usize], token: Option<&str>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(order, token, &all);
        assert!(
            out.status.success(),
            "sosq {args:?} via {}: {}",
            self.servers(order),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is JSON")
    }

    /// Starts a long-running `sosq --json` session command against `order`'s nodes.
    pub fn session(&self, order: &[usize], token: Option<&str>, args: &[&str]) -> Session {
        let mut cmd = self.sosq(order, token);
        cmd.arg("--json")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Session::from_command(cmd)
    }

    /// Library connection options naming `order`'s nodes, for a party with `token`.
    pub fn options(&self, order: &[usize], token: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            server: self.servers(order),
            fingerprint: self.fingerprint.clone(),
            token: token.map(str::to_string),
            ca: None,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for node in &self.nodes {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "---- {} ({}, {}) last {} log lines:\n{}",
                node.name,
                node.addr,
                if node.daemon.is_some() {
                    "running"
                } else {
                    "down"
                },
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Node {
    /// Kills the node with SIGKILL (`kill -9`: no shutdown, no goodbye to anyone) and
    /// waits for it to be gone.
    pub fn kill9(&mut self) {
        let daemon = self.daemon.take().expect("the node is running");
        self.earlier_logs.push_str(&daemon.log());
        daemon.kill9();
    }

    /// Stops the node with SIGTERM (a graceful shutdown) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut daemon = self.daemon.take().expect("the node is running");
        let status = daemon.terminate();
        self.earlier_logs.push_str(&daemon.log());
        status
    }

    /// Starts the node (again) on its data dir, config and address; waits for its
    /// listening line.
    pub fn restart(&mut self) {
        assert!(self.daemon.is_none(), "{} is still running", self.name);
        let mut cmd = Command::new(sosqd_bin());
        cmd.arg("serve")
            .args(["--listen", &self.addr])
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(["--store", &self.store, "--node-id", &self.name])
            .env_remove("SOSQ_STORE")
            .env("RUST_LOG", node_log_filter());
        let daemon = Daemon::spawn(cmd, self.dir.clone());
        if self.addr.ends_with(":0") {
            self.addr = daemon.addr.clone();
        }
        assert_eq!(
            daemon.addr, self.addr,
            "{} came back on another address",
            self.name
        );
        self.fingerprint = daemon.fingerprint.clone();
        self.daemon = Some(daemon);
    }

    /// Whether the node's process runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.daemon().pid()
    }

    /// The running daemon (for `metrics_addr`, `rss_bytes`...).
    pub fn daemon(&self) -> &Daemon {
        self.daemon
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    /// Everything the node logged, over all its runs.
    pub fn log(&self) -> String {
        let current = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        format!("{}{current}", self.earlier_logs)
    }

    /// Waits until the running node has logged `text`.
    pub fn wait_for_log(&self, text: &str) {
        self.daemon().wait_for_log(text);
    }

    /// The proxy between this node and PostgreSQL ([`Cluster::start_proxied`]).
    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().unwrap_or_else(|| {
            panic!(
                "{} has no proxy: start the cluster with Cluster::start_proxied",
                self.name
            )
        })
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The store URL the node was given (its proxy's, if it has one).
    pub fn store_url(&self) -> &str {
        &self.store
    }
}

/// Makes the cluster's certificate and key in `dir` with `sosqd fingerprint --create`;
/// its fingerprint.
fn make_identity(dir: &Path) -> String {
    let mut cmd = Command::new(sosqd_bin());
    cmd.args(["fingerprint", "--create", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null());
    let out = run_with_patience(cmd);
    assert!(
        out.status.success(),
        "sosqd fingerprint --create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = stdout_of(&out);
    assert!(!fingerprint.is_empty(), "sosqd fingerprint printed nothing");
    fingerprint
}

/// A path as a TOML string.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Staff asking a cluster on library connections, for tests that ask often (a `sosq`
/// process per question costs far more): each question on a fresh connection to the
/// nodes `order` names (the first that answers), so a killed node only needs leaving out.
/// Nodes keep their addresses across restarts, so the options are taken once.
pub struct Asker<'a> {
    rt: &'a tokio::runtime::Runtime,
    /// Connection options naming each node alone, by index.
    nodes: Vec<ConnectOptions>,
}

impl<'a> Asker<'a> {
    /// Asks `cluster`'s nodes as the staff user with `token`, running on `rt`.
    pub fn new(rt: &'a tokio::runtime::Runtime, cluster: &Cluster, token: &str) -> Asker<'a> {
        let nodes = (0..cluster.len())
            .map(|i| cluster.options(&[i], Some(token)))
            .collect();
        Asker { rt, nodes }
    }

    /// Sends `request` to the first of `order`'s nodes that answers; its reply (a redirect
    /// followed). Panics on a refusal or a lost connection.
    pub fn ask(&self, order: &[usize], request: Request) -> Reply {
        let servers: Vec<&str> = order
            .iter()
            .map(|&i| self.nodes[i].server.as_str())
            .collect();
        let options = ConnectOptions {
            server: servers.join(","),
            ..self.nodes[0].clone()
        };
        self.rt.block_on(async {
            let mut client = Client::connect(&options)
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e}", options.server));
            let reply = client.request(request.clone()).await;
            // Goodbye in the background: the answer is all the caller waits for.
            tokio::spawn(client.close());
            reply.unwrap_or_else(|e| panic!("{request:?} on {}: {e}", options.server))
        })
    }

    /// One case, as `order`'s first answering node shows it.
    pub fn status(&self, order: &[usize], code: SessionCode) -> CaseInfo {
        let request = Request::Status {
            code: code.to_string(),
            resume_secret: None,
        };
        match self.ask(order, request) {
            Reply::Case(case) => case,
            other => panic!("status {code}: {other:?}"),
        }
    }

    /// Every entry of the queue this user sees, page after page, next first.
    pub fn queue(&self, order: &[usize]) -> Vec<QueueEntry> {
        let (mut entries, mut after) = (Vec::new(), None);
        loop {
            let Reply::Queue(page) = self.ask(order, Request::Queue { after, limit: 1000 }) else {
                panic!("no queue page");
            };
            entries.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => return entries,
            }
        }
    }

    /// Every stored case (an admin's list), page after page, oldest first.
    pub fn cases(&self, order: &[usize]) -> Vec<CaseInfo> {
        let (mut cases, mut after) = (Vec::new(), None);
        loop {
            let request = Request::Cases {
                filter: Default::default(),
                after,
                limit: 1000,
            };
            let Reply::Cases(page) = self.ask(order, request) else {
                panic!("no case list");
            };
            cases.extend(page.cases);
            match page.next {
                Some(next) => after = Some(next),
                None => return cases,
            }
        }
    }
}

/// Which node serves each open case, as the store's rows say (`home_node` `n1` is node
/// 0): where a client landed is the first node that answered it, not always the first it
/// named.
pub fn homes(db: &FreshDatabase) -> HashMap<SessionCode, usize> {
    db.query_texts(
        "SELECT code::text || ' ' || home_node FROM cases
         WHERE state IN ('new', 'pending', 'in_progress')",
    )
    .into_iter()
    .map(|row| {
        let row = row.expect("an open case served by no node");
        let parsed = row.split_once(' ').and_then(|(number, node)| {
            let code = SessionCode::from_number(number.parse().ok()?)?;
            Some((
                code,
                node.strip_prefix('n')?
                    .parse::<usize>()
                    .ok()?
                    .checked_sub(1)?,
            ))
        });
        parsed.unwrap_or_else(|| panic!("unexpected row {row:?}"))
    })
    .collect()
}

/// Polls `probe` every 100 ms until it gives a value; panics naming `what` after
/// `patience` (a guard against hangs, never a performance assertion).
pub fn wait_until<T>(what: &str, patience: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `bytes` each way through a paired customer and expert (`seed` picks the bytes),
/// checking every byte.
pub fn relay_both_ways(
    customer: &mut super::Session,
    expert: &mut super::Session,
    bytes: usize,
    seed: u64,
) {
    let up = super::payload(bytes, seed);
    customer.send(&up);
    assert_eq!(expert.receive(up.len()), up, "customer to expert");
    let down = super::payload(bytes, seed + 1);
    expert.send(&down);
    assert_eq!(customer.receive(down.len()), down, "expert to customer");
}
