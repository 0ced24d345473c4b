//! Sessions end cleanly: no reader ever takes cut data for complete. A transfer into a slow
//! reader (200 KiB/s) is either delivered whole, every byte and then the end (the customer
//! pressed Ctrl-C right after its service finished sending), or cut with a reset the
//! reader sees (the case was closed mid-way), never a clean end after part of it.
//!
//! The size is `SOSQ_TEST_SLOW_MB` (default 16 MiB, several times what the buffers between
//! the service and the reader hold: about 80 s at 200 KiB/s); the figure is 100.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{payload, Daemon, Session, PATIENCE};

/// The reader's pace, bytes per second.
const READ_RATE: usize = 200 * 1024;

fn transfer_size() -> usize {
    let mb: usize = std::env::var("SOSQ_TEST_SLOW_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    mb * 1024 * 1024
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// The customer's service: for one connection, writes `data`, finishes its side (FIN), and
/// says so on the returned channel the moment its last write returned.
fn source(data: Vec<u8>) -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut tcp, _)) = listener.accept() else {
            return;
        };
        if tcp.write_all(&data).is_ok() {
            let _ = tcp.shutdown(Shutdown::Write);
            let _ = done.send(());
        }
        // Hold the connection open until the other side is done with it.
        let mut rest = [0u8; 1024];
        while matches!(tcp.read(&mut rest), Ok(n) if n > 0) {}
    });
    (addr, finished)
}

/// How the slow reader's transfer ended.
#[derive(Debug)]
enum Outcome {
    /// A clean end after these bytes.
    Ended(Vec<u8>),
    /// A reset after this many bytes.
    Reset(usize),
}

/// Reads `local` at [`READ_RATE`] until the end or an error; reports progress on `progress`.
fn slow_reader(local: SocketAddr, progress: mpsc::Sender<usize>) -> thread::JoinHandle<Outcome> {
    thread::spawn(move || {
        let mut tcp = TcpStream::connect(local).unwrap();
        tcp.set_read_timeout(Some(PATIENCE * 4)).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Pace: never ahead of READ_RATE since the start.
            let due = Duration::from_secs_f64(got.len() as f64 / READ_RATE as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
            match tcp.read(&mut buf) {
                Ok(0) => return Outcome::Ended(got),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    let _ = progress.send(got.len());
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Outcome::Reset(got.len())
                }
                Err(e) => panic!("the reader failed otherwise: {e} after {} bytes", got.len()),
            }
        }
    })
}

/// A customer sharing `share` and an expert forwarding a local port, paired; the expert
/// waits for the next customer whenever it is let go, so nothing ends its forwards.
fn session(daemon: &Daemon, share: SocketAddr) -> (Session, Session, String, SocketAddr) {
    let token = daemon.add_user("ana", "expert");
    let share = share.to_string();
    // Leaving may take a while into a slow reader: give the drain room on a busy machine.
    let mut customer = daemon.session(
        None,
        &[
            "request",
            "--name",
            "Alice",
            "--share",
            &share,
            "--drain-for",
            "5m",
        ],
    );
    let code = customer.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut expert = daemon.session(
        Some(&token),
        &["pull", "--wait", "--forward", "127.0.0.1:0"],
    );
    let local = expert.expect_forwarding();
    expert.expect_event("paired");
    customer.expect_event("paired");
    (customer, expert, code, local)
}

#[test]
fn a_customer_leaving_right_after_its_service_finished_delivers_every_byte() {
    let daemon = Daemon::start(&[]);
    let data = payload(transfer_size(), 7);
    let expected = sha256(&data);
    let (share, finished) = source(data);
    let (mut customer, mut expert, _, local) = session(&daemon, share);
    let (progress, _seen) = mpsc::channel();
    let reader = slow_reader(local, progress);

    // The service has written everything; the user presses Ctrl-C at once.
    let whole = Duration::from_secs((transfer_size() / READ_RATE) as u64);
    finished
        .recv_timeout(whole + PATIENCE)
        .expect("the service finished sending");
    customer.interrupt();
    customer.expect_event("draining");
    let left = customer.expect_event("left");
    assert_eq!(left["cut"], 0, "{left}");

    match reader.join().unwrap() {
        Outcome::Ended(got) => {
            assert_eq!(got.len(), transfer_size(), "every byte, then the end");
            assert_eq!(sha256(&got), expected, "the bytes themselves");
        }
        Outcome::Reset(n) => panic!(
            "the reader was reset after {n} bytes\ncustomer:\n{}\nexpert:\n{}\ndaemon:\n{}",
            customer.stderr.lock().unwrap().join("\n"),
            expert.stderr.lock().unwrap().join("\n"),
            daemon.log()
        ),
    }
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    expert.interrupt();
}

#[test]
fn closing_a_case_mid_transfer_resets_the_slow_reader_and_never_ends_it() {
    let daemon = Daemon::start(&[]);
    let (share, _finished) = source(payload(transfer_size(), 8));
    let (mut customer, mut expert, code, local) = session(&daemon, share);
    let (progress, seen) = mpsc::channel();
    let reader = slow_reader(local, progress);
    // Well into the transfer (but far from its end), the expert closes the case.
    while seen.recv_timeout(PATIENCE).expect("bytes arrive") < 1024 * 1024 {}
    let token = daemon.add_user("bo", "expert");
    let closed = daemon.run(Some(&token), &["close", &code]);
    assert!(closed.status.success());
    customer.expect_event("session_ended");
    expert.expect_event("session_ended");

    match reader.join().unwrap() {
        Outcome::Reset(n) => assert!(n < transfer_size(), "{n}"),
        Outcome::Ended(got) => panic!(
            "the reader took {} of {} bytes for a complete transfer",
            got.len(),
            transfer_size()
        ),
    }
}
