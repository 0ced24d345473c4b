//! TCP forwarding through a real sosqd with real `sosq` processes: the customer shares a
//! local TCP service the test runs (`request --share`), the expert forwards a local port
//! (`pull --forward`), and the test's TCP clients talk through the broker.
//!
//! Concurrent checksummed transfers both ways; a stalled reader does not grow the daemon's
//! memory past the documented bound; closing the case cuts the connections; an unpaired
//! party cannot open streams; a customer who shares nothing refuses forwards, chat works.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::{payload, Daemon, Session, PATIENCE};
use sosq::protocol::{close_code, Reply, Request, StreamKind};
use sosq::Client;

/// FNV-1a, the checksum both ends compute.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// What the shared service does with each connection.
#[derive(Clone, Copy)]
enum Service {
    /// Reads a header (length, seed) and `length` bytes, reports their checksum, and
    /// meanwhile sends `payload(length, seed + 1000)` back, then closes.
    Exchange,
    /// Writes a counting pattern (byte i is i % 251) forever, never reads.
    Flood,
    /// Echoes until the connection ends, then reports how it ended.
    Echo,
}

/// What the shared service reports per connection.
#[derive(Debug)]
enum Report {
    Exchanged { seed: u64, checksum: u64 },
    Ended,
}

/// The customer's local service: its address, its reports, and bytes flooded so far.
struct Shared {
    addr: SocketAddr,
    reports: mpsc::Receiver<Report>,
    flooded: Arc<AtomicU64>,
}

fn share(service: Service) -> Shared {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, reports) = mpsc::channel();
    let flooded = Arc::new(AtomicU64::new(0));
    let counter = flooded.clone();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let tx = tx.clone();
            let counter = counter.clone();
            thread::spawn(move || serve(service, tcp, tx, counter));
        }
    });
    Shared {
        addr,
        reports,
        flooded,
    }
}

