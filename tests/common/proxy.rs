//! Relays a test controls, to make networks fail on purpose.
//!
//! - [`UdpProxy`], between clients and the daemon: a cut drops every datagram either way,
//!   as a network that drops would. QUIC rides on it unchanged, so the daemon and the
//!   clients see exactly what a dead network looks like.
//! - [`Proxy`], a TCP relay between a cluster node and PostgreSQL: a cut freezes every
//!   connection (bytes held back, nothing closed), so the node sees a partition rather
//!   than a refused or reset connection.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A running relay; stops when dropped.
pub struct UdpProxy {
    /// Where clients send (in place of the daemon's address).
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl UdpProxy {
    /// Relays datagrams between clients and `target`.
    pub fn start(target: SocketAddr) -> UdpProxy {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind the relay");
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let front = Arc::new(front);
        let backs: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        let (relay_cut, relay_stop) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !relay_stop.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                if relay_cut.load(Ordering::Relaxed) {
                    continue;
                }
                let back = backs
                    .lock()
                    .unwrap()
                    .entry(client)
                    .or_insert_with(|| {
                        back_socket(target, client, front.clone(), &relay_cut, &relay_stop)
                    })
                    .clone();
                let _ = back.send(&buf[..n]);
            }
        });
        UdpProxy { addr, cut, stop }
    }

    /// Drops every datagram both ways from now on.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Lets datagrams through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The relay's socket towards the daemon for one client, with a thread carrying the
/// daemon's answers back to that client.
fn back_socket(
    target: SocketAddr,
    client: SocketAddr,
    front: Arc<UdpSocket>,
    cut: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> Arc<UdpSocket> {
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind a relay socket"));
    back.connect(target).unwrap();
    back.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let (reader, cut, stop) = (back.clone(), cut.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = reader.recv(&mut buf) else {
                continue;
            };
            if !cut.load(Ordering::Relaxed) {
                let _ = front.send_to(&buf[..n], client);
            }
        }
    });
    back
}

/// A TCP relay from [`Proxy::addr`] to an upstream server (PostgreSQL) that the test can
/// cut, heal and reset; every connection is aborted when it is dropped.
///
/// - [`Proxy::cut`] freezes every connection both ways: bytes are held back, nothing is
///   closed, and new connections are accepted but not forwarded (no upstream connection is
///   made for them yet). Only the peers' own timeouts notice, as in a real partition.
///   (The kernels on both sides still acknowledge TCP segments, so a peer's send buffer
///   drains; what never comes is an answer.)
/// - [`Proxy::heal`] forwards again. Frozen connections **resume**: the bytes held back are
///   delivered, late. That is the harder case for fencing: a node's statements sent before
///   its lease lapsed reach PostgreSQL after another node took its cases over, and must be
///   refused by the epoch check. A peer that gave up meanwhile has closed its side, and
///   the relay passes that on too.
/// - [`Proxy::reset`] aborts every connection (a TCP reset to both sides, as when the
///   server restarts or a middlebox forgets the flows), for a client's reconnect path.
pub struct Proxy {
    addr: SocketAddr,
    relay: Arc<Relay>,
}

/// What the proxy's threads share.
struct Relay {
    upstream: SocketAddr,
    state: Mutex<RelayState>,
    /// Signalled on every change of `cut`, `generation`, `stopped` or `writing`.
    changed: Condvar,
}

#[derive(Default)]
struct RelayState {
    cut: bool,
    stopped: bool,
    /// Bumped by every reset: connections accepted before it end.
    generation: u64,
    /// Chunks being written right now; a cut waits for them, so that once `cut` returns
    /// nothing more passes.
    writing: usize,
    /// Clones of every live connection's sockets, to abort them on a reset.
    sockets: HashMap<u64, Vec<TcpStream>>,
    next_id: u64,
    accepted: u64,
    forwarded: u64,
}

