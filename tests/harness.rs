//! The cluster tests' own tools, tested: the TCP [`Proxy`] that cuts a node off from
//! PostgreSQL (forwarding, cut, heal, reset, and a real PostgreSQL query through it), and
//! [`FreshDatabase`] (a usable database of its own, dropped even while in use, leftovers
//! of dead runs swept, young ones of other runs kept, one skip line without a server).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::{self, admin, via, with_database, FreshDatabase};
use common::proxy::Proxy;
use common::{payload, PATIENCE};

/// How long "nothing arrives" is watched for: long enough for loopback to have delivered
/// many times over, short enough for the suite.
const QUIET: Duration = Duration::from_millis(300);

/// An upstream echo server that counts its connections and records what it received.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (count, record) = (connections.clone(), received.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let record = record.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                while let Ok(n) = tcp.read(&mut buf) {
                    if n == 0 {
                        let _ = tcp.shutdown(std::net::Shutdown::Write);
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if tcp.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        connections,
        received,
    }
}

fn connect(proxy: &Proxy) -> TcpStream {
    let tcp = TcpStream::connect(proxy.addr()).expect("the proxy accepts");
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp
}

fn echo(tcp: &mut TcpStream, message: &[u8]) {
    tcp.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    tcp.read_exact(&mut back).expect("the echo comes back");
    assert_eq!(back, message);
}

/// Asserts nothing arrives on `tcp` for [`QUIET`], and that it is not closed either.
fn assert_frozen(tcp: &mut TcpStream) {
    tcp.set_read_timeout(Some(QUIET)).unwrap();
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("the frozen connection was closed"),
        Ok(_) => panic!("a byte passed a cut proxy"),
        Err(e) => panic!("the frozen connection failed: {e}"),
    }
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
}

fn wait_until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_proxy_forwards_both_ways_and_passes_each_end_on() {
    let up = upstream();
    let proxy = Proxy::start(up.addr);
    let mut tcp = connect(&proxy);
    let big = payload(1_000_000, 3);
    let writer = {
        let mut tcp = tcp.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || tcp.write_all(&big).unwrap())
    };
    let mut back = vec![0u8; big.len()];
    tcp.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back, big);
    // Our end of stream reaches the upstream, whose own end comes back.
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!((proxy.accepted(), proxy.forwarded()), (1, 1));
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_cut_freezes_a_connection_without_closing_it_and_a_heal_delivers_what_was_held() {
    let up = upstream();
    let proxy = Proxy::start(up.addr);
    let mut tcp = connect(&proxy);
    echo(&mut tcp, b"before the cut");

    proxy.cut();
    tcp.write_all(b"held back").unwrap();
    assert_frozen(&mut tcp);
    assert_eq!(
        up.received.lock().unwrap().as_slice(),
        b"before the cut",
        "nothing reached the upstream while cut"
    );

    proxy.heal();
    let mut back = [0u8; 9];
    tcp.read_exact(&mut back).unwrap();
    assert_eq!(
        &back, b"held back",
        "the held bytes arrive, late, once healed"
    );
    echo(&mut tcp, b"after the heal");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the same connection"
    );
}

#[test]
fn a_cut_also_holds_what_the_upstream_sends() {
    // A server that speaks first, after a delay: its bytes are read by the proxy during
    // the cut and must wait there.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        go_rx.recv().unwrap();
        tcp.write_all(b"from upstream").unwrap();
        std::thread::sleep(PATIENCE);
    });
    let proxy = Proxy::start(addr);
    let mut tcp = connect(&proxy);
    wait_until(|| proxy.forwarded() == 1);
    proxy.cut();
    go_tx.send(()).unwrap();
    assert_frozen(&mut tcp);
    proxy.heal();
    let mut back = [0u8; 13];
    tcp.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"from upstream");
}