fn serve(service: Service, mut tcp: TcpStream, tx: mpsc::Sender<Report>, flooded: Arc<AtomicU64>) {
    match service {
        Service::Exchange => {
            let mut header = [0u8; 16];
            if tcp.read_exact(&mut header).is_err() {
                return;
            }
            let len = u64::from_be_bytes(header[..8].try_into().unwrap()) as usize;
            let seed = u64::from_be_bytes(header[8..].try_into().unwrap());
            let mut writer = tcp.try_clone().unwrap();
            let sender = thread::spawn(move || {
                writer.write_all(&payload(len, seed + 1000)).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            let mut got = vec![0u8; len];
            tcp.read_exact(&mut got).unwrap();
            sender.join().unwrap();
            let _ = tx.send(Report::Exchanged {
                seed,
                checksum: checksum(&got),
            });
        }
        Service::Flood => {
            let pattern: Vec<u8> = (0..251 * 256).map(|i| (i % 251) as u8).collect();
            while tcp.write_all(&pattern).is_ok() {
                flooded.fetch_add(pattern.len() as u64, Ordering::Relaxed);
            }
        }
        Service::Echo => {
            let mut buf = [0u8; 4096];
            loop {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tcp.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Report::Ended);
        }
    }
}

/// A customer sharing `service` and an expert forwarding a local port, paired; returns
/// both sessions, the case code and the expert's local address.
struct Forwarded {
    customer: Session,
    expert: Session,
    code: String,
    local: SocketAddr,
    token: String,
}

fn forwarded(daemon: &Daemon, share_addr: Option<SocketAddr>) -> Forwarded {
    let token = daemon.add_user("ana", "expert");
    let share_arg = share_addr.map(|a| a.to_string());
    let mut args = vec!["request", "--name", "Alice"];
    if let Some(addr) = &share_arg {
        args.extend(["--share", addr.as_str()]);
    }
    let mut customer = daemon.session(None, &args);
    let code = customer.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut expert = daemon.session(Some(&token), &["pull", "--forward", "127.0.0.1:0"]);
    let local: SocketAddr = expert.expect_forwarding();
    expert.expect_event("paired");
    let paired = customer.expect_event("paired");
    assert_eq!(paired["peer_name"], "ana");
    Forwarded {
        customer,
        expert,
        code,
        local,
        token,
    }
}

fn connect(local: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(local).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp
}

/// Waits until `tcp` is cut: EOF or a reset, but never a timeout and never more data.
fn expect_cut(tcp: &mut TcpStream) {
    let mut rest = [0u8; 16];
    match tcp.read(&mut rest) {
        Ok(0) => {}
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the connection stayed open: {e}"
        ),
        Ok(n) => panic!("{n} unexpected bytes"),
    }
}

/// Sends `message` through an echoed connection and reads it back: it is through.
fn round_trip(tcp: &mut TcpStream, message: &[u8]) {
    tcp.write_all(message).unwrap();
    let mut echo = vec![0u8; message.len()];
    tcp.read_exact(&mut echo)
        .unwrap_or_else(|e| panic!("no echo of {:?}: {e}", String::from_utf8_lossy(message)));
    assert_eq!(echo, message);
}

/// A line each way over the chat, so the session's chat stream is surely open.
fn chat_both_ways(f: &mut Forwarded) {
    f.expert.send(b"hello from ana\n");
    assert_eq!(f.customer.receive(15), b"hello from ana\n");
    f.customer.send(b"hi\n");
    assert_eq!(f.expert.receive(3), b"hi\n");
}

#[test]
fn concurrent_forwarded_connections_carry_megabytes_both_ways_intact() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Exchange);
    let mut f = forwarded(&daemon, Some(shared.addr));

    const CONNECTIONS: u64 = 5;
    const LEN: usize = 3 * 1024 * 1024;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|seed| {
            let local = f.local;
            thread::spawn(move || {
                let mut tcp = connect(local);
                let mut writer = tcp.try_clone().unwrap();
                let sender = thread::spawn(move || {
                    writer.write_all(&(LEN as u64).to_be_bytes()).unwrap();
                    writer.write_all(&seed.to_be_bytes()).unwrap();
                    writer.write_all(&payload(LEN, seed)).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::with_capacity(LEN);
                tcp.read_to_end(&mut got).unwrap();
                sender.join().unwrap();
                assert_eq!(got.len(), LEN, "connection {seed}: every byte, then EOF");
                assert_eq!(
                    checksum(&got),
                    checksum(&payload(LEN, seed + 1000)),
                    "connection {seed}: bytes from the customer's service intact"
                );
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a forwarded connection failed");
    }
    let mut seen = Vec::new();
    for _ in 0..CONNECTIONS {
        match shared.reports.recv_timeout(PATIENCE).unwrap() {
            Report::Exchanged {
                seed,
                checksum: sum,
            } => {
                assert_eq!(sum, checksum(&payload(LEN, seed)), "connection {seed}");
                seen.push(seed);
            }
            other => panic!("{other:?}"),
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..CONNECTIONS).collect::<Vec<_>>());
    f.customer.expect_event("forward_opened");
    f.customer.expect_event("forward_closed");

    // The session's traffic goes into the history when the case is closed.
    daemon.json(Some(&f.token), &["close", &f.code]);
    f.customer.expect_event("session_ended");
    let case = daemon.json(Some(&f.token), &["status", &f.code]);
    let history = history(&daemon, &f);
    let (streams, to_expert, to_customer) = traffic_line(&history);
    assert!(streams > CONNECTIONS, "chat + forwards: {history:?}");
    // The chat carried nothing; each connection carried its header and payload one way,
    // the service's payload the other, and not one byte more.
    assert_eq!(to_expert, CONNECTIONS * LEN as u64, "{history:?}");
    assert_eq!(to_customer, CONNECTIONS * (16 + LEN as u64), "{history:?}");
    assert_eq!(case["state"], "closed");
}

/// The numbers of the history's traffic line: (streams, customer to expert, expert to
/// customer), from "session relayed N streams (...): A bytes customer to expert, B bytes
/// expert to customer".
fn traffic_line(history: &[String]) -> (u64, u64, u64) {
    let line = history
        .iter()
        .find(|e| e.starts_with("session relayed"))
        .unwrap_or_else(|| panic!("no traffic in the history: {history:?}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{line}");
    (numbers[0], numbers[1], numbers[2])
}

/// The events of a case's history, once its session has ended.
fn history(daemon: &Daemon, f: &Forwarded) -> Vec<String> {
    let case = daemon.json(Some(&f.token), &["status", &f.code]);
    case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_stalled_reader_does_not_grow_the_daemon_memory_past_the_bound() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Flood);
    let f = forwarded(&daemon, Some(shared.addr));
    let bound = 2 * sosqd::relay::memory_bound_per_connection(&sosqd::config::Config::default());
    let before = daemon.rss_bytes();

    // Some flood read in full first: the relay is known to work.
    let mut tcp = connect(f.local);
    let mut expected = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let check = |bytes: &[u8], expected: &mut u64| {
        for b in bytes {
            assert_eq!(*b as u64, *expected % 251, "byte {expected} of the flood");
            *expected += 1;
        }
    };
    while expected < 8 * 1024 * 1024 {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0);
        check(&buf[..n], &mut expected);
    }

    // Stop reading: the flood must stall once every window and socket buffer is full.
    let deadline = Instant::now() + PATIENCE;
    let mut last = shared.flooded.load(Ordering::Relaxed);
    loop {
        thread::sleep(Duration::from_millis(700));
        let now = shared.flooded.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
        assert!(Instant::now() < deadline, "the flood never stalled");
    }
    let during = daemon.rss_bytes();
    let growth = during.saturating_sub(before);
    let in_flight = last - expected;
    eprintln!("stalled with {in_flight} bytes in flight; daemon RSS grew by {growth} bytes (bound {bound})");
    assert!(
        growth < bound,
        "daemon RSS grew by {growth} bytes while stalled (bound {bound}; {in_flight} bytes in flight)"
    );

    // Nothing was dropped: reading again gets the stream on, byte for byte.
    let target = last.min(expected + 32 * 1024 * 1024);
    while expected < target {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0);
        check(&buf[..n], &mut expected);
    }
}

#[test]
fn closing_the_case_cuts_the_forwarded_connections() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Echo);
    let mut f = forwarded(&daemon, Some(shared.addr));
    let mut tcps: Vec<TcpStream> = (0..3).map(|_| connect(f.local)).collect();
    for tcp in &mut tcps {
        tcp.write_all(b"hello").unwrap();
        let mut echo = [0u8; 5];
        tcp.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"hello");
    }

    daemon.json(Some(&f.token), &["close", &f.code]);
    f.customer.expect_event("session_ended");
    f.expert.expect_event("session_ended");
    for tcp in &mut tcps {
        expect_cut(tcp);
    }
    for _ in 0..3 {
        let report = shared.reports.recv_timeout(PATIENCE);
        assert!(
            matches!(report, Ok(Report::Ended)),
            "the customer's side of a connection stayed open: {report:?}"
        );
    }
    let (status, stderr) = f.customer.wait();
    assert!(status.success(), "{stderr}");
}

