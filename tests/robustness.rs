//! End to end against a real sosqd: wrong roles are refused clearly, garbage on the wire
//! gets an error and hurts nobody else, concurrent pulls never share a case, and a wrong
//! certificate fingerprint is named.

mod common;

use std::collections::HashSet;

use common::Daemon;
use sosq::codec;
use sosq::protocol::{
    close_code, ClientMessage, ErrorKind, Reply, Request, ServerMessage, PROTOCOL_VERSION,
};
use sosq::{Client, ClientError};

fn refusal(result: Result<Reply, ClientError>) -> ErrorKind {
    match result {
        Err(ClientError::Refused(refusal)) => refusal.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn every_role_is_refused_what_it_may_not_do() {
    let daemon = Daemon::start(&[]);
    let expert_token = daemon.add_user("ana", "expert");
    let admin_token = daemon.add_user("root", "admin");
    let mut customer = Client::connect(&daemon.options(None)).await.unwrap();
    let mut expert = Client::connect(&daemon.options(Some(&expert_token)))
        .await
        .unwrap();
    let mut admin = Client::connect(&daemon.options(Some(&admin_token)))
        .await
        .unwrap();

    let sos = || Request::OpenSos {
        customer: "x".into(),
        description: String::new(),
        priority: Default::default(),
        group: None,
    };
    let staff_only = [
        Request::Queue {
            after: None,
            limit: 0,
        },
        Request::Pull { wait: false },
        Request::Create {
            customer: "x".into(),
            description: String::new(),
        },
        Request::Connect {
            code: "s000-000-001".into(),
            working_queue: false,
        },
        Request::Cases {
            filter: Default::default(),
            after: None,
            limit: 0,
        },
        Request::Delete(sosq::protocol::DeleteSelector::Codes(vec![])),
    ];
    for request in staff_only {
        assert_eq!(
            refusal(customer.request(request).await),
            ErrorKind::Forbidden
        );
    }
    for request in [
        sos(),
        Request::Cases {
            filter: Default::default(),
            after: None,
            limit: 0,
        },
    ] {
        assert_eq!(refusal(expert.request(request).await), ErrorKind::Forbidden);
    }
    for request in [sos(), Request::Pull { wait: false }] {
        assert_eq!(refusal(admin.request(request).await), ErrorKind::Forbidden);
    }
    // The message says who may and who you are.
    match customer
        .request(Request::Queue {
            after: None,
            limit: 0,
        })
        .await
    {
        Err(ClientError::Refused(r)) => {
            assert!(
                r.message.contains("experts") && r.message.contains("customer"),
                "{}",
                r.message
            )
        }
        other => panic!("{other:?}"),
    }
    // A refused request changed nothing, and the connections still work.
    assert!(
        matches!(expert.request(Request::Queue { after: None, limit: 0 }).await, Ok(Reply::Queue(q)) if q.entries.is_empty())
    );
    assert!(
        matches!(admin.request(Request::Cases { filter: Default::default(), after: None, limit: 0 }).await, Ok(Reply::Cases(c)) if c.cases.is_empty())
    );

    // An unknown token is refused at hello.
    let bad = Client::connect(&daemon.options(Some("sosq_not-a-token"))).await;
    match bad {
        Err(ClientError::Refused(r)) => assert_eq!(r.kind, ErrorKind::Unauthenticated),
        other => panic!("expected refusal, got {:?}", other.err()),
    }
    // Via the CLI: non-zero exit and one line.
    let out = daemon.run(None, &["queue"]);
    assert_eq!(out.status.code(), Some(1));
    let line = String::from_utf8_lossy(&out.stderr);
    assert!(line.contains("viewing the queue is for experts"), "{line}");
}

#[tokio::test]
async fn garbage_frames_get_an_error_and_other_clients_keep_working() {
    let daemon = Daemon::start(&[]);
    let (_, mut expert) = daemon.staff_client("ana", "expert").await;
    let (_customer, case) = daemon.sos_customer("Alice").await;

    let garbage: [&[u8]; 4] = [
        // A length, then bytes that are no message.
        &[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A length far past the frame limit.
        &[0x7f, 0xff, 0xff, 0xff],
        // A request before hello.
        &codec::encode(&ClientMessage::Request(Request::Queue {
            after: None,
            limit: 0,
        }))
        .unwrap(),
        // Hello from a future protocol.
        &codec::encode(&ClientMessage::Hello {
            version: PROTOCOL_VERSION + 1,
            token: None,
        })
        .unwrap(),
    ];
    for bytes in garbage {
        let (_endpoint, connection) = sosq::client::connect_quic(&daemon.options(None))
            .await
            .unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        let answer: Option<ServerMessage> = codec::read_frame(&mut recv).await.unwrap();
        match answer {
            Some(ServerMessage::Reply(Reply::Error(e))) => {
                assert!(
                    matches!(e.kind, ErrorKind::BadFrame | ErrorKind::UnsupportedVersion),
                    "{e:?}"
                );
                assert!(!e.message.is_empty());
            }
            other => panic!("expected an error reply, got {other:?}"),
        }
        match connection.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, close_code::PROTOCOL_ERROR.into())
            }
            other => panic!("expected a protocol-error close, got {other}"),
        }
    }

    // Everyone else is still served, and the acknowledged case is still there.
    match expert
        .request(Request::Queue {
            after: None,
            limit: 0,
        })
        .await
        .unwrap()
    {
        Reply::Queue(queue) => assert_eq!(queue.entries[0].code, case.code),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        expert.request(Request::Pull { wait: false }).await,
        Ok(Reply::Attached { .. })
    ));
}

