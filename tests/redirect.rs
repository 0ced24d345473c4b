//! The client's side of a cluster redirect, against fake nodes (tests/common/fake_node.rs)
//! rather than a cluster: a node answers with `Redirect`, and the client must connect to
//! the named address with the same trust and credentials, redeem the ticket with the
//! redirect's request, take that reply as the answer, and go on over the new connection;
//! at most 3 redirects in a row. Library first, then the `sosq` commands (one line on
//! stderr per redirect, a session that carries on at the home node, a late redirect after
//! `Waiting`, and a home node that cannot be reached).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::fake_node::{
    self, attached_and_paired, case, code, redirect, reply, Cert, FakeNode, Script, Seen,
};
use sosq::client::RedirectNotice;
use sosq::protocol::{CaseState, ErrorKind, ErrorReply, Event, HistoryPage, Reply, Request, Role};
use sosq::{Client, ClientError, ConnectOptions};

fn options(node: &FakeNode, cert: &Cert, token: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        server: node.address(),
        fingerprint: cert.fingerprint(),
        token: token.map(str::to_string),
        ca: None,
    }
}

fn connect_request() -> Request {
    Request::Connect {
        code: "123456789".into(),
        working_queue: false,
    }
}

/// A home node: redeems any ticket, answering as `answer` says.
async fn home(cert: &Cert, answer: fn() -> Vec<sosq::protocol::ServerMessage>) -> FakeNode {
    FakeNode::start(
        cert,
        Arc::new(move |request: &Request| match request {
            Request::Redeem { .. } => answer(),
            _ => vec![reply(Reply::Error(ErrorReply {
                kind: ErrorKind::Forbidden,
                message: "only redeems here".into(),
            }))],
        }),
    )
    .await
}

/// A node that sends every request to `to` (named `node`) with `ticket`.
async fn redirecting(
    cert: &Cert,
    node: &'static str,
    to: String,
    ticket: &'static str,
) -> FakeNode {
    let script: Script =
        Arc::new(move |request: &Request| vec![redirect(node, &to, ticket, request.clone())]);
    FakeNode::start(cert, script).await
}

fn collect_hops() -> (RedirectNotice, Arc<Mutex<Vec<String>>>) {
    let hops = Arc::new(Mutex::new(Vec::new()));
    let kept = hops.clone();
    let notice = RedirectNotice::new(move |hop| kept.lock().unwrap().push(hop.to_string()));
    (notice, hops)
}

#[tokio::test]
async fn a_request_is_redeemed_at_the_home_node_with_the_ticket_and_the_same_token() {
    let cert = Cert::self_signed();
    let home = home(&cert, attached_and_paired).await;
    let first = redirecting(&cert, "b", home.address(), "ticket-1").await;
    let mut client = Client::connect(&options(&first, &cert, Some("tok")))
        .await
        .unwrap();
    let (notice, hops) = collect_hops();
    client.set_redirect_notice(notice);
    let mut old_events = client.take_events().unwrap();

    let reply = client.request(connect_request()).await.unwrap();
    match reply {
        Reply::Attached { case, .. } => assert_eq!(case.code, code()),
        other => panic!("not the home node's answer: {other:?}"),
    }
    assert_eq!(client.redirects(), 1);
    assert_eq!(client.connection().remote_address(), home.addr);
    assert_eq!(
        *hops.lock().unwrap(),
        vec![format!(
            "case s123-456-789 is served by node b ({}); reconnecting there",
            home.address()
        )]
    );
    // The same credentials, the ticket, and the redirect's own request.
    assert_eq!(
        home.seen()[0],
        Seen::Hello {
            conn: 0,
            token: Some("tok".into())
        }
    );
    assert_eq!(
        home.requests(),
        vec![Request::Redeem {
            ticket: "ticket-1".into(),
            request: Box::new(connect_request()),
        }]
    );
    // The session runs on the new connection: its events, and the old one's end.
    let mut events = client.take_events().expect("the new connection's events");
    assert!(matches!(events.recv().await, Some(Event::Paired { .. })));
    assert!(old_events.recv().await.is_none());
    let left = first
        .wait_for(|seen| matches!(seen, Seen::Closed { .. }))
        .await;
    assert!(
        matches!(&left, Seen::Closed { reason, .. } if reason.contains("redirected to the home node")),
        "{left:?}"
    );
    client.close().await;
}