#[tokio::test]
async fn an_expert_cannot_open_streams_to_a_case_it_is_not_paired_with() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Echo);
    let f = forwarded(&daemon, Some(shared.addr));

    // A second expert, attached to a case of its own that has no customer yet.
    let (other_token, mut other) = daemon.staff_client("bob", "expert").await;
    let Reply::Created(case) = other
        .request(Request::Create {
            customer: "Carol".into(),
            description: String::new(),
        })
        .await
        .unwrap()
    else {
        panic!("no case")
    };
    other
        .request(Request::Connect {
            code: case.code.to_string(),
            working_queue: false,
        })
        .await
        .unwrap();
    // And a third expert attached to nothing at all.
    let loose = Client::connect(&daemon.options(Some(&other_token)))
        .await
        .unwrap();

    for client in [&other, &loose] {
        let (mut send, mut recv) = client.open_stream(StreamKind::Forward).await.unwrap();
        let _ = send.write_all(b"let me in").await;
        let read = tokio::time::timeout(PATIENCE, recv.read_to_end(1024))
            .await
            .expect("the broker answers");
        match read {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                assert_eq!(code.into_inner(), u64::from(close_code::NOT_PAIRED))
            }
            other => panic!("expected a NOT_PAIRED reset, got {other:?}"),
        }
    }
    // The paired customer's service never heard of any of it.
    assert!(shared
        .reports
        .recv_timeout(Duration::from_millis(300))
        .is_err());
    drop(f);
}