#[test]
fn while_cut_new_connections_are_accepted_but_not_forwarded_until_healed() {
    let up = upstream();
    let proxy = Proxy::start(up.addr);
    proxy.cut();
    let mut tcp = connect(&proxy);
    tcp.write_all(b"knock knock").unwrap();
    assert_frozen(&mut tcp);
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.forwarded(), 0);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        0,
        "no upstream connection"
    );

    proxy.heal();
    let mut back = [0u8; 11];
    tcp.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"knock knock");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_reset_aborts_every_connection_and_later_ones_are_forwarded() {
    let up = upstream();
    let proxy = Proxy::start(up.addr);
    let mut first = connect(&proxy);
    echo(&mut first, b"one");
    proxy.cut();
    let mut waiting = connect(&proxy);
    // A connection still in the listener's backlog is not one the proxy has accepted.
    wait_until(|| proxy.accepted() == 2);
    proxy.reset();
    for tcp in [&mut first, &mut waiting] {
        let mut byte = [0u8; 1];
        match tcp.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    proxy.heal();
    let mut later = connect(&proxy);
    echo(&mut later, b"two");
}

#[test]
fn dropping_the_proxy_aborts_its_connections_and_refuses_new_ones() {
    let up = upstream();
    let proxy = Proxy::start(up.addr);
    let addr = proxy.addr();
    let mut tcp = connect(&proxy);
    echo(&mut tcp, b"hello");
    drop(proxy);
    let mut byte = [0u8; 1];
    assert!(matches!(tcp.read(&mut byte), Err(e) if e.kind() == ErrorKind::ConnectionReset));
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the listener outlived the proxy");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn a_postgres_query_through_a_cut_proxy_waits_and_completes_once_healed() {
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let proxy = Proxy::start(postgres::server_addr(db.url()));
    let (client, connection) =
        tokio_postgres::connect(&via(db.url(), proxy.addr()), tokio_postgres::NoTls)
            .await
            .expect("connect through the proxy");
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    proxy.cut();
    let client = Arc::new(client);
    let asking = client.clone();
    let mut query = tokio::spawn(async move {
        asking
            .query_one("SELECT 2", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    let waited = tokio::time::timeout(QUIET, &mut query).await;
    assert!(waited.is_err(), "a query answered through a cut proxy");
    proxy.heal();
    let two = tokio::time::timeout(PATIENCE, query)
        .await
        .expect("the query completes once healed")
        .unwrap()
        .unwrap();
    assert_eq!(two, 2);
}

#[test]
fn fresh_databases_are_distinct_usable_and_dropped_even_while_in_use() {
    let Some(first) = FreshDatabase::create() else {
        return;
    };
    let second = FreshDatabase::create().expect("the variable is set");
    assert_ne!(first.name(), second.name());
    assert!(first.name().starts_with(postgres::PREFIX));
    first.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)");
    assert_eq!(
        first.query_texts("SELECT x::text FROM t"),
        vec![Some("7".into())]
    );
    assert!(
        second
            .query_texts("SELECT tablename::text FROM pg_tables WHERE tablename = 't'")
            .is_empty(),
        "each database is its own"
    );

    // A connection left open (as a killed node's would be) does not keep it alive.
    let (name, url) = (first.name().to_string(), first.url().to_string());
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = admin(&url, move |runtime, client| {
            opened_tx.send(()).unwrap();
            // Waits for the drop, then finds the connection gone.
            let _ = ended_rx.recv();
            let after = runtime.block_on(client.simple_query("SELECT 1"));
            assert!(after.is_err(), "the connection survived its database");
        });
    });
    opened_rx
        .recv_timeout(PATIENCE)
        .expect("a connection to the database");
    drop(first);
    let _ = ended_tx.send(());
    let left = second.query_texts(&format!(
        "SELECT datname::text FROM pg_database WHERE datname = '{name}'"
    ));
    assert!(left.is_empty(), "{name} is still there");
}

#[test]
fn leftovers_of_dead_runs_are_swept_and_young_databases_of_others_kept() {
    let Some(url) = postgres::database_url_or_skip(&postgres::current_test()) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // This process's id in the names: a concurrent run of this test makes its own.
    let pid = std::process::id();
    let old = format!("{}{}_{pid}_deadbeef", postgres::PREFIX, now - 2 * 60 * 60);
    let young = format!("{}{}_{pid}_feedface", postgres::PREFIX, now - 60);
    let (make_old, make_young) = (old.clone(), young.clone());
    admin(&url, move |runtime, client| {
        for name in [make_old, make_young] {
            runtime
                .block_on(client.batch_execute(&format!("CREATE DATABASE \"{name}\"")))
                .unwrap();
        }
    })
    .unwrap();

    let fresh = FreshDatabase::create().expect("the variable is set");
    let names = fresh.query_texts("SELECT datname::text FROM pg_database");
    let has = |name: &str| names.iter().any(|n| n.as_deref() == Some(name));
    assert!(!has(&old), "a two-hour-old leftover was kept");
    assert!(has(&young), "a young database of another run was dropped");
    assert!(has(fresh.name()));
    let cleanup = young.clone();
    admin(&url, move |runtime, client| {
        runtime
            .block_on(client.batch_execute(&format!("DROP DATABASE \"{cleanup}\"")))
            .unwrap();
    })
    .unwrap();
}

/// Run by [`without_the_variable_a_test_says_in_one_line_that_it_was_skipped`] in a child
/// process without the variable; in the suite itself it runs like any other test.
#[test]
fn probe_needs_postgres() {
    if let Some(db) = FreshDatabase::create() {
        assert!(!db.url().is_empty());
    }
}

#[test]
fn without_the_variable_a_test_says_in_one_line_that_it_was_skipped() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["probe_needs_postgres", "--exact", "--nocapture"])
        .env_remove(postgres::DATABASE_URL_VAR)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(
        said,
        vec!["skipped: probe_needs_postgres: SOSQ_TEST_DATABASE_URL is not set (needs PostgreSQL)"],
        "{stderr}"
    );
}

#[test]
fn urls_are_rewritten_to_another_database_and_another_address() {
    let addr: SocketAddr = "127.0.0.1:6543".parse().unwrap();
    let url = "postgres://postgres@127.0.0.1:5432/test?connect_timeout=5";
    assert_eq!(
        with_database(url, "sosq_t_1"),
        "postgres://postgres@127.0.0.1:5432/sosq_t_1?connect_timeout=5"
    );
    assert_eq!(
        via(url, addr),
        "postgres://postgres@127.0.0.1:6543/test?connect_timeout=5"
    );
    assert_eq!(
        with_database("postgresql://localhost", "d"),
        "postgresql://localhost/d"
    );
    assert_eq!(
        via("postgres://u:p@db:5432/x", addr),
        "postgres://u:p@127.0.0.1:6543/x"
    );
    let settings = "host=127.0.0.1 user=postgres dbname=test";
    assert_eq!(
        with_database(settings, "d"),
        "host=127.0.0.1 user=postgres dbname=d"
    );
    assert_eq!(
        via(settings, addr),
        "host=127.0.0.1 user=postgres dbname=test port=6543"
    );
    assert_eq!(
        postgres::created_at("sosq_t_1700000000_42_00ff00ff"),
        Some(1_700_000_000)
    );
    assert_eq!(postgres::created_at("other_1700000000"), None);
}