#[tokio::test]
async fn the_request_sent_with_the_hello_is_redirected_too_and_a_customer_stays_a_customer() {
    let cert = Cert::self_signed();
    let home = home(&cert, || {
        vec![reply(Reply::Attached {
            case: case(CaseState::Pending),
            resume_secret: Some("secret".into()),
            position: None,
        })]
    })
    .await;
    let first = redirecting(&cert, "b", home.address(), "ticket-2").await;
    let join = Request::Join {
        code: "123-456-789".into(),
        customer: "Alice".into(),
        resume_secret: None,
    };
    let (client, reply) = Client::connect_with(&options(&first, &cert, None), Some(join.clone()))
        .await
        .unwrap();
    assert!(
        matches!(reply, Some(Reply::Attached { resume_secret: Some(ref s), .. }) if s == "secret")
    );
    assert_eq!(client.role(), Role::Customer);
    assert_eq!(client.redirects(), 1);
    assert_eq!(
        home.seen()[0],
        Seen::Hello {
            conn: 0,
            token: None
        }
    );
    assert_eq!(
        home.requests(),
        vec![Request::Redeem {
            ticket: "ticket-2".into(),
            request: Box::new(join),
        }]
    );
    client.close().await;
}

#[tokio::test]
async fn a_fourth_redirect_in_a_row_is_an_error_naming_the_nodes() {
    let cert = Cert::self_signed();
    // A node that sends everything back to itself, with a new ticket each time.
    let tickets = Arc::new(AtomicUsize::new(0));
    let address = Arc::new(Mutex::new(String::new()));
    let (count, here) = (tickets.clone(), address.clone());
    let script: Script = Arc::new(move |request: &Request| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let inner = match request {
            Request::Redeem { request, .. } => (**request).clone(),
            other => other.clone(),
        };
        let to = here.lock().unwrap().clone();
        vec![redirect("loop", &to, &format!("t{n}"), inner)]
    });
    let node = FakeNode::start(&cert, script).await;
    *address.lock().unwrap() = node.address();
    let mut client = Client::connect(&options(&node, &cert, Some("tok")))
        .await
        .unwrap();
    let (notice, hops) = collect_hops();
    client.set_redirect_notice(notice);

    let status = Request::Status {
        code: "123456789".into(),
        resume_secret: None,
    };
    let error = client.request(status).await.unwrap_err();
    assert_eq!(error.code(), "too_many_redirects");
    let message = error.to_string();
    assert!(
        message.contains("more than 3 times in a row")
            && message.matches("node loop at").count() == 4,
        "{message}"
    );
    assert_eq!(
        hops.lock().unwrap().len(),
        3,
        "one line per redirect followed"
    );
    let redeemed: Vec<String> = node
        .requests()
        .into_iter()
        .filter_map(|request| match request {
            Request::Redeem { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect();
    assert_eq!(redeemed, ["t0", "t1", "t2"]);
}

#[tokio::test]
async fn a_refused_redeem_is_the_answer_and_the_client_stays_where_it_was() {
    let cert = Cert::self_signed();
    let home = home(&cert, || {
        vec![reply(Reply::Error(ErrorReply {
            kind: ErrorKind::UnknownCode,
            message: "the ticket expired".into(),
        }))]
    })
    .await;
    let to = home.address();
    let first = FakeNode::start(
        &cert,
        Arc::new(move |request: &Request| match request {
            Request::Connect { .. } => vec![redirect("b", &to, "late", request.clone())],
            _ => vec![reply(Reply::Case(case(CaseState::Pending)))],
        }),
    )
    .await;
    let mut client = Client::connect(&options(&first, &cert, Some("tok")))
        .await
        .unwrap();
    match client.request(connect_request()).await {
        Err(ClientError::Refused(refusal)) => assert_eq!(refusal.message, "the ticket expired"),
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(client.redirects(), 0);
    assert_eq!(client.connection().remote_address(), first.addr);
    let status = Request::Status {
        code: "123456789".into(),
        resume_secret: None,
    };
    assert!(matches!(client.request(status).await, Ok(Reply::Case(_))));
    client.close().await;
}

#[tokio::test]
async fn under_a_ca_each_address_is_checked_against_its_own_host_name() {
    let (ca, ca_pem) = fake_node::ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_pem).unwrap();
    // The home node's certificate names "localhost" only; the first node's, its IP.
    let home = home(&fake_node::issue(&ca, &["localhost"]), attached_and_paired).await;
    let by_ip = fake_node::issue(&ca, &["127.0.0.1"]);
    let by_name = redirecting(&by_ip, "b", format!("localhost:{}", home.addr.port()), "t").await;
    let wrong_name = redirecting(&by_ip, "b", home.address(), "t").await;
    let trust = |node: &FakeNode| ConnectOptions {
        server: node.address(),
        fingerprint: String::new(),
        token: Some("tok".into()),
        ca: Some(ca_path.clone()),
    };

    let mut client = Client::connect(&trust(&by_name)).await.unwrap();
    assert!(matches!(
        client.request(connect_request()).await,
        Ok(Reply::Attached { .. })
    ));
    client.close().await;
    // Reached as 127.0.0.1, the home node's certificate does not fit: refused.
    let mut client = Client::connect(&trust(&wrong_name)).await.unwrap();
    match client.request(connect_request()).await {
        Err(ClientError::Connect { reason, .. }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("a certificate for another name was trusted: {other:?}"),
    }
    client.close().await;
}

// --- the `sosq` commands --------------------------------------------------------------

/// A `sosq` command pointed at a fake node.
fn sosq_at(node: &FakeNode, cert: &Cert, token: Option<&str>) -> Command {
    let mut cmd = Command::new(common::sosq_bin());
    cmd.env("SOSQ_SERVER", node.address())
        .env("SOSQ_FINGERPRINT", cert.fingerprint())
        .env_remove("SOSQ_TOKEN")
        .env_remove("SOSQ_SECRET")
        .env_remove("SOSQ_CA");
    if let Some(token) = token {
        cmd.env("SOSQ_TOKEN", token);
    }
    cmd
}

/// A long-running `sosq --json` command as a [`common::Session`].
fn session_at(node: &FakeNode, cert: &Cert, token: Option<&str>, args: &[&str]) -> common::Session {
    let mut cmd = sosq_at(node, cert, token);
    cmd.arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    common::Session::from_command(cmd)
}

#[test]
fn a_one_shot_command_says_one_line_and_prints_the_home_nodes_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cert = Cert::self_signed();
    // The status, then its history: the second request goes to the home node directly.
    let home = runtime.block_on(FakeNode::start(
        &cert,
        Arc::new(|request: &Request| match request {
            Request::Redeem { .. } => vec![reply(Reply::Case(case(CaseState::Pending)))],
            _ => vec![reply(Reply::History(HistoryPage {
                code: code(),
                state: CaseState::Pending,
                entries: Vec::new(),
                total: 0,
                next: None,
            }))],
        }),
    ));
    let first = runtime.block_on(redirecting(&cert, "b", home.address(), "t-status"));
    let mut cmd = sosq_at(&first, &cert, Some("tok"));
    cmd.args(["status", "123-456-789"]).stdin(Stdio::null());
    let out = common::run_with_patience(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "case s123-456-789 is served by node b ({}); reconnecting there",
            home.address()
        )
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("s123-456-789"));
    assert_eq!(first.requests().len(), 1);
    assert!(matches!(home.requests()[1], Request::History { .. }));
}

#[test]
fn connect_goes_on_at_the_home_node_and_its_chat_runs_there() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cert = Cert::self_signed();
    let home = runtime.block_on(home(&cert, attached_and_paired));
    let first = runtime.block_on(redirecting(&cert, "b", home.address(), "t-connect"));
    let mut expert = session_at(&first, &cert, Some("tok"), &["connect", "123-456-789"]);
    let line = expert.expect_event("redirected");
    assert_eq!(line["code"], "s123-456-789");
    assert_eq!(line["node"], "b");
    assert_eq!(line["address"], home.address());
    expert.expect_event("attached");
    expert.expect_event("paired");
    expert.send(b"hi\n");
    expert.finish();
    let chat = runtime.block_on(home.wait_for(|seen| matches!(seen, Seen::Stream { .. })));
    assert_eq!(
        chat,
        Seen::Stream {
            conn: 0,
            bytes: b"\x01hi\n".to_vec()
        }
    );
    assert_eq!(
        home.requests(),
        vec![Request::Redeem {
            ticket: "t-connect".into(),
            // The code as typed: the client passes the redirect's request on untouched.
            request: Box::new(Request::Connect {
                code: "123-456-789".into(),
                working_queue: false,
            }),
        }]
    );
    let redirects = expert
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"redirected\""))
        .count();
    assert_eq!(redirects, 1);
}