#[test]
fn a_customer_who_shares_nothing_refuses_forwards_and_chat_still_works() {
    let daemon = Daemon::start(&[]);
    let mut f = forwarded(&daemon, None);

    let mut tcp = connect(f.local);
    let mut rest = [0u8; 16];
    match tcp.read(&mut rest) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{n} bytes from nowhere"),
    }
    f.customer.expect_event("forward_refused");
    let failed = f.expert.expect_event("forward_failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("shares no service"),
        "{failed}"
    );

    f.expert.send(b"can you see my messages?\n");
    assert_eq!(f.customer.receive(25), b"can you see my messages?\n");
    f.customer.send(b"yes\n");
    assert_eq!(f.expert.receive(4), b"yes\n");
}

/// A library customer and a library expert, paired, on a daemon started with `config`.
async fn library_pair(config: &str) -> (Daemon, Client, Client) {
    let config_dir = tempfile::tempdir().unwrap();
    let path = config_dir.path().join("sosqd.toml");
    std::fs::write(&path, config).unwrap();
    let daemon = Daemon::start(&["--config", path.to_str().unwrap()]);
    let token = daemon.add_user("ana", "expert");
    let (mut customer, _) = daemon.sos_customer("Alice").await;
    let mut events = customer.take_events().unwrap();
    let mut expert = Client::connect(&daemon.options(Some(&token)))
        .await
        .unwrap();
    expert.request(Request::Pull { wait: false }).await.unwrap();
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv()).await.unwrap();
        if matches!(event, Some(sosq::protocol::Event::Paired { .. })) {
            break;
        }
    }
    (daemon, customer, expert)
}

/// Waits for `recv` to be reset by the broker with `code`.
async fn expect_reset(recv: &mut quinn::RecvStream, code: u32) {
    let read = tokio::time::timeout(PATIENCE, recv.read_to_end(64))
        .await
        .expect("the broker answers");
    match read {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(got))) => {
            assert_eq!(got.into_inner(), u64::from(code))
        }
        other => panic!("expected a reset with code {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_relay_limits_forwards_per_session_and_counts_chats_apart() {
    let (_daemon, customer, expert) = library_pair("max_streams_per_session = 2\n").await;

    // Two forwarded connections fit, and the chats have places of their own beside them;
    // the customer gets each stream with its kind.
    let mut open = Vec::new();
    for kind in [
        StreamKind::Forward,
        StreamKind::Forward,
        StreamKind::Chat,
        StreamKind::Chat,
    ] {
        let (send, recv) = expert.open_stream(kind).await.unwrap();
        let (got, c_send, c_recv) = tokio::time::timeout(PATIENCE, customer.accept_stream())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, kind, "the relay passes the stream's kind on");
        open.push((send, recv, c_send, c_recv));
    }
    // One more of either kind finds no place, waits the grace, and is refused.
    for kind in [StreamKind::Forward, StreamKind::Chat] {
        let (_send, mut recv) = expert.open_stream(kind).await.unwrap();
        expect_reset(&mut recv, close_code::TOO_MANY_STREAMS).await;
    }
    // Streams that are not the protocol: an unknown kind, and one that ends before its kind.
    let (mut send, mut recv) = expert.connection().open_bi().await.unwrap();
    send.write_all(&[77, 1, 2, 3]).await.unwrap();
    expect_reset(&mut recv, close_code::PROTOCOL_ERROR).await;
    let (mut send, mut recv) = expert.connection().open_bi().await.unwrap();
    send.finish().unwrap();
    expect_reset(&mut recv, close_code::PROTOCOL_ERROR).await;

    // The streams that got in carry bytes, and only those: no kind byte of the opener's.
    for (send, _recv, _c_send, c_recv) in &mut open {
        send.write_all(b"still here").await.unwrap();
        send.finish().unwrap();
        let got = tokio::time::timeout(PATIENCE, c_recv.read_to_end(64))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"still here");
    }
}

