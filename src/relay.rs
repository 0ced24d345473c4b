//! Splices session streams between the two paired parties of a case.
//!
//! Every bidirectional stream a paired party opens (after its control stream) is matched by
//! a stream the broker opens to the other party, and bytes are copied both ways. Copying
//! goes through at most [`COPY_BUFFER`] bytes per direction, so QUIC flow control is the
//! back-pressure: a slow reader slows its writer and nothing piles up here. EOF finishes the
//! far side, a reset resets it. A session may have at most
//! [`RelayLimits::max_streams_per_session`] streams open; a stream silent both ways for
//! [`RelayLimits::idle_timeout`] is reset. When the pairing ends (close, expiry, deletion, a
//! party leaving) every spliced stream is reset at once, and [`Relays::unpair`] hands back
//! the bytes the session carried each way.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use sosq::protocol::close_code;
use sosq::SessionCode;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::{PartyId, SessionTraffic};

/// Most bytes one direction of a spliced stream holds between reading and writing them.
pub const COPY_BUFFER: usize = 64 * 1024;

/// Received chunks one direction takes per read; a chunk is at most one datagram's payload
/// (quinn's default ceiling, 1,472 bytes), so a round stays within [`COPY_BUFFER`].
const CHUNKS_PER_READ: usize = 32;

const _: () = assert!(CHUNKS_PER_READ * 1472 <= COPY_BUFFER);

/// What the relay allows a session.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Relayed streams open at once per session; one more is reset with `TOO_MANY_STREAMS`.
    pub max_streams_per_session: usize,
    /// A stream with no byte either way for this long is reset with `STREAM_IDLE`.
    pub idle_timeout: Duration,
}

/// The live counters of one pairing.
#[derive(Default)]
struct Counters {
    customer_to_expert: AtomicU64,
    expert_to_customer: AtomicU64,
    opened: AtomicU64,
    open: AtomicUsize,
}

impl Counters {
    fn traffic(&self) -> SessionTraffic {
        SessionTraffic {
            customer_to_expert: self.customer_to_expert.load(Ordering::Relaxed),
            expert_to_customer: self.expert_to_customer.load(Ordering::Relaxed),
            streams: self.opened.load(Ordering::Relaxed),
        }
    }
}

/// A claimed place among the session's open streams; given back on drop.
struct StreamSlot(Arc<Counters>);

impl StreamSlot {
    fn claim(counters: &Arc<Counters>, max: usize) -> Option<StreamSlot> {
        let before = counters.open.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            counters.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        counters.opened.fetch_add(1, Ordering::Relaxed);
        Some(StreamSlot(counters.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The far end of a paired party.
#[derive(Clone)]
pub struct Link {
    /// The case.
    pub code: SessionCode,
    /// The other party's connection.
    pub peer: quinn::Connection,
    /// Changes (closes) when the pairing ends.
    pub ended: watch::Receiver<()>,
    /// Whether this side is the customer (which way its bytes count).
    pub from_customer: bool,
    counters: Arc<Counters>,
}

impl Link {
    /// The counters of the bytes this side sends and receives.
    fn directions(&self) -> (&AtomicU64, &AtomicU64) {
        let c = &self.counters;
        if self.from_customer {
            (&c.customer_to_expert, &c.expert_to_customer)
        } else {
            (&c.expert_to_customer, &c.customer_to_expert)
        }
    }
}

/// One live pairing.
struct Session {
    /// Dropping it wakes every splice of the session.
    _ended: watch::Sender<()>,
    counters: Arc<Counters>,
    /// The customer and the expert, whose links go with the session.
    parties: [PartyId; 2],
}

/// All live pairings.
pub struct Relays {
    limits: RelayLimits,
    links: DashMap<PartyId, Link>,
    sessions: DashMap<SessionCode, Session>,
}

impl Relays {
    /// No pairings yet; every session gets `limits`.
    pub fn new(limits: RelayLimits) -> Relays {
        Relays {
            limits,
            links: DashMap::new(),
            sessions: DashMap::new(),
        }
    }

    /// Pairs the customer's and the expert's connections for `code`, replacing any earlier
    /// pairing of the case.
    pub fn pair(
        &self,
        code: SessionCode,
        (customer, customer_conn): (PartyId, quinn::Connection),
        (expert, expert_conn): (PartyId, quinn::Connection),
    ) {
        self.unpair(code);
        let (ended_tx, ended) = watch::channel(());
        let counters = Arc::new(Counters::default());
        self.sessions.insert(
            code,
            Session {
                _ended: ended_tx,
                counters: counters.clone(),
                parties: [customer, expert],
            },
        );
        self.links.insert(
            customer,
            Link {
                code,
                peer: expert_conn,
                ended: ended.clone(),
                from_customer: true,
                counters: counters.clone(),
            },
        );
        self.links.insert(
            expert,
            Link {
                code,
                peer: customer_conn,
                ended,
                from_customer: false,
                counters,
            },
        );
    }

    /// Ends the pairing of `code` and every stream spliced for it; returns what the
    /// session carried, if it was paired.
    pub fn unpair(&self, code: SessionCode) -> Option<SessionTraffic> {
        // Dropping the sender wakes every splice of the session.
        let session = self.end(code)?;
        Some(session.counters.traffic())
    }

    /// Forgets the pairing of `code` for new streams but lets the streams already spliced
    /// run to their natural end (a party left; what it sent before still arrives).
    pub fn unlink(&self, code: SessionCode) -> Option<SessionTraffic> {
        let session = self.end(code)?;
        let traffic = session.counters.traffic();
        let Session { _ended: ended, .. } = session;
        // Keep the splices' receivers quiet: hand the sender to a task that drops it only
        // when every splice is done with it.
        tokio::spawn(async move { ended.closed().await });
        Some(traffic)
    }

    /// Forgets the session of `code` and its parties' links; hands back the session.
    fn end(&self, code: SessionCode) -> Option<Session> {
        let (_, session) = self.sessions.remove(&code)?;
        for party in session.parties {
            // A party re-paired to another case since keeps that link.
            self.links.remove_if(&party, |_, link| link.code == code);
        }
        Some(session)
    }

    /// The link of a party, while it is paired.
    pub fn link(&self, party: PartyId) -> Option<Link> {
        self.links.get(&party).map(|link| link.clone())
    }
}

/// Accepts the streams a party opens after its control stream and splices each to its
/// peer; streams opened while unpaired are refused with `NOT_PAIRED`, streams beyond the
/// session's limit with `TOO_MANY_STREAMS`.
pub async fn accept_streams(relays: Arc<Relays>, party: PartyId, connection: quinn::Connection) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let Some(link) = relays.link(party) else {
            refuse(send, recv, close_code::NOT_PAIRED);
            continue;
        };
        let max = relays.limits.max_streams_per_session;
        let Some(slot) = StreamSlot::claim(&link.counters, max) else {
            tracing::info!(code = %link.code, max, "refused a stream over the session limit");
            refuse(send, recv, close_code::TOO_MANY_STREAMS);
            continue;
        };
        let idle_timeout = relays.limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut ended = link.ended.clone();
            let opened = tokio::select! {
                opened = link.peer.open_bi() => opened.ok(),
                _ = ended.changed() => None,
            };
            match opened {
                Some(peer) => splice(&link, (send, recv), peer, idle_timeout).await,
                None => refuse(send, recv, close_code::SESSION_ENDED),
            }
        });
    }
}