#[test]
fn a_redirect_that_comes_after_waiting_is_followed_and_the_pull_pairs_there() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cert = Cert::self_signed();
    let home = runtime.block_on(home(&cert, attached_and_paired));
    let to = home.address();
    let first = runtime.block_on(FakeNode::start(
        &cert,
        Arc::new(move |request: &Request| {
            vec![
                reply(Reply::Waiting),
                redirect("b", &to, "t-late", request.clone()),
            ]
        }),
    ));
    let mut expert = session_at(&first, &cert, Some("tok"), &["pull", "--wait"]);
    expert.expect_event("waiting");
    let line = expert.expect_event("redirected");
    assert!(line["code"].is_null(), "{line}");
    assert_eq!(line["address"], home.address());
    assert_eq!(expert.expect_event("attached")["code"], "s123-456-789");
    assert_eq!(expert.expect_event("paired")["code"], "s123-456-789");
    expert.send(b"on b\n");
    expert.finish();
    let chat = runtime.block_on(home.wait_for(|seen| matches!(seen, Seen::Stream { .. })));
    assert!(matches!(chat, Seen::Stream { ref bytes, .. } if bytes == b"\x01on b\n"));
    assert_eq!(
        home.seen()[..2],
        [
            Seen::Hello {
                conn: 0,
                token: Some("tok".into())
            },
            Seen::Request {
                conn: 0,
                request: Request::Redeem {
                    ticket: "t-late".into(),
                    request: Box::new(Request::Pull { wait: true }),
                }
            }
        ]
    );
    let left = runtime.block_on(first.wait_for(|seen| matches!(seen, Seen::Closed { .. })));
    assert!(matches!(left, Seen::Closed { ref reason, .. } if reason.contains("redirected")));
}

