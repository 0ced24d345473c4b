//! Test harness: a real `sosqd` process on 127.0.0.1 with a fresh data dir, and real `sosq`
//! processes (or library clients) talking to it.
//!
//! Timeouts here only stop a broken test from hanging CI; no test asserts on how long
//! anything took.

#![allow(dead_code)]

pub mod chat_socket;
pub mod cluster;
pub mod fake_node;
pub mod postgres;
pub mod proxy;
pub mod web;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sosq::protocol::{CaseInfo, Reply, Request};
use sosq::{Client, ConnectOptions};

/// Generous guard against hangs; never a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running daemon, killed on drop.
pub struct Daemon {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Certificate fingerprint as logged.
    pub fingerprint: String,
    /// The data dir (shared, so a restarted daemon can use it again).
    pub dir: Arc<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
}

/// Writes a config file (for `sosqd serve --config`) in a fresh dir; returns (dir, path).
pub fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sosqd.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

/// Path of the `sosqd` binary under test.
pub fn sosqd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sosqd"))
}

/// Path of the `sosq` binary, built beside `sosqd` by `cargo test --workspace`.
pub fn sosq_bin() -> PathBuf {
    let path = sosqd_bin().with_file_name("sosq");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds the client too",
        path.display()
    );
    path
}

impl Daemon {
    /// Starts `sosqd serve` on an ephemeral port with a fresh data dir and `extra` flags.
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_logging(extra, "info")
    }

    /// [`Daemon::start`] with a `RUST_LOG` filter.
    pub fn start_logging(extra: &[&str], filter: &str) -> Daemon {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Daemon::start_in_logging(dir, extra, filter)
    }

    /// Starts `sosqd serve` on an ephemeral port on an existing data dir (a restart).
    pub fn start_in(dir: Arc<tempfile::TempDir>, extra: &[&str]) -> Daemon {
        Daemon::start_in_logging(dir, extra, "info")
    }

    /// [`Daemon::start_in`] with a `RUST_LOG` filter.
    pub fn start_in_logging(dir: Arc<tempfile::TempDir>, extra: &[&str], filter: &str) -> Daemon {
        Daemon::start_with_env(dir, extra, filter, &[])
    }

    /// Starts `sosqd serve` on `dir` with extra environment variables (an `LD_PRELOAD`ed
    /// fake clock, say).
    pub fn start_with_env(
        dir: Arc<tempfile::TempDir>,
        extra: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        // An ephemeral port unless the test names one (a restart on the same address).
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut cmd = Command::new(sosqd_bin());
        cmd.envs(env.iter().copied())
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .env("RUST_LOG", filter);
        Daemon::spawn(cmd, dir)
    }

    /// Starts a prepared `sosqd serve` command (run as another user, from another
    /// directory...) whose data dir is `dir`; waits for it to log where it listens.
    pub fn spawn(mut cmd: Command, dir: Arc<tempfile::TempDir>) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sosqd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(ready) = sosqd::server::parse_listening_line(&line) {
                    let _ = ready_tx.send(ready);
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (addr, fingerprint) = ready_rx
            .recv_timeout(PATIENCE)
            .expect("sosqd did not log its address");
        Daemon {
            child,
            addr,
            fingerprint,
            dir,
            log,
        }
    }

    /// Waits until the daemon has logged `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "sosqd never logged {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL (`kill -9`: no shutdown, no flush) and waits for it to
    /// be gone; returns its data dir for a restart.
    pub fn kill9(mut self) -> Arc<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }

    /// The metrics listener's address (`metrics_listen`), from the daemon's start-up log.
    pub fn metrics_addr(&self) -> String {
        self.wait_for_log("metrics on http://");
        self.log()
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("the start-up log names the metrics address")
            .to_string()
    }

    /// The web console's base URL (`https://127.0.0.1:PORT`, no trailing slash), from the
    /// daemon's start-up log.
    pub fn console_url(&self) -> String {
        self.wait_for_log("web console at ");
        let log = self.log();
        let url = log
            .lines()
            .find_map(sosqd::server::parse_console_line)
            .expect("the start-up log names the console's URL");
        url.trim_end_matches('/').to_string()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The daemon's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS line");
        kb * 1024
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sosqd did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Runs `sosqd` with a subcommand against this data dir.
    pub fn admin_command(&self, args: &[&str]) -> Output {
        Command::new(sosqd_bin())
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path())
            .output()
            .expect("run sosqd")
    }

    /// Adds a user and returns its token.
    pub fn add_user(&self, name: &str, role: &str) -> String {
        let out = self.admin_command(&["user", "add", name, "--role", role]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A `sosq` command pointed at this daemon, with `token` if given.
    pub fn sosq(&self, token: Option<&str>) -> Command {
        let mut cmd = Command::new(sosq_bin());
        cmd.env("SOSQ_SERVER", &self.addr)
            .env("SOSQ_FINGERPRINT", &self.fingerprint)
            .env_remove("SOSQ_TOKEN")
            .env_remove("SOSQ_SECRET");
        if let Some(token) = token {
            cmd.env("SOSQ_TOKEN", token);
        }
        cmd
    }

    /// Runs a short `sosq` command to completion.
    pub fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = self.sosq(token);
        cmd.args(args).stdin(Stdio::null());
        run_with_patience(cmd)
    }

    /// Runs a short `sosq --json` command that must succeed; returns its stdout as JSON.
    pub fn json(&self, token: Option<&str>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(token, &all);
        assert!(
            out.status.success(),
            "sosq {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is JSON")
    }

    /// Starts a long-running `sosq --json` session command.
    pub fn session(&self, token: Option<&str>, args: &[&str]) -> Session {
        let mut cmd = self.sosq(token);
        cmd.arg("--json")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Session::spawn(cmd)
    }

    /// Customer Alice asks for help and the expert with `expert_token` pulls her case;
    /// returns both sessions once each has seen `paired`: (customer, expert).
    pub fn paired_sessions(&self, expert_token: &str) -> (Session, Session) {
        let mut customer = self.session(None, &["request", "--name", "Alice"]);
        customer.expect_event("attached");
        let mut expert = self.session(Some(expert_token), &["pull"]);
        expert.expect_event("paired");
        customer.expect_event("paired");
        (customer, expert)
    }

    /// Adds a staff user and connects a library client as them: the token and the client.
    pub async fn staff_client(&self, name: &str, role: &str) -> (String, Client) {
        let token = self.add_user(name, role);
        let client = Client::connect(&self.options(Some(&token)))
            .await
            .unwrap_or_else(|e| panic!("{role} {name} connects: {e}"));
        (token, client)
    }

    /// A library customer named `customer` that asked for help (general queue, no
    /// description); panics unless the daemon attached it to a new case.
    pub async fn sos_customer(&self, customer: &str) -> (Client, CaseInfo) {
        let mut client = Client::connect(&self.options(None))
            .await
            .expect("customer connects");
        let reply = client
            .request(Request::OpenSos {
                customer: customer.into(),
                description: String::new(),
                priority: Default::default(),
                group: None,
            })
            .await;
        match reply {
            Ok(Reply::Attached { case, .. }) => (client, case),
            other => panic!("no case for {customer}: {other:?}"),
        }
    }

    /// Library connection options for a party with `token`.
    pub fn options(&self, token: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            server: self.addr.clone(),
            fingerprint: self.fingerprint.clone(),
            token: token.map(str::to_string),
            ca: None,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sosqd serve` on `dir` expecting it to refuse to start; returns its stderr.
pub fn refused_start(dir: &std::path::Path) -> String {
    let mut cmd = Command::new(sosqd_bin());
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null());
    let out = run_with_patience(cmd);
    assert!(!out.status.success(), "sosqd started on {}", dir.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command, killing it if it outlives [`PATIENCE`]. Its output is read while it
/// runs: a command that prints more than a pipe holds (64 KiB) would otherwise wait for a
/// reader that only comes when it has exited.
pub fn run_with_patience(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "command did not finish: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A `sosq` session process: JSON status lines from stderr, bytes on stdin/stdout.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    events: mpsc::Receiver<Value>,
    /// Every stderr line so far, for failure messages.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Session {
    /// Wraps a prepared command (stdin, stdout and stderr piped) as a session.
    pub fn from_command(cmd: Command) -> Session {
        Session::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Session {
        let mut child = cmd.spawn().expect("spawn sosq");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, events) = mpsc::channel();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        Session {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
            events,
            stderr: lines,
        }
    }

    /// Waits for the next status event named `name`, skipping others; returns it.
    pub fn expect_event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == name => return event,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no {name:?} event; stderr so far:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                ),
            }
        }
    }

    /// Waits until a stderr line (text or JSON) contains `text`; for commands run without
    /// `--json`, whose status lines are prose.
    pub fn expect_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(text))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {text:?}; stderr so far:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the `forwarding` event of `--forward 127.0.0.1:0`; the port it listens on.
    pub fn expect_forwarding(&mut self) -> SocketAddr {
        let event = self.expect_event("forwarding");
        event["listen"]
            .as_str()
            .and_then(|listen| listen.parse().ok())
            .unwrap_or_else(|| panic!("forwarding event without a listen address: {event}"))
    }

    /// Writes bytes to the process's stdin.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Sends Ctrl-C (SIGINT) to the process.
    pub fn interrupt(&mut self) {
        self.signal("INT");
    }

    /// Sends the signal `name` ("TERM", "HUP", "STOP", "CONT", "KILL") to the process.
    pub fn signal(&mut self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Kills the process with SIGKILL (no goodbye) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin (EOF: half-close).
    pub fn finish(&mut self) {
        self.stdin.take();
    }

    /// Reads stdout lines until `done` accepts one; returns every line read.
    pub fn stdout_lines_until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            loop {
                let byte = self.receive(1)[0];
                if byte == b'\n' {
                    break;
                }
                line.push(byte);
            }
            let line = String::from_utf8(line).expect("utf-8 line");
            let finished = done(&line);
            lines.push(line);
            if finished {
                return lines;
            }
        }
    }

    /// Reads exactly `n` bytes of stdout.
    pub fn receive(&mut self, n: usize) -> Vec<u8> {
        let mut stdout = self.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; n];
            let result = stdout.read_exact(&mut buf).map(|_| buf);
            let _ = tx.send((result, stdout));
        });
        let (result, stdout) = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "no {n} bytes on stdout; stderr:\n{}",
                self.stderr.lock().unwrap().join("\n")
            )
        });
        self.stdout = Some(stdout);
        result.expect("read stdout")
    }

    /// Waits for the process to exit; returns its exit status and stderr.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        self.stdin.take();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain what is left.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.stderr.lock().unwrap().join("\n"));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "session did not end; stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (every byte value appears).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A TCP echo service for a customer to share (`--share`); its address. Each connection is
/// echoed on its own thread until the peer closes.
pub fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf) {
                    if n == 0 || tcp.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `message` through the expert's forwarded port `local` and asserts the shared echo
/// service sent it back unchanged.
pub fn echo_through(local: SocketAddr, message: &[u8]) {
    let mut tcp = TcpStream::connect(local).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.write_all(message).unwrap();
    let mut echo = vec![0u8; message.len()];
    tcp.read_exact(&mut echo).unwrap();
    assert_eq!(echo, message);
}