/// How long [`Proxy::cut`] waits for a chunk in the middle of being written (a peer that
/// does not read can hold a write forever; a cut must still return).
const CUT_SETTLE: Duration = Duration::from_secs(1);

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards every connection to
    /// `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TCP proxy");
        // Polled, so that a dropped proxy's thread notices and closes the listener.
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = Arc::new(Relay {
            upstream,
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        let accepting = relay.clone();
        std::thread::spawn(move || loop {
            if accepting.lock().stopped {
                return;
            }
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    let _ = client.set_nodelay(true);
                    let relay = accepting.clone();
                    std::thread::spawn(move || relay.serve(client));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
        Proxy { addr, relay }
    }

    /// Where to connect instead of the upstream server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding both ways; see [`Proxy`]. Returns once nothing more passes.
    pub fn cut(&self) {
        let mut state = self.relay.lock();
        state.cut = true;
        let deadline = Instant::now() + CUT_SETTLE;
        while state.writing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.relay.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Forwards again: frozen connections resume with the bytes held back, waiting new
    /// ones are connected upstream.
    pub fn heal(&self) {
        self.relay.lock().cut = false;
        self.relay.changed.notify_all();
    }

    /// Aborts every connection accepted so far with a TCP reset to both sides; later
    /// connections are forwarded (once healed, if cut).
    pub fn reset(&self) {
        self.relay.abort_all(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.relay.lock().accepted
    }

    /// Connections made upstream so far (accepted ones wait for this while cut).
    pub fn forwarded(&self) -> u64 {
        self.relay.lock().forwarded
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.relay.abort_all(true);
    }
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, RelayState> {
        // A panicking relay thread must not take every later test step down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One accepted connection, from acceptance to its end.
    fn serve(self: Arc<Relay>, client: TcpStream) {
        let (id, generation) = {
            let mut state = self.lock();
            state.accepted += 1;
            state.next_id += 1;
            let id = state.next_id;
            if let Ok(clone) = client.try_clone() {
                state.sockets.insert(id, vec![clone]);
            }
            (id, state.generation)
        };
        if self.wait_open(generation) {
            if let Ok(upstream) = TcpStream::connect(self.upstream) {
                let _ = upstream.set_nodelay(true);
                let clones = (
                    upstream.try_clone(),
                    client.try_clone(),
                    upstream.try_clone(),
                );
                if let (Ok(registered), Ok(client_back), Ok(upstream_back)) = clones {
                    {
                        let mut state = self.lock();
                        state.forwarded += 1;
                        state.sockets.entry(id).or_default().push(registered);
                    }
                    let relay = self.clone();
                    let back = std::thread::spawn(move || {
                        relay.pump(upstream_back, client_back, generation)
                    });
                    self.pump(client, upstream, generation);
                    let _ = back.join();
                }
            }
        }
        // The last handles close here: normally, or with a reset if `abort_all` set
        // linger to zero on them.
        self.lock().sockets.remove(&id);
    }

    /// Copies `from` to `to` until either ends, holding each chunk while cut.
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, generation: u64) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            if n == 0 {
                // The end of one direction is passed on, unless a reset or the proxy's
                // end woke this read (then the other side gets a reset, not an end).
                let state = self.lock();
                if !state.stopped && state.generation == generation {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            if !self.begin_write(generation) {
                return;
            }
            let wrote = to.write_all(&buf[..n]);
            self.lock().writing -= 1;
            self.changed.notify_all();
            if wrote.is_err() {
                return;
            }
        }
    }

    /// Waits while cut; the lock, if the connection of `generation` may go on (no reset,
    /// no stop since it was accepted).
    fn uncut(&self, generation: u64) -> Option<MutexGuard<'_, RelayState>> {
        let mut state = self.lock();
        while state.cut && !state.stopped && state.generation == generation {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        (!state.stopped && state.generation == generation).then_some(state)
    }

    /// Whether the connection of `generation` may be forwarded, once not cut.
    fn wait_open(&self, generation: u64) -> bool {
        self.uncut(generation).is_some()
    }

    /// [`Relay::uncut`], then counts a write in progress under the same lock, so that a
    /// cut cannot slip in between.
    fn begin_write(&self, generation: u64) -> bool {
        match self.uncut(generation) {
            Some(mut state) => {
                state.writing += 1;
                true
            }
            None => false,
        }
    }

    /// Ends every connection with a reset to both sides (and the proxy, if `stop`).
    fn abort_all(&self, stop: bool) {
        let mut state = self.lock();
        state.generation += 1;
        state.stopped |= stop;
        for socket in state.sockets.values().flatten() {
            // Linger zero: the last close sends a reset instead of an orderly end.
            let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
            // Wakes the pumps' blocking reads (they see an end, and the new generation
            // tells them it is not one to pass on); Linux sends nothing to the peer for it.
            let _ = socket.shutdown(Shutdown::Read);
        }
        drop(state);
        self.changed.notify_all();
    }
}
