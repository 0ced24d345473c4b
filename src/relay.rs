//! Splices session streams between the two paired parties of a case.
//!
//! Every bidirectional stream a paired party opens (after its control stream) starts with
//! one [`StreamKind`] byte. The relay reads it, takes a place for the stream, opens a
//! matching stream to the other party, writes the kind there, and copies the rest both
//! ways. The kind byte is the relay's business, not the session's: the counters see only
//! what the applications sent, so the case history says exactly that. A stream of an
//! unknown kind, or one that ends before its kind, is refused with `PROTOCOL_ERROR`.
//!
//! Places (`relay/slots.rs`): a session may have [`RelayLimits::max_streams_per_session`]
//! forwarded connections and [`CHATS_PER_SESSION`] chats open, counted apart. A stream that
//! finds every place of its kind taken waits up to [`SLOT_GRACE`] for one, then is refused
//! with `TOO_MANY_STREAMS`. A stream gives its place back the moment it ends: when both
//! directions have ended, or as soon as either is reset; a reset resets or stops all four
//! halves (both parties' send and receive sides) with its code at once, without waiting
//! for the other direction to wind down. A stop (a reader that wants no more) ends its
//! direction only, like a TCP half-close: the other may still be carrying what a party
//! that left on purpose sent before it went.
//!
//! Copying goes through at most [`COPY_BUFFER`] bytes per direction, so QUIC flow control is
//! the back-pressure: a slow reader slows its writer and nothing piles up here. EOF
//! finishes the far side. A stream silent both ways for [`RelayLimits::idle_timeout`] is
//! reset, if the operator set one; by default nothing is: the party's QUIC connection, kept
//! alive by the client, already proves both parties are there, and an idle stream on it is
//! a person thinking (an SSH session), not a leak. When the pairing is cut short (close,
//! expiry, deletion, a party's connection lost) every spliced stream is reset at once
//! ([`Relays::unpair`], which hands back the bytes the session carried each way); when a
//! party leaves on purpose its streams drain to their natural end ([`Relays::unlink`]).

mod slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use sosq::protocol::{close_code, StreamKind};
use sosq::SessionCode;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::{PartyId, SessionTraffic};
use slots::{Slot, Slots};
pub use slots::{CHATS_PER_SESSION, SLOT_GRACE};

/// Most bytes one direction of a spliced stream holds between reading and writing them.
pub const COPY_BUFFER: usize = 64 * 1024;

/// Received chunks one direction takes per read; a chunk is at most one datagram's payload
/// (quinn's default ceiling, 1,472 bytes), so a round stays within [`COPY_BUFFER`].
const CHUNKS_PER_READ: usize = 32;

const _: () = assert!(CHUNKS_PER_READ * 1472 <= COPY_BUFFER);

/// What the relay allows a session.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Forwarded connections open at once per session; one more waits [`SLOT_GRACE`] for a
    /// place, then is reset with `TOO_MANY_STREAMS`. Chats do not count here (they have
    /// [`CHATS_PER_SESSION`] places of their own).
    pub max_streams_per_session: usize,
    /// A stream with no byte either way for this long is reset with `STREAM_IDLE`; `None`:
    /// never.
    pub idle_timeout: Option<Duration>,
}

impl RelayLimits {
    /// The relay's limits from the daemon's settings (`max_streams_per_session`,
    /// `relay_idle_timeout`, where zero means never).
    pub fn from_config(config: &crate::config::Config) -> RelayLimits {
        RelayLimits {
            max_streams_per_session: config.max_streams_per_session as usize,
            idle_timeout: (!config.relay_idle_timeout.is_zero())
                .then_some(config.relay_idle_timeout),
        }
    }
}

/// The worst-case bytes the broker buffers for one party's connection, in bytes: what the
/// peer may send unread, what we keep of what we write, and the relay's copy buffers of
/// the session's streams, forwarded connections and chats (README "Limits and memory"
/// explains the sum).
pub fn memory_bound_per_connection(config: &crate::config::Config) -> u64 {
    let streams = u64::from(config.max_streams_per_session) + CHATS_PER_SESSION as u64;
    let copy_buffers = streams * 2 * COPY_BUFFER as u64;
    config.receive_window + config.send_window + copy_buffers
}

/// The live counters and the stream places of one pairing.
struct Counters {
    customer_to_expert: AtomicU64,
    expert_to_customer: AtomicU64,
    /// Streams spliced to the other party, chats and forwarded connections alike.
    relayed: AtomicU64,
    slots: Slots,
}