/// A client of another protocol version is refused with which side to upgrade: an older
/// client is told to upgrade sosq, a newer one that the daemon is the older side; and the
/// welcome of a matching hello names the daemon's version, so a client can check too.
#[tokio::test]
async fn a_protocol_mismatch_says_which_side_to_upgrade() {
    let daemon = Daemon::start(&[]);
    for (version, advice) in [
        (PROTOCOL_VERSION - 1, "this sosq is older: upgrade sosq"),
        (PROTOCOL_VERSION + 1, "sosqd is older: upgrade sosqd"),
        (PROTOCOL_VERSION, ""),
    ] {
        let (_endpoint, connection) = sosq::client::connect_quic(&daemon.options(None))
            .await
            .unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let hello = codec::encode(&ClientMessage::Hello {
            version,
            token: None,
        })
        .unwrap();
        send.write_all(&hello).await.unwrap();
        match codec::read_frame(&mut recv).await.unwrap() {
            Some(ServerMessage::Reply(Reply::Error(e))) if version != PROTOCOL_VERSION => {
                assert_eq!(e.kind, ErrorKind::UnsupportedVersion);
                let speaks = format!(
                    "sosqd speaks sosq protocol {PROTOCOL_VERSION} and this sosq speaks {version}"
                );
                assert!(e.message.contains(&speaks), "{}", e.message);
                assert!(e.message.contains(advice), "{}", e.message);
            }
            Some(ServerMessage::Reply(Reply::Welcome { protocol, .. }))
                if version == PROTOCOL_VERSION =>
            {
                assert_eq!(protocol, PROTOCOL_VERSION)
            }
            other => panic!("hello {version}: unexpected answer {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_never_hand_out_the_same_case() {
    const CUSTOMERS: usize = 40;
    const EXPERTS: usize = 50;
    let daemon = Daemon::start(&[]);
    let token = daemon.add_user("ana", "expert");

    let mut customers = Vec::new();
    let mut opened = HashSet::new();
    for i in 0..CUSTOMERS {
        let (customer, case) = daemon.sos_customer(&format!("customer {i}")).await;
        opened.insert(case.code);
        customers.push(customer);
    }

    let mut experts = Vec::new();
    for _ in 0..EXPERTS {
        experts.push(
            Client::connect(&daemon.options(Some(&token)))
                .await
                .unwrap(),
        );
    }
    // Every expert pulls at once.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(EXPERTS));
    let pulls: Vec<_> = experts
        .into_iter()
        .map(|mut expert| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = expert.request(Request::Pull { wait: false }).await;
                (result, expert)
            })
        })
        .collect();
    let mut pulled = Vec::new();
    let mut empty = 0;
    let mut keep = Vec::new();
    for pull in pulls {
        let (result, expert) = pull.await.unwrap();
        keep.push(expert);
        match result {
            Ok(Reply::Attached { case, .. }) => pulled.push(case.code),
            Err(ClientError::Refused(r)) if r.kind == ErrorKind::QueueEmpty => empty += 1,
            other => panic!("{other:?}"),
        }
    }
    let distinct: HashSet<_> = pulled.iter().copied().collect();
    assert_eq!(distinct.len(), pulled.len(), "a case was handed out twice");
    assert_eq!(
        distinct, opened,
        "every waiting case was pulled exactly once"
    );
    assert_eq!(empty, EXPERTS - CUSTOMERS);
}

#[tokio::test]
async fn a_wrong_fingerprint_names_both_fingerprints() {
    let daemon = Daemon::start(&[]);
    let mut options = daemon.options(None);
    let wrong = "0".repeat(64);
    options.fingerprint = wrong.clone();
    match Client::connect(&options).await {
        Err(ClientError::FingerprintMismatch { actual, expected }) => {
            assert_eq!(actual, daemon.fingerprint);
            assert_eq!(expected, wrong);
        }
        other => panic!("expected a mismatch, got {:?}", other.err()),
    }
    let mut cmd = daemon.sosq(None);
    cmd.env("SOSQ_FINGERPRINT", &wrong).arg("queue");
    let out = common::run_with_patience(cmd);
    let line = String::from_utf8_lossy(&out.stderr);
    assert!(
        line.contains(&daemon.fingerprint) && line.contains(&wrong),
        "{line}"
    );
}

#[test]
fn sosqd_fingerprint_and_user_add_work_beside_a_running_daemon() {
    let daemon = Daemon::start(&[]);
    let out = daemon.admin_command(&["fingerprint"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        daemon.fingerprint
    );
    // A user added while the daemon runs can connect at once.
    let token = daemon.add_user("late", "expert");
    assert_eq!(token.len(), "sosq_".len() + 64);
    let queue = daemon.json(Some(&token), &["queue"])["entries"].clone();
    assert!(queue.as_array().unwrap().is_empty());
    let users = std::fs::read_to_string(daemon.dir.path().join("users.json")).unwrap();
    assert!(
        !users.contains(&token),
        "only a hash of the token is stored"
    );
    let again = daemon.admin_command(&["user", "add", "late", "--role", "admin"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