#[tokio::test]
async fn an_explicit_relay_idle_timeout_resets_silent_streams_and_frees_their_places() {
    let (_daemon, customer, expert) =
        library_pair("max_streams_per_session = 2\nrelay_idle_timeout = \"1s\"\n").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (send, recv) = expert.open_stream(StreamKind::Forward).await.unwrap();
        let (_, c_send, c_recv) = tokio::time::timeout(PATIENCE, customer.accept_stream())
            .await
            .unwrap()
            .unwrap();
        open.push((send, recv, c_send, c_recv));
    }

    // Silent streams are reset once the idle timeout passes, on both sides.
    for (_send, mut recv, _c_send, mut c_recv) in open {
        expect_reset(&mut recv, close_code::STREAM_IDLE).await;
        expect_reset(&mut c_recv, close_code::STREAM_IDLE).await;
    }

    // Their places are free again: a new stream carries bytes.
    let (mut send, _recv) = expert.open_stream(StreamKind::Forward).await.unwrap();
    send.write_all(b"again").await.unwrap();
    send.finish().unwrap();
    let (_, _c_send, mut c_recv) = tokio::time::timeout(PATIENCE, customer.accept_stream())
        .await
        .unwrap()
        .unwrap();
    let got = tokio::time::timeout(PATIENCE, c_recv.read_to_end(16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"again");
}

#[test]
fn deleting_the_case_cuts_the_forwarded_connections() {
    let daemon = Daemon::start(&[]);
    let admin = daemon.add_user("root", "admin");
    let shared = share(Service::Echo);
    let f = forwarded(&daemon, Some(shared.addr));
    let mut tcp = connect(f.local);
    tcp.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    tcp.read_exact(&mut echo).unwrap();

    daemon.json(Some(&admin), &["delete", &f.code]);
    expect_cut(&mut tcp);
    assert!(matches!(
        shared.reports.recv_timeout(PATIENCE),
        Ok(Report::Ended)
    ));
    let (status, _) = f.customer.wait();
    assert!(
        !status.success(),
        "a deleted case ends the customer's session with an error"
    );
}

#[test]
fn the_customer_ends_a_forwarding_session_with_ctrl_c() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Echo);
    let mut f = forwarded(&daemon, Some(shared.addr));
    let mut tcp = connect(f.local);
    tcp.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    tcp.read_exact(&mut echo).unwrap();
    let opened = f.customer.expect_event("forward_opened");
    assert_eq!(opened["open"], 1);

    f.customer.interrupt();
    // The customer left on purpose: the live connection is cut at once, and the pulling
    // expert is let go to take the next case.
    let left = f.customer.expect_event("left");
    assert_eq!(left["code"], f.code.as_str());
    f.expert.expect_event("released");
    expect_cut(&mut tcp);
    let (status, stderr) = f.customer.wait();
    assert!(status.success(), "Ctrl-C is how a session ends: {stderr}");
    assert!(stderr.contains("stays open"), "{stderr}");
}

#[test]
fn sixteen_forwarded_connections_fit_beside_the_chat_and_the_seventeenth_is_told_why_not() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Echo);
    let mut f = forwarded(&daemon, Some(shared.addr));
    chat_both_ways(&mut f);

    let max = sosqd::config::Config::default().max_streams_per_session;
    assert_eq!(max, 16);
    let mut held: Vec<TcpStream> = (0..max)
        .map(|i| {
            let mut tcp = connect(f.local);
            round_trip(&mut tcp, format!("connection {i}").as_bytes());
            tcp
        })
        .collect();

    // One more: the broker holds it for its grace, then refuses it.
    let mut extra = connect(f.local);
    expect_cut(&mut extra);
    let failed = f.expert.expect_event("forward_failed");
    assert_eq!(failed["id"], max + 1, "{failed}");
    assert_eq!(failed["refused_by"], "sosqd", "{failed}");
    assert_eq!(
        failed["reason"],
        "the session already has 16 forwarded connections open (max_streams_per_session)"
    );

    // The sixteen, and the chat, carry on.
    for (i, tcp) in held.iter_mut().enumerate() {
        round_trip(tcp, format!("still {i}").as_bytes());
    }
    chat_both_ways(&mut f);
}