#[test]
fn a_home_node_that_cannot_be_reached_sends_the_session_back_to_the_servers_given() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cert = Cert::self_signed();
    // Bound and never read: QUIC gets no answer there.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nowhere = silent.local_addr().unwrap().to_string();
    let pulls = Arc::new(AtomicUsize::new(0));
    let count = pulls.clone();
    let first = runtime.block_on(FakeNode::start(
        &cert,
        Arc::new(
            move |request: &Request| match count.fetch_add(1, Ordering::SeqCst) {
                0 => vec![
                    reply(Reply::Waiting),
                    redirect("gone", &nowhere, "t", request.clone()),
                ],
                _ => vec![reply(Reply::Waiting)],
            },
        ),
    ));
    let mut expert = session_at(&first, &cert, Some("tok"), &["pull", "--wait"]);
    expert.expect_event("redirected");
    let lost = expert.expect_event("reconnecting");
    let reason = lost["reason"].as_str().unwrap();
    assert!(
        reason.contains("could not reach the case's home node") && reason.contains("no answer"),
        "{lost}"
    );
    expert.expect_event("reconnected");
    // Back at the first node, waiting again: a pull, not the redirect's ticket.
    let requests = first.requests();
    assert_eq!(
        requests,
        [Request::Pull { wait: true }, Request::Pull { wait: true }]
    );
    drop(silent);
}

#[test]
fn a_pull_let_go_takes_the_next_case_at_its_home_node() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cert = Cert::self_signed();
    let home = runtime.block_on(home(&cert, attached_and_paired));
    let to = home.address();
    let pulls = Arc::new(AtomicUsize::new(0));
    let count = pulls.clone();
    // The first case pairs here and its customer vanishes; the next lives on node b.
    let first = runtime.block_on(FakeNode::start(
        &cert,
        Arc::new(
            move |request: &Request| match count.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    let mut answers = attached_and_paired();
                    answers.push(sosq::protocol::ServerMessage::Event(Event::Released {
                        code: code(),
                        reason: "the customer vanished".into(),
                    }));
                    answers
                }
                _ => vec![redirect("b", &to, "t-next", request.clone())],
            },
        ),
    ));
    let mut expert = session_at(&first, &cert, Some("tok"), &["pull"]);
    expert.expect_event("paired");
    expert.expect_event("released");
    assert_eq!(expert.expect_event("redirected")["address"], home.address());
    expert.expect_event("paired");
    expert.send(b"next\n");
    expert.finish();
    let chat = runtime.block_on(home.wait_for(|seen| matches!(seen, Seen::Stream { .. })));
    assert!(matches!(chat, Seen::Stream { ref bytes, .. } if bytes == b"\x01next\n"));
    assert_eq!(
        home.requests(),
        [Request::Redeem {
            ticket: "t-next".into(),
            request: Box::new(Request::Pull { wait: false }),
        }]
    );
}
