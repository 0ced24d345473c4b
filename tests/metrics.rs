//! End to end: the Prometheus endpoint serves the broker's figures, and a scrape parses as
//! Prometheus text format.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};

use common::Daemon;

/// `GET path` over plain HTTP; the response's head and body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: sosqd\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

/// Fetches `GET /metrics` over plain HTTP.
fn scrape(addr: &str) -> String {
    let (head, body) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// Parses Prometheus text format strictly enough to catch mistakes: every sample line is
/// `name{labels} value` with a declared family. Returns samples keyed by `name{labels}`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut declared = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            declared.push(name);
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line}"
                );
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        !key.is_empty() && quoted.starts_with('"') && quoted.ends_with('"'),
                        "{line}"
                    );
                }
            }
        }
        let family = declared.iter().find(|family| {
            name == family.as_str()
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}"))
        });
        assert!(family.is_some(), "sample of an undeclared family: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn the_metrics_endpoint_serves_the_brokers_figures_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sosqd.toml");
    std::fs::write(&config, "metrics_listen = \"127.0.0.1:0\"\n").unwrap();
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    daemon.wait_for_log("metrics on http://");
    let log = daemon.log();
    let metrics_addr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let expert = daemon.add_user("ana", "expert");

    let mut waiting = daemon.session(None, &["request", "--name", "Waiting", "--priority", "low"]);
    waiting.expect_event("attached");
    let mut served = daemon.session(
        None,
        &["request", "--name", "Served", "--priority", "critical"],
    );
    served.expect_event("attached");
    let mut pull = daemon.session(Some(&expert), &["pull"]);
    pull.expect_event("paired");
    let bad = daemon.run(Some("sosq_wrong"), &["queue"]);
    assert!(!bad.status.success());

    let samples = parse(&scrape(&metrics_addr));
    let get = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
    };
    assert_eq!(get("sosq_open_cases{state=\"in_progress\"}"), 1.0);
    assert_eq!(get("sosq_open_cases{state=\"pending\"}"), 1.0);
    assert_eq!(get("sosq_queue_length{group=\"general\"}"), 1.0);
    assert!(get("sosq_queue_oldest_wait_seconds{group=\"general\"}") >= 0.0);
    assert_eq!(
        get("sosq_first_response_seconds_count{priority=\"critical\"}"),
        1.0
    );
    assert_eq!(
        get("sosq_first_response_seconds_bucket{priority=\"critical\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        get("sosq_response_targets_missed_total{priority=\"critical\"}"),
        0.0
    );
    assert_eq!(get("sosq_pairings_total"), 1.0);
    assert_eq!(get("sosq_pairing_latency_seconds_count"), 1.0);
    assert_eq!(get("sosq_failed_authentications_total"), 1.0);
    assert!(samples.contains_key("sosq_relayed_bytes_total"));
    assert!(samples.contains_key("sosq_refused_connections_total"));

    // Two customers and one expert are connected; the failed login never got in.
    assert_eq!(get("sosqd_connected_parties{role=\"customer\"}"), 2.0);
    assert_eq!(get("sosqd_connected_parties{role=\"expert\"}"), 1.0);
    assert_eq!(get("sosqd_connected_parties{role=\"admin\"}"), 0.0);
    assert!(get("sosqd_uptime_seconds") >= 0.0);
    let build = samples
        .keys()
        .find(|series| series.starts_with("sosqd_build_info{"))
        .unwrap_or_else(|| panic!("no sosqd_build_info in {samples:?}"));
    assert_eq!(samples[build], 1.0);
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(build.contains(&version), "{build}");
    assert!(
        build.contains(&format!("commit=\"{}\"", sosqd::COMMIT)),
        "{build}"
    );

    // A customer leaving is counted out.
    drop(waiting);
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while parse(&scrape(&metrics_addr))["sosqd_connected_parties{role=\"customer\"}"] != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the customer never left"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts a QUIC handshake with the daemon and never finishes it: a real client's first
/// datagram (its Initial), captured on a socket that never answers, is replayed to the
/// daemon from a socket that ignores the reply. The daemon holds the connection's place
/// until the handshake times out, which keeps a shutdown's grace period running.
fn half_open_handshake(daemon: &Daemon) -> std::net::UdpSocket {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut client = daemon.sosq(None);
    client
        .env("SOSQ_SERVER", sink.local_addr().unwrap().to_string())
        .args(["request", "--name", "Half"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut client = client.spawn().unwrap();
    let mut initial = vec![0u8; 65_536];
    let (n, _) = sink.recv_from(&mut initial).expect("the client's Initial");
    let _ = client.kill();
    let _ = client.wait();
    let half = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    half.send_to(&initial[..n], &daemon.addr).unwrap();
    half
}

#[test]
fn healthz_says_ok_while_serving_and_503_once_shutdown_has_begun() {
    let (_dir, config) = common::config_file(
        "metrics_listen = \"127.0.0.1:0\"\n\
         shutdown_grace = \"60s\"\nhandshake_timeout = \"60s\"\nidle_timeout = \"60s\"\n",
    );
    let mut daemon = Daemon::start(&["--config", &config]);
    let metrics = daemon.metrics_addr();
    let (head, body) = get(&metrics, "/healthz");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body.trim(), "ok");

    let _half = half_open_handshake(&daemon);
    // The daemon took the handshake in before shutdown starts, or the grace would have
    // nothing to wait for.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while parse(&scrape(&metrics))["sosqd_open_connections"] != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the handshake never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    daemon.wait_for_log("shutting down");
    let (head, body) = get(&metrics, "/healthz");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert_eq!(body.trim(), "shutting down");
    assert!(daemon.is_running(), "the grace period is still running");
    // Metrics stay up for the grace period too.
    assert!(parse(&scrape(&metrics)).contains_key("sosqd_uptime_seconds"));
}

#[test]
fn version_names_the_commit() {
    let out = std::process::Command::new(common::sosqd_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("no commit in {text:?}"));
    assert!(
        text.starts_with(&format!("sosqd {} ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // This test runs from a git checkout, so the commit is a short hash, not "unknown".
    assert!(
        commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit:?}"
    );
}