impl Counters {
    fn new(limits: &RelayLimits) -> Counters {
        Counters {
            customer_to_expert: AtomicU64::new(0),
            expert_to_customer: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            slots: Slots::new(limits.max_streams_per_session),
        }
    }

    fn traffic(&self) -> SessionTraffic {
        SessionTraffic {
            customer_to_expert: self.customer_to_expert.load(Ordering::Relaxed),
            expert_to_customer: self.expert_to_customer.load(Ordering::Relaxed),
            streams: self.relayed.load(Ordering::Relaxed),
        }
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

/// A pairing that ended while its streams still carry what was sent before (see
/// [`Relays::unlink`]).
pub struct Draining {
    /// Kept, not dropped: dropping it would reset the streams still draining.
    ended: watch::Sender<()>,
    counters: Arc<Counters>,
}

impl Draining {
    /// Waits until every stream of the session has ended, then returns what the session
    /// carried in all, the drained bytes included.
    pub async fn finished(self) -> SessionTraffic {
        self.ended.closed().await;
        self.counters.traffic()
    }
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
        let counters = Arc::new(Counters::new(&self.limits));
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
    /// run to their natural end (a party left on purpose; what it sent before still
    /// arrives); the returned [`Draining`] tells what the session carried once they have.
    pub fn unlink(&self, code: SessionCode) -> Option<Draining> {
        let Session {
            _ended: ended,
            counters,
            ..
        } = self.end(code)?;
        Some(Draining { ended, counters })
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

/// Accepts the streams a party opens after its control stream and relays each to its
/// peer; streams opened while unpaired are refused with `NOT_PAIRED`.
pub async fn accept_streams(relays: Arc<Relays>, party: PartyId, connection: quinn::Connection) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let Some(link) = relays.link(party) else {
            refuse(send, recv, close_code::NOT_PAIRED);
            continue;
        };
        // Its own task at once: reading the kind and waiting for a place must not hold up
        // the streams behind it.
        tokio::spawn(relay_stream(link, relays.limits.idle_timeout, send, recv));
    }
}

/// Admits one stream a paired party opened (its kind, a place), opens its match to the
/// peer, and splices the two until the stream ends; the place is given back on return.
async fn relay_stream(
    link: Link,
    idle_timeout: Option<Duration>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut ended = link.ended.clone();
    let admitted = tokio::select! {
        admitted = admit(&link, &mut recv) => admitted,
        _ = ended.changed() => Err(close_code::SESSION_ENDED),
    };
    let (kind, _slot) = match admitted {
        Ok(admitted) => admitted,
        Err(code) => return refuse(send, recv, code),
    };
    let opened = tokio::select! {
        opened = open_to_peer(&link.peer, kind) => opened,
        _ = ended.changed() => Err(close_code::SESSION_ENDED),
    };
    match opened {
        Ok(peer) => {
            link.counters.relayed.fetch_add(1, Ordering::Relaxed);
            splice(&link, (send, recv), peer, idle_timeout).await;
        }
        Err(code) => refuse(send, recv, code),
    }
}

/// Reads a new stream's kind and takes a place for it; the refusal code if either fails.
async fn admit(link: &Link, recv: &mut quinn::RecvStream) -> Result<(StreamKind, Slot), u32> {
    // The opener writes its kind with the stream's first bytes. A stream that never sends
    // it waits here until the session or the connection ends; there are at most
    // `max_streams_per_connection` such streams per connection, and they hold no buffer.
    let mut byte = [0u8; 1];
    if recv.read_exact(&mut byte).await.is_err() {
        tracing::info!(code = %link.code, "refused a stream that ended before its kind");
        return Err(close_code::PROTOCOL_ERROR);
    }
    let Some(kind) = StreamKind::from_byte(byte[0]) else {
        tracing::info!(code = %link.code, kind = byte[0], "refused a stream of an unknown kind");
        return Err(close_code::PROTOCOL_ERROR);
    };
    match link.counters.slots.claim(kind).await {
        Some(slot) => Ok((kind, slot)),
        None => {
            tracing::info!(code = %link.code, ?kind, "refused a stream over the session limit");
            Err(close_code::TOO_MANY_STREAMS)
        }
    }
}

/// Opens the peer's side of a stream and announces its kind there; the code to refuse the
/// opener's side with if that fails.
async fn open_to_peer(
    peer: &quinn::Connection,
    kind: StreamKind,
) -> Result<(quinn::SendStream, quinn::RecvStream), u32> {
    let (mut send, recv) = peer
        .open_bi()
        .await
        .map_err(|_| close_code::SESSION_ENDED)?;
    match send.write_all(&[kind as u8]).await {
        Ok(()) => Ok((send, recv)),
        // The peer stopped it at once: pass its reason on.
        Err(quinn::WriteError::Stopped(code)) => {
            Err(u32::try_from(code.into_inner()).unwrap_or(close_code::SESSION_ENDED))
        }
        Err(_) => Err(close_code::SESSION_ENDED),
    }
}

fn refuse(mut send: quinn::SendStream, mut recv: quinn::RecvStream, code: u32) {
    let _ = send.reset(code.into());
    let _ = recv.stop(code.into());
}

/// Copies both directions until both have finished, or until the stream must end at once:
/// either direction is reset or stopped, the session ends, or the stream idles. Then every
/// half is reset or stopped with the one code (a dropped quinn stream would finish cleanly,
/// which would look like a normal end to the reader), and the stream's place is free.
async fn splice(
    link: &Link,
    (mut a_send, mut a_recv): (quinn::SendStream, quinn::RecvStream),
    (mut b_send, mut b_recv): (quinn::SendStream, quinn::RecvStream),
    idle_timeout: Option<Duration>,
) {
    let (sent, received) = link.directions();
    let activity = Activity::new();
    let mut ended = link.ended.clone();
    // The copies borrow the four halves; they end with this block, before the resets.
    let reset_code = {
        let a_to_b = pipe(&mut a_recv, &mut b_send, sent, &activity);
        let b_to_a = pipe(&mut b_recv, &mut a_send, received, &activity);
        tokio::pin!(a_to_b, b_to_a);
        let (mut a_to_b_done, mut b_to_a_done) = (false, false);
        loop {
            if a_to_b_done && b_to_a_done {
                break None;
            }
            let code = tokio::select! {
                // A stream that finished cleanly stays finished even if the session ends now.
                biased;
                done = &mut a_to_b, if !a_to_b_done => match done {
                    Ok(()) => { a_to_b_done = true; continue; }
                    Err(code) => code,
                },
                done = &mut b_to_a, if !b_to_a_done => match done {
                    Ok(()) => { b_to_a_done = true; continue; }
                    Err(code) => code,
                },
                _ = ended.changed() => close_code::SESSION_ENDED.into(),
                _ = activity.idle(idle_timeout) => close_code::STREAM_IDLE.into(),
            };
            break Some(code);
        }
    };
    if let Some(code) = reset_code {
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

    /// Completes once nothing moved for `timeout`; never without one.
    async fn idle(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
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

/// Copies one direction until EOF, which finishes the far side. A reset of `from` is an
/// error with its code, for [`splice`] to end the whole stream with; so is `from`'s
/// connection ending before its EOF: what it sent is cut, and the far reader must see a
/// reset, not an end. A stop of `to` (its reader wants no more), or `to`'s connection gone,
/// ends this direction only, passing the stop on to `from`: like a TCP half-close, the
/// other direction may still be carrying what its writer sent.
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
) -> Result<(), quinn::VarInt> {
    let mut chunks: [Bytes; CHUNKS_PER_READ] = Default::default();
    // The reader may stop taking this direction while we wait for bytes to read; notice it
    // at once, not only at the next write.
    let stopped = to.stopped();
    tokio::pin!(stopped);
    loop {
        let read = tokio::select! {
            read = from.read_chunks(&mut chunks) => read,
            stop = &mut stopped => {
                // Stopped: the writer is told to stop too. The reader's connection gone
                // (it left): nobody is left to take this direction. Either way only this
                // direction ends: the other may still be draining what the leaver sent.
                let code = match stop {
                    Ok(Some(code)) => code,
                    _ => close_code::SESSION_ENDED.into(),
                };
                let _ = from.stop(code);
                return Ok(());
            }
        };
        match read {
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
                    return Ok(());
                }
                counter.fetch_add(len as u64, Ordering::Relaxed);
            }
            Ok(None) => {
                let _ = to.finish();
                return Ok(());
            }
            Err(quinn::ReadError::Reset(code)) => return Err(code),
            Err(_) => return Err(close_code::SESSION_ENDED.into()),
        }
    }
}
