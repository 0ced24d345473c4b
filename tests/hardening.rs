//! End to end against a real sosqd: the authorization matrix cell by cell, revocation of
//! open connections, the wrong-code throttle of one connection (`tests/throttle.rs` has
//! the rest), connection limits, a connection flood with Retry, and graceful shutdown.

mod common;

use std::time::Duration;

use common::{config_file, Daemon};
use sosq::protocol::{DeleteSelector, ErrorKind, Reply, Request};
use sosq::{Client, ClientError};

/// What a principal may do, one row per request; `true` = not refused as forbidden.
#[tokio::test]
async fn the_authorization_matrix_holds_cell_by_cell() {
    let daemon = Daemon::start(&[]);
    let expert_token = daemon.add_user("ana", "expert");
    let admin_token = daemon.add_user("root", "admin");
    let revoked_token = daemon.add_user("gone", "expert");
    let revoked = daemon.admin_command(&["user", "revoke", "gone"]);
    assert!(revoked.status.success());

    // A case of someone else's, so "own case or not" is exercised for customers.
    let (_owner, case) = daemon.sos_customer("Owner").await;
    let code = case.code.to_string();

    let requests = |code: &str| -> Vec<(&'static str, Request)> {
        vec![
            (
                "request",
                Request::OpenSos {
                    customer: "x".into(),
                    description: String::new(),
                    priority: Default::default(),
                    group: None,
                },
            ),
            (
                "join other",
                Request::Join {
                    code: code.into(),
                    customer: "x".into(),
                    resume_secret: None,
                },
            ),
            (
                "queue",
                Request::Queue {
                    after: None,
                    limit: 0,
                },
            ),
            ("pull", Request::Pull { wait: false }),
            (
                "connect",
                Request::Connect {
                    code: "s000-000-000".into(),
                    working_queue: false,
                },
            ),
            (
                "create",
                Request::Create {
                    customer: "x".into(),
                    description: String::new(),
                },
            ),
            (
                "close other",
                Request::Close {
                    code: code.into(),
                    resume_secret: None,
                },
            ),
            (
                "status other",
                Request::Status {
                    code: code.into(),
                    resume_secret: None,
                },
            ),
            (
                "history other",
                Request::History {
                    code: code.into(),
                    from: 0,
                    limit: 0,
                },
            ),
            (
                "note other",
                Request::Note {
                    code: code.into(),
                    text: "called back".into(),
                },
            ),
            (
                "message other",
                Request::AddMessage {
                    code: code.into(),
                    resume_secret: None,
                    text: "it beeps".into(),
                },
            ),
            (
                "attach other",
                Request::AttachStart {
                    code: code.into(),
                    resume_secret: None,
                    name: "a.png".into(),
                    size: 10,
                },
            ),
            (
                "attachments other",
                Request::Attachments { code: code.into() },
            ),
            (
                "attachment other",
                Request::Attachment {
                    code: code.into(),
                    id: 1,
                    offset: 0,
                },
            ),
            (
                "cases",
                Request::Cases {
                    filter: Default::default(),
                    after: None,
                    limit: 0,
                },
            ),
            (
                "delete",
                Request::Delete(DeleteSelector::Codes(vec!["s000-000-000".parse().unwrap()])),
            ),
        ]
    };
    // Columns: customer, expert, admin. For customers, "other" cases are refused as not
    // theirs (Forbidden), which is the point of the matrix.
    let allowed: [(&str, [bool; 3]); 16] = [
        ("request", [true, false, false]),
        ("join other", [false, false, false]),
        ("queue", [false, true, true]),
        ("pull", [false, true, false]),
        ("connect", [false, true, false]),
        ("create", [false, true, false]),
        ("close other", [false, true, false]),
        ("status other", [false, true, true]),
        ("history other", [false, true, true]),
        // The expert's note lands on the case its "close other" closed: a note is for any
        // stored case, open or not.
        ("note other", [false, true, true]),
        // A customer adds words and files to its own case only; staff never do.
        ("message other", [false, false, false]),
        ("attach other", [false, false, false]),
        // Staff read any case's files; a customer none, not even its own.
        ("attachments other", [false, true, true]),
        ("attachment other", [false, true, true]),
        ("cases", [false, false, true]),
        ("delete", [false, false, true]),
    ];
    for (column, token) in [None, Some(&expert_token), Some(&admin_token)]
        .into_iter()
        .enumerate()
    {
        for ((name, request), (row, expected)) in requests(&code).into_iter().zip(allowed) {
            assert_eq!(name, row);
            // A fresh connection per cell, so one cell's attachment cannot affect another.
            let mut client = Client::connect(&daemon.options(token.map(String::as_str)))
                .await
                .unwrap();
            let outcome = client.request(request).await;
            let forbidden =
                matches!(&outcome, Err(ClientError::Refused(r)) if r.kind == ErrorKind::Forbidden);
            assert_eq!(
                !forbidden,
                expected[column],
                "{name} as {}: {outcome:?}",
                ["customer", "expert", "admin"][column]
            );
            client.close().await;
        }
    }
    // The expert's "close other" above closed the owner's case; the owner was told. Both
    // staff notes were kept, on the closed case, by whom.
    let mut admin = Client::connect(&daemon.options(Some(&admin_token)))
        .await
        .unwrap();
    let reply = admin
        .request(Request::History {
            code: code.clone(),
            from: 0,
            limit: 0,
        })
        .await
        .unwrap();
    let sosq::protocol::Reply::History(page) = reply else {
        panic!("not a history: {reply:?}");
    };
    let notes: Vec<String> = page
        .entries
        .iter()
        .filter(|entry| entry.staff_only())
        .map(|entry| {
            entry
                .actor
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(notes, ["expert ana", "admin root"], "{:?}", page.entries);
    admin.close().await;
    // Revoked tokens get nowhere.
    match Client::connect(&daemon.options(Some(&revoked_token))).await {
        Err(ClientError::Refused(r)) => assert_eq!(r.kind, ErrorKind::Unauthenticated),
        other => panic!("revoked token accepted: {:?}", other.err()),
    }
}

/// A request sent right behind the hello (as `sosq request` does) is carried out only
/// after the hello is accepted: behind a refused one it never runs.
#[tokio::test]
async fn a_request_pipelined_behind_a_refused_hello_is_never_run() {
    let daemon = Daemon::start(&[]);
    let admin_token = daemon.add_user("root", "admin");
    let expert_token = daemon.add_user("ana", "expert");
    let create = || Request::Create {
        customer: "pipelined".into(),
        description: String::new(),
    };
    let bad = daemon.options(Some("not-a-token"));
    match Client::connect_with(&bad, Some(create())).await {
        Err(ClientError::Refused(r)) => assert_eq!(r.kind, ErrorKind::Unauthenticated),
        other => panic!("a bad token was accepted: {:?}", other.err()),
    }
    let mut admin = Client::connect(&daemon.options(Some(&admin_token)))
        .await
        .expect("admin");
    match admin
        .request(Request::Cases {
            filter: Default::default(),
            after: None,
            limit: 0,
        })
        .await
    {
        Ok(Reply::Cases(page)) => assert!(page.cases.is_empty(), "{page:?}"),
        other => panic!("{other:?}"),
    }
    // With a good hello the same flight creates the case and answers both.
    let good = daemon.options(Some(&expert_token));
    let (_client, reply) = Client::connect_with(&good, Some(create()))
        .await
        .expect("pipelined create");
    assert!(matches!(reply, Some(Reply::Created(_))), "{reply:?}");
}

#[tokio::test]
async fn revoking_a_user_closes_its_open_connections() {
    let daemon = Daemon::start(&[]);
    let (_, mut expert) = daemon.staff_client("ana", "expert").await;
    assert!(expert
        .request(Request::Queue {
            after: None,
            limit: 0
        })
        .await
        .is_ok());
    let out = daemon.admin_command(&["user", "revoke", "ana"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reason = tokio::time::timeout(common::PATIENCE, expert.connection().closed())
        .await
        .expect("connection closed after revocation");
    assert!(reason.to_string().contains("revoked"), "{reason}");
    let listed = daemon.admin_command(&["user", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("ana"));
}

/// A connection that spent its wrong-code budget is refused even the right code, with a
/// wait; the case is untouched, and another party behind the same address still gets in.
#[tokio::test]
async fn wrong_codes_are_throttled_per_connection_with_a_wait() {
    let (_dir, config) = config_file(
        "wrong_codes_per_connection_burst = 3\nwrong_codes_per_connection_per_minute = 1\n",
    );
    let daemon = Daemon::start(&["--config", &config]);
    let expert = daemon.add_user("ana", "expert");
    let created = daemon.json(Some(&expert), &["create", "--customer", "Bob"]);
    let real_code = created["code"].as_str().unwrap().to_string();

    let mut guesser = Client::connect(&daemon.options(None)).await.unwrap();
    let guess = |code: &str| Request::Join {
        code: code.into(),
        customer: "Mallory".into(),
        resume_secret: None,
    };
    for wrong in ["s000-000-001", "s000-000-002", "s000-000-003"] {
        match guesser.request(guess(wrong)).await {
            Err(ClientError::Refused(r)) => assert_eq!(r.kind, ErrorKind::UnknownCode),
            other => panic!("{other:?}"),
        }
    }
    // Budget spent: even the right code is refused now, with a wait.
    match guesser.request(guess(&real_code)).await {
        Err(ClientError::Refused(r)) => {
            assert_eq!(r.kind, ErrorKind::Throttled);
            assert!(r.message.contains("wait"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    // The case is untouched, and Bob, from the same address, joins it.
    let status = daemon.json(Some(&expert), &["status", &real_code]);
    assert_eq!(status["state"], "new");
    let mut bob = Client::connect(&daemon.options(None)).await.unwrap();
    let joined = bob
        .request(Request::Join {
            code: real_code.clone(),
            customer: "Bob".into(),
            resume_secret: None,
        })
        .await;
    assert!(matches!(joined, Ok(Reply::Attached { .. })), "{joined:?}");
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_refused_before_the_handshake() {
    let (_dir, config) = config_file("max_connections_per_address = 3\n");
    let daemon = Daemon::start(&["--config", &config]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(&daemon.options(None)).await.unwrap());
    }
    match Client::connect(&daemon.options(None)).await {
        Err(ClientError::Connect { reason, .. }) => {
            assert!(reason.to_lowercase().contains("refused"), "{reason}")
        }
        other => panic!(
            "expected a refusal, got {:?}",
            other.err().map(|e| e.to_string())
        ),
    }
    held.pop().unwrap().close().await;
    // The freed place is taken again (the server notices the close within moments).
    let mut again = None;
    for _ in 0..100 {
        if let Ok(client) = Client::connect(&daemon.options(None)).await {
            again = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a freed place is usable again");
}

#[tokio::test]
async fn connections_beyond_the_total_limit_are_refused_and_counted() {
    let (_dir, config) = config_file("max_connections = 2\n");
    let daemon = Daemon::start(&["--config", &config]);
    let _first = Client::connect(&daemon.options(None)).await.unwrap();
    let _second = Client::connect(&daemon.options(None)).await.unwrap();
    match Client::connect(&daemon.options(None)).await {
        Err(ClientError::Connect { reason, .. }) => {
            assert!(reason.to_lowercase().contains("refused"), "{reason}")
        }
        other => panic!(
            "expected a refusal, got {:?}",
            other.err().map(|e| e.to_string())
        ),
    }
    daemon.wait_for_log("the server is at its connection limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_leaves_the_daemon_up_and_a_connected_expert_working() {
    let (_dir, config) =
        config_file("retry_above_handshakes_per_second = 20\nmax_connections = 150\n");
    let mut daemon = Daemon::start(&["--config", &config]);
    let (_, mut expert) = daemon.staff_client("ana", "expert").await;

    // 400 connection attempts from as many source ports, most of them never saying hello.
    let mut attempts = Vec::new();
    for i in 0..400 {
        let options = daemon.options(None);
        attempts.push(tokio::spawn(async move {
            let connected = sosq::client::connect_quic(&options).await;
            if i % 10 == 0 {
                // Some hold their connection a while without a hello.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            connected.is_ok()
        }));
    }
    // The expert keeps being served during the flood.
    for _ in 0..20 {
        assert!(matches!(
            expert
                .request(Request::Queue {
                    after: None,
                    limit: 0
                })
                .await,
            Ok(Reply::Queue(_))
        ));
    }
    let mut succeeded = 0;
    for attempt in attempts {
        if attempt.await.unwrap() {
            succeeded += 1;
        }
    }
    assert!(succeeded > 0, "Retry still lets real clients in");
    assert!(daemon.is_running());
    assert!(matches!(
        expert
            .request(Request::Queue {
                after: None,
                limit: 0
            })
            .await,
        Ok(Reply::Queue(_))
    ));
    let rss = daemon.rss_bytes();
    assert!(
        rss < 256 * 1024 * 1024,
        "daemon RSS {rss} bytes after the flood"
    );
}

#[test]
fn sigterm_shuts_down_gracefully_telling_parties_why() {
    let mut daemon = Daemon::start(&[]);
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    customer.expect_event("attached");
    let status = daemon.terminate();
    assert!(status.success(), "sosqd exits 0 on SIGTERM: {status:?}");
    // The customer is told why, and keeps trying to come back (the case is kept).
    let lost = customer.expect_event("reconnecting");
    assert!(
        lost["reason"].as_str().unwrap().contains("shutting down"),
        "{lost}"
    );
    assert!(daemon.log().contains("stopped"));
    customer.interrupt();
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stays open"), "{stderr}");
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it; returns (ca_pem, cert_pem, key_pem).
fn operator_pki() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

#[tokio::test]
async fn an_operator_certificate_is_trusted_through_its_ca_and_a_foreign_ca_is_refused() {
    let (ca, cert, key) = operator_pki();
    let pki = tempfile::tempdir().unwrap();
    let path = |name: &str| pki.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("ca.pem"), &ca).unwrap();
    std::fs::write(path("cert.pem"), &cert).unwrap();
    std::fs::write(path("key.pem"), &key).unwrap();
    let (_dir, config) = config_file(&format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        path("cert.pem"),
        path("key.pem")
    ));
    let daemon = Daemon::start(&["--config", &config]);

    let mut options = daemon.options(None);
    options.fingerprint = String::new();
    options.ca = Some(path("ca.pem").into());
    let client = Client::connect(&options)
        .await
        .expect("trusted through the CA");
    assert_eq!(client.role(), sosq::protocol::Role::Customer);
    client.close().await;
    // Pinning the operator certificate's fingerprint works too.
    assert!(Client::connect(&daemon.options(None)).await.is_ok());

    let (foreign_ca, _, _) = operator_pki();
    std::fs::write(path("foreign.pem"), foreign_ca).unwrap();
    options.ca = Some(path("foreign.pem").into());
    match Client::connect(&options).await {
        Err(ClientError::Connect { reason, .. }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("a foreign CA was trusted: {:?}", other.err()),
    }
}

/// A client that answers nothing after its first flight: its certificate check blocks.
#[derive(Debug)]
struct StallingVerifier(Duration);

impl rustls::client::danger::ServerCertVerifier for StallingVerifier {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        std::thread::sleep(self.0);
        Err(rustls::Error::General("stalled on purpose".into()))
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("unused".into()))
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("unused".into()))
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        sosq::tls::crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A bare quinn client endpoint with the given verifier and keep-alive.
fn raw_endpoint(
    verifier: std::sync::Arc<dyn rustls::client::danger::ServerCertVerifier>,
    keep_alive: Option<Duration>,
) -> quinn::Endpoint {
    let mut tls = rustls::ClientConfig::builder_with_provider(sosq::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![sosq::protocol::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(std::sync::Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(keep_alive);
    config.transport_config(std::sync::Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

#[test]
fn a_stalled_handshake_is_abandoned_and_frees_its_place() {
    let (_dir, config) = config_file("max_connections = 1\nhandshake_timeout = \"1s\"\n");
    let daemon = Daemon::start_logging(&["--config", &config], "sosqd=debug,info");
    let addr: std::net::SocketAddr = daemon.addr.parse().unwrap();
    let stalled_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stalled_done.clone();
    // The stalling client runs on its own runtime, which its verifier blocks.
    let stalled = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let endpoint = raw_endpoint(
                std::sync::Arc::new(StallingVerifier(Duration::from_secs(20))),
                None,
            );
            let _ = endpoint.connect(addr, "sosqd").unwrap().await;
        });
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    daemon.wait_for_log("abandoned a handshake that timed out");
    assert!(!stalled_done.load(std::sync::atomic::Ordering::SeqCst));
    // Its place (the only one) is free again for a real client.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = Client::connect(&daemon.options(None)).await.unwrap();
        let reply = client
            .request(Request::OpenSos {
                customer: "Alice".into(),
                description: String::new(),
                priority: Default::default(),
                group: None,
            })
            .await;
        assert!(matches!(reply, Ok(Reply::Attached { .. })), "{reply:?}");
    });
    drop(stalled);
}

#[tokio::test]
async fn a_party_the_network_cuts_off_is_dropped_after_the_idle_timeout_a_quiet_one_is_not() {
    let (_dir, config) = config_file("keep_alive = \"1s\"\nidle_timeout = \"3s\"\n");
    let daemon = Daemon::start(&["--config", &config]);
    let (mut quiet, quiet_case) = daemon.sos_customer("Patient").await;
    assert_eq!(
        quiet.liveness().idle_timeout,
        Duration::from_secs(3),
        "clients learn the daemon's figures at hello"
    );
    // Another customer reaches the daemon through a relay that the test then cuts.
    let proxy = common::proxy::UdpProxy::start(daemon.addr.parse().unwrap());
    let mut options = daemon.options(None);
    options.server = proxy.addr.to_string();
    let mut cut_off = Client::connect(&options).await.unwrap();
    let Ok(Reply::Attached { case, .. }) = cut_off
        .request(Request::OpenSos {
            customer: "Gone".into(),
            description: String::new(),
            priority: Default::default(),
            group: None,
        })
        .await
    else {
        panic!("no case for the second customer");
    };
    proxy.cut();
    // The daemon notices within its idle timeout: the customer shows offline.
    let (_, mut expert) = daemon.staff_client("look", "expert").await;
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let Ok(Reply::Queue(page)) = expert
            .request(Request::Queue {
                after: None,
                limit: 0,
            })
            .await
        else {
            panic!("no queue");
        };
        let gone = page.entries.iter().find(|e| e.code == case.code).unwrap();
        if !gone.online {
            assert_eq!(gone.position, None);
            assert_eq!(page.offline, 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never noticed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than the idle timeout has passed; the quiet customer, kept alive, is there.
    let status = quiet
        .request(Request::Status {
            code: quiet_case.code.to_string(),
            resume_secret: None,
        })
        .await;
    assert!(
        matches!(status, Ok(Reply::Case(ref case)) if case.customer_online),
        "{status:?}"
    );
}

/// `worker_threads` sizes the daemon's runtime; one thread still serves a whole session.
#[test]
fn a_daemon_on_one_worker_thread_pairs_and_relays() {
    let (_dir, config) = config_file("worker_threads = 1\n");
    let daemon = Daemon::start(&["--config", &config]);
    let expert = daemon.add_user("ana", "expert");
    let (mut customer, mut pull) = daemon.paired_sessions(&expert);
    customer.send(b"hello over one thread\n");
    assert_eq!(pull.receive(22), b"hello over one thread\n");
}
