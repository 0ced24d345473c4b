//! Smoke run of the scale benchmark's load generator ([`sosqd::loadgen`]) at small scale
//! against a real daemon: every intake gets a code, every pairing pairs, the bulk delete
//! deletes exactly the seeded closed cases while pairing goes on, and the bare-quinn
//! baseline answers. It checks counts only, never time (`cargo bench --bench scale`
//! measures).

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Daemon;
use sosqd::loadgen::{self, Fleet, PairingPlan};

const CUSTOMERS: usize = 200;
const PAIRINGS: usize = 100;
const SEEDED: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_at_small_scale() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    loadgen::seed_closed_cases(dir.path(), SEEDED, Duration::from_secs(2 * 3600))
        .await
        .expect("seed closed cases");
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("sosqd.toml");
    std::fs::write(
        &config,
        "max_connections_per_address = 10000\nretry_above_handshakes_per_second = 100000\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path").to_string();
    let daemon = Daemon::start_in_logging(dir, &["--config", &config], "warn,sosqd=info");
    let out = daemon.admin_command(&["group", "add", "intake"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expert = daemon.add_user("load-expert", "expert");
    let admin = daemon.add_user("load-admin", "admin");

    let sources: [IpAddr; 2] = [[127, 0, 0, 1].into(), [127, 0, 0, 2].into()];
    let fleet = Arc::new(
        Fleet::open(&daemon.options(None), 4, &sources)
            .await
            .expect("client endpoints"),
    );

    // 1. Intake: every customer gets its own code and stays waiting.
    let intake = loadgen::intake(fleet.clone(), CUSTOMERS, 32, Some("intake".into())).await;
    assert_eq!(intake.failures, 0, "intake errors: {:?}", intake.errors);
    assert_eq!(intake.done.len(), CUSTOMERS);
    let codes: HashSet<_> = intake.done.iter().map(|c| c.code).collect();
    assert_eq!(codes.len(), CUSTOMERS, "every case has its own code");

    // 2. Pairing: every pull pairs with a customer who accepts the expert's stream.
    let plan = PairingPlan {
        pairings: PAIRINGS,
        per_second: 200.0,
        customer_lead: Duration::from_millis(50),
        group: None,
        experts: 10,
        pacing: None,
    };
    let pairing = loadgen::pairing(fleet.clone(), &expert, plan.clone()).await;
    assert_eq!(pairing.failures, 0, "pairing errors: {:?}", pairing.errors);
    assert_eq!(pairing.latencies.len(), PAIRINGS);

    // 3. Bulk delete of the seeded closed cases while pairing goes on: the fresh cases the
    // pairing closes are younger than the filter's age and stay.
    let during = {
        let (fleet, expert) = (fleet.clone(), expert.clone());
        let plan = PairingPlan {
            pairings: 50,
            ..plan
        };
        tokio::spawn(async move { loadgen::pairing(fleet, &expert, plan).await })
    };
    let admin = fleet.party(Some(&admin)).await.expect("admin connects");
    let (deleted, _took) = loadgen::delete_closed(admin, Duration::from_secs(3600))
        .await
        .expect("bulk delete");
    assert_eq!(deleted, SEEDED);
    let during = during.await.expect("pairing task");
    assert_eq!(during.failures, 0, "pairing errors: {:?}", during.errors);
    assert_eq!(during.latencies.len(), 50);
    drop(intake);
    fleet.close().await;

    // 4. The bare-quinn baseline: same TLS and transport settings, one round trip each.
    let bare_dir = tempfile::tempdir().expect("temp dir");
    let (endpoint, fingerprint) =
        loadgen::bare_endpoint(bare_dir.path(), None).expect("bare endpoint");
    let options = sosq::ConnectOptions {
        server: endpoint.local_addr().expect("address").to_string(),
        fingerprint,
        token: None,
        ca: None,
    };
    let server = tokio::spawn(loadgen::serve_bare(endpoint.clone()));
    let bare_fleet = Arc::new(
        Fleet::open(&options, 2, &sources[..1])
            .await
            .expect("fleet"),
    );
    let bare = loadgen::bare_intake(bare_fleet.clone(), 50, 16).await;
    assert_eq!(bare.failures, 0, "bare errors: {:?}", bare.errors);
    assert_eq!(bare.done.len(), 50);
    drop(bare);
    bare_fleet.close().await;
    endpoint.close(0u32.into(), b"done");
    server.abort();
}
