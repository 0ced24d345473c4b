//! End to end: the Prometheus endpoint serves the broker's figures, and a scrape parses as
//! Prometheus text format.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};

use common::Daemon;

/// Fetches `GET /metrics` over plain HTTP.
fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: sosqd\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
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
}
