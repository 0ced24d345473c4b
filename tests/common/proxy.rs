//! A UDP relay between clients and the daemon that a test can cut, as a network that drops
//! would: every datagram either way is dropped until it is restored. QUIC rides on it
//! unchanged, so the daemon and the clients see exactly what a dead network looks like.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