#[test]
fn a_place_freed_by_a_reset_or_an_early_close_is_taken_by_the_next_connection() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Echo);
    let mut f = forwarded(&daemon, Some(shared.addr));
    chat_both_ways(&mut f);

    // 15 held, the 16th place goes round: closed one way or the other, and at once a new
    // connection in its place. The new one may reach the broker before the old one's end.
    let mut held: Vec<TcpStream> = (0..15)
        .map(|i| {
            let mut tcp = connect(f.local);
            round_trip(&mut tcp, format!("held {i}").as_bytes());
            tcp
        })
        .collect();
    let mut current = connect(f.local);
    round_trip(&mut current, b"round 0");
    for round in 1..=40 {
        if round % 2 == 0 {
            // A TCP reset: closing with a zero linger sends RST.
            socket2::SockRef::from(&current)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        } else {
            // An early close: the echo of most of this is still on its way back.
            current.write_all(&[b'x'; 64 * 1024]).unwrap();
            let mut first = [0u8; 1024];
            current.read_exact(&mut first).unwrap();
            current.shutdown(Shutdown::Write).unwrap();
        }
        drop(current);
        current = connect(f.local);
        round_trip(&mut current, format!("round {round}").as_bytes());
    }
    for (i, tcp) in held.iter_mut().enumerate() {
        round_trip(tcp, format!("still {i}").as_bytes());
    }
    let stderr = f.expert.stderr.lock().unwrap().join("\n");
    assert!(!stderr.contains("refused_by"), "{stderr}");
}

#[test]
fn the_case_history_counts_exactly_the_bytes_the_applications_sent() {
    let daemon = Daemon::start(&[]);
    let shared = share(Service::Exchange);
    let mut f = forwarded(&daemon, Some(shared.addr));

    // The chat: 1,000 bytes to the customer, 333 to the expert.
    let to_customer = vec![b'a'; 1000];
    let to_expert = vec![b'b'; 333];
    f.expert.send(&to_customer);
    assert_eq!(f.customer.receive(to_customer.len()), to_customer);
    f.customer.send(&to_expert);
    assert_eq!(f.expert.receive(to_expert.len()), to_expert);

    // Three forwarded connections, one after the other: a 16-byte header and `len` bytes
    // to the service, `len` bytes back.
    let lens = [1usize, 10_000, 123_457];
    for (seed, len) in lens.iter().enumerate() {
        let mut tcp = connect(f.local);
        tcp.write_all(&(*len as u64).to_be_bytes()).unwrap();
        tcp.write_all(&(seed as u64).to_be_bytes()).unwrap();
        tcp.write_all(&payload(*len, seed as u64)).unwrap();
        tcp.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), *len);
        assert!(matches!(
            shared.reports.recv_timeout(PATIENCE),
            Ok(Report::Exchanged { .. })
        ));
    }

    daemon.json(Some(&f.token), &["close", &f.code]);
    f.customer.expect_event("session_ended");
    let (streams, c2e, e2c) = traffic_line(&history(&daemon, &f));
    let forwarded: u64 = lens.iter().map(|len| *len as u64).sum();
    assert_eq!(
        streams,
        1 + lens.len() as u64,
        "the chat and the three forwards"
    );
    assert_eq!(c2e, to_expert.len() as u64 + forwarded);
    assert_eq!(
        e2c,
        to_customer.len() as u64 + forwarded + 16 * lens.len() as u64
    );
}

#[test]
fn an_idle_forwarded_connection_is_never_cut_with_the_shipped_config() {
    // config/sosqd.toml has relay_idle_timeout = "0s"; the explicit-timeout test above
    // sees a silent stream reset after 1s, so a few seconds' silence here would be cut.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sosqd.toml");
    let daemon = Daemon::start(&["--config", shipped]);
    let shared = share(Service::Echo);
    let mut f = forwarded(&daemon, Some(shared.addr));
    let mut tcp = connect(f.local);
    round_trip(&mut tcp, b"before a pause");
    thread::sleep(Duration::from_secs(3));
    round_trip(&mut tcp, b"after a pause");
    drop(tcp);
    let closed = f.expert.expect_event("forward_closed");
    assert_eq!(
        closed["id"], 1,
        "the same connection, closed by us: {closed}"
    );
}