fn refuse(mut send: quinn::SendStream, mut recv: quinn::RecvStream, code: u32) {
    let _ = send.reset(code.into());
    let _ = recv.stop(code.into());
}

/// Copies both directions until both are done, the session ends or the stream idles; an
/// ended or idle stream has every half still open reset (a dropped quinn stream would
/// finish cleanly, which would look like a normal end to the reader).
async fn splice(
    link: &Link,
    (mut a_send, mut a_recv): (quinn::SendStream, quinn::RecvStream),
    (mut b_send, mut b_recv): (quinn::SendStream, quinn::RecvStream),
    idle_timeout: Duration,
) {
    let (sent, received) = link.directions();
    let activity = Activity::new();
    let mut ended = link.ended.clone();
    let reset_code = tokio::select! {
        // A stream that finished cleanly stays finished even if the session ends now.
        biased;
        _ = async {
            tokio::join!(
                pipe(&mut a_recv, &mut b_send, sent, &activity),
                pipe(&mut b_recv, &mut a_send, received, &activity),
            )
        } => None,
        _ = ended.changed() => Some(close_code::SESSION_ENDED),
        _ = activity.idle(idle_timeout) => Some(close_code::STREAM_IDLE),
    };
    if let Some(code) = reset_code {
        let code = quinn::VarInt::from_u32(code);
        let _ = a_send.reset(code);
        let _ = b_send.reset(code);
        let _ = a_recv.stop(code);
        let _ = b_recv.stop(code);
    }
}

/// When a spliced stream last carried a byte either way.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing moved for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.started + last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Copies one direction: EOF finishes the far side, a reset resets it, a stop stops us.
///
/// Each round takes up to [`CHUNKS_PER_READ`] received chunks under one lock of the
/// connection and copies them once into a fresh buffer that the far side's send stream then
/// owns. That is one copy per byte (a plain `read` + `write` costs two), and the received
/// chunks are dropped at once: handing them over as they are would pin whole receive
/// batches in the far side's send buffer until acknowledged, and break the memory bound.
async fn pipe(
    from: &mut quinn::RecvStream,
    to: &mut quinn::SendStream,
    counter: &AtomicU64,
    activity: &Activity,
) {
    let mut chunks: [Bytes; CHUNKS_PER_READ] = Default::default();
    loop {
        match from.read_chunks(&mut chunks).await {
            Ok(Some(n)) => {
                activity.touch();
                let received = &mut chunks[..n];
                let len = received.iter().map(Bytes::len).sum();
                let mut batch = BytesMut::with_capacity(len);
                for chunk in received {
                    batch.extend_from_slice(chunk);
                    *chunk = Bytes::new();
                }
                if let Err(e) = to.write_chunk(batch.freeze()).await {
                    let code = match e {
                        quinn::WriteError::Stopped(code) => code,
                        _ => close_code::SESSION_ENDED.into(),
                    };
                    let _ = from.stop(code);
                    return;
                }
                counter.fetch_add(len as u64, Ordering::Relaxed);
            }
            Ok(None) => {
                let _ = to.finish();
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                let _ = to.reset(code);
                return;
            }
            Err(_) => {
                let _ = to.reset(close_code::SESSION_ENDED.into());
                return;
            }
        }
    }
}
