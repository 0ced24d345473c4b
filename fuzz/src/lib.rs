//! The code behind the fuzz targets, shared with the regression test of the root package
//! (`tests/fuzz_regressions.rs` includes this file), so CI runs every committed input
//! through exactly the paths the fuzzer explored.
//!
//! - [`frame_decoder`]: arbitrary bytes through [`sosq::codec::decode`] and, as a stream of
//!   frames delivered in small pieces, through [`sosq::codec::read_frame`]. Nothing may
//!   panic, every failure must be a clean [`FrameError`], and decoding one frame may not
//!   allocate more than [`ALLOC_BOUND`] bytes at once, whatever the length fields say.
//! - [`control_handler`]: arbitrary bytes as the control streams of several connections.
//!   Each decoded [`ClientMessage`] is handled as the daemon's connection task and
//!   dispatcher would (hello, role check, the broker command, the store, the expiry timer)
//!   by a small synchronous [`Sim`], which checks the broker's invariants after every step.
//!
//! Both functions need [`CountingAlloc`] installed as the global allocator of the binary
//! that calls them for the allocation bound to be checked.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::codec::{self, FrameError, MAX_FRAME_LEN};
use sosq::protocol::{
    page_items, CaseInfo, CaseState, ClientMessage, DeleteSelector, Reply, Request, Role,
    ServerMessage, Timestamp, PROTOCOL_VERSION,
};
use sosq::SessionCode;
use sosqd::broker::{
    Broker, BrokerConfig, BrokerError, CaseRecord, CaseSelection, Departure, Effect, PartyId,
    Persist, QueueViewer, StoredAttachment,
};
use sosqd::server::commands::{self, Answer, Route};
use sosqd::server::{pages, Caller};
use sosqd::store::CommitReport;

// Customers' uploads and staff's reads of attachments in the simulation.
#[path = "sim_attachments.rs"]
mod sim_attachments;
use sim_attachments::Upload;
use tokio::io::{AsyncRead, ReadBuf};

// ----- allocation accounting -----------------------------------------------------------

/// The most bytes that decoding one frame may hold at once: the payload buffer (a frame,
/// with room for a vector that grows by doubling), plus what the payload itself can spell
/// out, which bincode's claim limit bounds (a string's length field reserves its bytes
/// before they are read; lists of codes are read one by one, capped at
/// `MAX_CODES_PER_DELETE`, never reserved from a length field).
pub const ALLOC_BOUND: usize = 2 * MAX_FRAME_LEN + codec::MAX_DECODE_CLAIM;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// A global allocator that counts the bytes each thread holds, so a test can measure the
/// peak of one operation without interference from other test threads.
pub struct CountingAlloc;

fn track(delta: isize) {
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

/// Runs `f` and returns its result with the most bytes this thread held on top of what it
/// held before (0 when [`CountingAlloc`] is not the global allocator).
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let value = f();
    let peak = PEAK.with(Cell::get);
    (value, (peak - base).max(0) as usize)
}

// ----- an in-memory reader -------------------------------------------------------------

/// Polls a future that never waits (it only reads from memory) to its end.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
    panic!("a read from memory did not finish");
}

/// Reads from a slice at most `step` bytes at a time, like a network stream that delivers
/// a frame in pieces.
pub struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    /// A reader over `data` handing out `step` (at least 1) bytes per read.
    pub fn new(data: &'a [u8], step: usize) -> Self {
        Trickle {
            data,
            step: step.max(1),
        }
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(buf.remaining()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

// ----- frame_decoder -------------------------------------------------------------------

/// What one run of [`frame_decoder`] saw.
#[derive(Debug, Default)]
pub struct DecodeReport {
    /// Whether the whole input decoded as one payload.
    pub payload_ok: bool,
    /// Messages read from the input as a stream of frames.
    pub frames: Vec<ClientMessage>,
    /// Why the stream of frames stopped, if not at a clean end.
    pub error: Option<String>,
    /// The most bytes held while decoding any one frame.
    pub peak: usize,
}

/// The frame decoder target. The first byte sets how many bytes each read delivers; the
/// rest is the stream. Panics (which is what the fuzzer looks for) on any broken promise.
pub fn frame_decoder(data: &[u8]) -> DecodeReport {
    let mut report = DecodeReport::default();

    // 1. The whole input as one payload, as `read_frame` hands it to `decode`.
    let (decoded, peak) = peak_during(|| codec::decode::<ClientMessage>(data));
    report.peak = peak;
    match decoded {
        Ok(message) => {
            report.payload_ok = true;
            round_trip(&message);
        }
        Err(FrameError::Malformed(_)) => {}
        Err(other) => panic!("decode failed with {other:?}, not as malformed"),
    }

    // 2. The input as a stream of frames, in pieces.
    let Some((&step, stream)) = data.split_first() else {
        return report;
    };
    let mut reader = Trickle::new(stream, usize::from(step % 16) + 1);
    loop {
        let (read, peak) =
            peak_during(|| block_on(codec::read_frame::<ClientMessage, _>(&mut reader)));
        report.peak = report.peak.max(peak);
        match read {
            Ok(Some(message)) => {
                round_trip(&message);
                report.frames.push(message);
            }
            Ok(None) => break,
            Err(e @ FrameError::TooLong { len, max }) => {
                assert!(len > max && max == MAX_FRAME_LEN, "{e}");
                report.error = Some(e.to_string());
                break;
            }
            Err(e @ (FrameError::Malformed(_) | FrameError::Truncated)) => {
                report.error = Some(e.to_string());
                break;
            }
            Err(FrameError::Stalled(_)) => panic!("reading without a deadline stalled"),
            Err(FrameError::Io(e)) => panic!("reading from memory failed: {e}"),
        }
    }
    assert!(
        report.peak <= ALLOC_BOUND,
        "decoding one frame held {} bytes, more than the bound of {ALLOC_BOUND}",
        report.peak
    );
    report
}

/// A decoded message encodes and decodes back to itself.
fn round_trip(message: &ClientMessage) {
    match codec::encode(message) {
        Ok(frame) => {
            let back: ClientMessage = codec::decode(&frame[4..]).expect("our own frame decodes");
            assert_eq!(&back, message, "a message changed on a round trip");
        }
        Err(FrameError::TooLong { .. }) => {}
        Err(e) => panic!("a decoded message does not encode: {e}"),
    }
}

// ----- control_handler -----------------------------------------------------------------

/// How far the clock moves before each request, and the case lifetime, in the simulation.
const STEP: Duration = Duration::from_secs(7);
const TTL: Duration = Duration::from_secs(60);
/// The open-case limit in the simulation.
const MAX_OPEN: usize = 8;

/// One connection of the simulation.
#[derive(Debug, Clone)]
struct Connection {
    party: PartyId,
    role: Role,
    name: String,
}

/// The daemon minus the sockets: the broker, a store, the clock and the connections, as
/// the connection task and the dispatcher drive them.
pub struct Sim {
    broker: Broker,
    store: Vec<CaseRecord>,
    now: Timestamp,
    next_party: u64,
    connections: Vec<Connection>,
    current: Option<usize>,
    /// Resume secrets handed out, by case, so that inputs can say "the right secret".
    secrets: Vec<(SessionCode, String)>,
    /// Every reply sent, in order.
    pub replies: Vec<Reply>,
    /// Each connection's upload in progress, as `server::uploads` keeps them.
    uploads: Vec<(PartyId, Upload)>,
    /// The attachments the store keeps, by case.
    attachments: Vec<(SessionCode, StoredAttachment)>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// An empty daemon at a fixed time with a seeded random source.
    pub fn new() -> Sim {
        let config = BrokerConfig {
            case_ttl: TTL,
            max_open_cases: MAX_OPEN,
            ..BrokerConfig::default()
        };
        Sim {
            broker: Broker::new(config, Box::new(StdRng::seed_from_u64(5))),
            store: Vec::new(),
            now: Timestamp(1_700_000_000_000),
            next_party: 1,
            connections: Vec::new(),
            current: None,
            secrets: Vec::new(),
            replies: Vec::new(),
            uploads: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Handles one message from the current connection, as `connection::run` would.
    pub fn message(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::Hello { version, token } if version == PROTOCOL_VERSION => {
                // A new connection says hello; the token (if any) decides the role, as a
                // users file would: its length picks expert, admin or "unknown token".
                let role = match token.as_deref().map(str::len) {
                    None => Some(Role::Customer),
                    Some(n) if n % 3 == 1 => Some(Role::Expert),
                    Some(n) if n % 3 == 2 => Some(Role::Admin),
                    Some(_) => None,
                };
                if let Some(role) = role {
                    let party = PartyId(self.next_party);
                    self.next_party += 1;
                    let name = match role {
                        Role::Customer => String::new(),
                        _ => format!("staff{}", token.as_deref().map_or(0, str::len) % 4),
                    };
                    self.connections.push(Connection { party, role, name });
                    self.current = Some(self.connections.len() - 1);
                }
            }
            // Another version: the server refuses it and closes that connection; here it
            // ends the current connection.
            ClientMessage::Hello { .. } => self.hang_up(),
            ClientMessage::Request(request) => {
                // A request before any hello is refused without touching the broker.
                let Some(current) = self.current else {
                    return;
                };
                let caller = self.connections[current].clone();
                self.tick();
                let reply = self.request(&caller, request);
                // The reply must always be sendable or cleanly refused as too long.
                match codec::encode(&ServerMessage::Reply(reply.clone())) {
                    Ok(_) | Err(FrameError::TooLong { .. }) => {}
                    Err(e) => panic!("a reply does not encode: {e}"),
                }
                self.replies.push(reply);
            }
        }
    }

    /// The current connection ends: the broker frees its seat.
    pub fn hang_up(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        let connection = self.connections.remove(current);
        self.uploads.retain(|(party, _)| *party != connection.party);
        let mut out = Vec::new();
        self.broker
            .disconnect(self.now, connection.party, Departure::Lost, &mut out);
        self.apply(&out);
        self.check(&out);
        self.current = self.connections.len().checked_sub(1);
    }

    /// Every connection ends; nobody may stay attached.
    pub fn finish(&mut self) {
        while self.current.is_some() {
            self.hang_up();
        }
        for record in &self.store {
            if let Some(case) = self.broker.case(record.code) {
                assert!(
                    case.customer.is_none() && case.expert.is_none(),
                    "someone is still attached to {} after every connection ended",
                    record.code
                );
            }
        }
    }

    /// Time passes and the expiry timer fires.
    fn tick(&mut self) {
        self.now = self.now.plus(STEP);
        let mut out = Vec::new();
        self.broker.expire_due(self.now, &mut out);
        self.apply(&out);
        self.check(&out);
    }

    /// The dispatcher: the daemon's own role check, then the daemon's own synchronous step
    /// (`sosqd::server::commands`) for every core command; only reads, which the real
    /// daemon answers from its store, are answered here from the simulated one.
    fn request(&mut self, caller: &Connection, request: Request) -> Reply {
        if !allowed(caller.role, &request) {
            return error_reply(sosq::protocol::ErrorKind::Forbidden, "forbidden");
        }
        let request = self.resolve(request);
        let now = self.now;
        let caller = Caller {
            party: caller.party,
            role: caller.role,
            name: caller.name.clone(),
            user: None,
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 4433)),
            channel: sosqd::server::Channel::Quic,
        };
        let mut out = Vec::new();
        let result: Result<Answer, BrokerError> = match commands::route(&request) {
            // A bulk delete runs in steps in the daemon; here in one, through the same
            // core command.
            Route::Durable | Route::Pairing | Route::BulkDelete | Route::Message => {
                commands::command(&mut self.broker, &caller, &request, now, &mut out)
            }
            Route::Read => self
                .read(&caller, request)
                .map(|reply| Answer::Reply(Box::new(reply))),
            // One node never redirects: a ticket is refused, as the daemon does.
            Route::Redeem => Err(BrokerError::InvalidInput("no cluster".into())),
            // As the daemon runs a note: with the stored record when the core has no case.
            Route::Note => match &request {
                Request::Note { code, text } => {
                    let stored = code
                        .parse::<sosq::SessionCode>()
                        .ok()
                        .and_then(|code| self.store.iter().find(|r| r.code == code).cloned());
                    self.broker
                        .add_note(now, code, text, stored.as_ref(), &mut out)
                        .map(|case| Answer::Reply(Box::new(Reply::Case(case))))
                }
                _ => Err(BrokerError::InvalidInput("not a note".into())),
            },
            Route::Upload => self
                .upload(&caller, request, &mut out)
                .map(|reply| Answer::Reply(Box::new(reply))),
            Route::Attachments => self
                .attachments_read(request)
                .map(|reply| Answer::Reply(Box::new(reply))),
        };
        if result.is_err() {
            assert!(out.is_empty(), "a refused request pushed {out:?}");
        }
        let deleted = self.apply(&out);
        self.check(&out);
        match result {
            Ok(answer) => {
                let reply = answer.once_committed(&CommitReport { deleted });
                if let Reply::Attached {
                    case,
                    resume_secret: Some(secret),
                    ..
                } = &reply
                {
                    self.secrets.push((case.code, secret.clone()));
                }
                reply
            }
            Err(e) => error_reply(e.kind(), &e.to_string()),
        }
    }

    /// The reads, answered from the simulated store as the daemon answers them from its own.
    fn read(&self, caller: &Caller, request: Request) -> Result<Reply, BrokerError> {
        Ok(match request {
            Request::Queue { after, limit } => Reply::Queue(self.broker.queue_page(
                QueueViewer::Everyone,
                after.as_ref(),
                page_items(limit),
            )),
            Request::WatchQueue { limit } => Reply::Queue(self.broker.queue_page(
                QueueViewer::Everyone,
                None,
                page_items(limit),
            )),
            Request::History { code, from, limit } => {
                let (code, state, history) = self.history(&code)?;
                Reply::History(pages::history_page(
                    code,
                    state,
                    &history,
                    from,
                    page_items(limit),
                ))
            }
            Request::Status {
                code,
                resume_secret,
            } => match caller.role {
                Role::Customer => Reply::Case(self.broker.customer_view(
                    caller.party,
                    &code,
                    resume_secret.as_deref(),
                )?),
                _ => Reply::Case(self.staff_view(&code)?),
            },
            Request::Cases {
                filter,
                after,
                limit,
            } => {
                let selection = CaseSelection::resolve(&filter, self.now)?;
                let mut cases = self.list(&selection);
                if let Some(after) = after {
                    cases.retain(|case| {
                        (case.created_at, case.code) > (after.created_at, after.code)
                    });
                }
                Reply::Cases(pages::cases_page(cases, page_items(limit)))
            }
            _ => return Err(BrokerError::InvalidInput("not a read".into())),
        })
    }

    /// Replaces the stand-ins (`@N` codes, `@` secrets, small codes in deletes).
    fn resolve(&self, request: Request) -> Request {
        match request {
            Request::Join {
                code,
                customer,
                resume_secret,
            } => {
                let code = self.code(&code);
                let resume_secret = self.secret(&code, resume_secret);
                Request::Join {
                    code,
                    customer,
                    resume_secret,
                }
            }
            Request::Connect {
                code,
                working_queue,
            } => Request::Connect {
                code: self.code(&code),
                working_queue,
            },
            Request::Close {
                code,
                resume_secret,
            } => {
                let code = self.code(&code);
                let resume_secret = self.secret(&code, resume_secret);
                Request::Close {
                    code,
                    resume_secret,
                }
            }
            Request::Status {
                code,
                resume_secret,
            } => {
                let code = self.code(&code);
                let resume_secret = self.secret(&code, resume_secret);
                Request::Status {
                    code,
                    resume_secret,
                }
            }
            Request::Delete(DeleteSelector::Codes(codes)) => {
                Request::Delete(DeleteSelector::Codes(self.codes(&codes)))
            }
            Request::AddMessage {
                code,
                resume_secret,
                text,
            } => {
                let code = self.code(&code);
                let resume_secret = self.secret(&code, resume_secret);
                Request::AddMessage {
                    code,
                    resume_secret,
                    text,
                }
            }
            Request::AttachStart {
                code,
                resume_secret,
                name,
                size,
            } => {
                let code = self.code(&code);
                let resume_secret = self.secret(&code, resume_secret);
                Request::AttachStart {
                    code,
                    resume_secret,
                    name,
                    size,
                }
            }
            Request::Attachments { code } => Request::Attachments {
                code: self.code(&code),
            },
            Request::Attachment { code, id, offset } => Request::Attachment {
                code: self.code(&code),
                id,
                offset,
            },
            other => other,
        }
    }

    /// Codes are random, so a fuzzer cannot guess them: a typed code `@N` stands for the
    /// code of the N-th stored case (modulo their number). Anything else goes through as
    /// typed.
    fn code(&self, typed: &str) -> String {
        match typed.strip_prefix('@').map(str::parse::<usize>) {
            Some(Ok(n)) if !self.store.is_empty() => {
                self.store[n % self.store.len()].code.to_string()
            }
            _ => typed.to_string(),
        }
    }

    /// A session code below 8 in a delete stands for the code of a stored case.
    fn codes(&self, codes: &[SessionCode]) -> Vec<SessionCode> {
        codes
            .iter()
            .map(|code| match code.number() {
                n @ 0..8 if !self.store.is_empty() => {
                    self.store[n as usize % self.store.len()].code
                }
                _ => *code,
            })
            .collect()
    }

    /// A resume secret `@` stands for the secret handed out for the case typed.
    fn secret(&self, typed_code: &str, secret: Option<String>) -> Option<String> {
        match secret.as_deref() {
            Some("@") => {
                let code: SessionCode = typed_code.parse().ok()?;
                self.secrets
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, s)| s.clone())
            }
            _ => secret,
        }
    }

    fn staff_view(&self, typed: &str) -> Result<CaseInfo, BrokerError> {
        let code: SessionCode = typed.parse()?;
        if let Some(case) = self.broker.case(code) {
            return Ok(case.info());
        }
        self.store
            .iter()
            .find(|r| r.code == code)
            .map(|r| r.info(false, None))
            .ok_or(BrokerError::UnknownCode(code))
    }

    fn history(
        &self,
        typed: &str,
    ) -> Result<(SessionCode, CaseState, Vec<sosq::protocol::HistoryEntry>), BrokerError> {
        let code: SessionCode = typed.parse()?;
        if let Some(case) = self.broker.case(code) {
            return Ok((code, case.record.state, case.record.history.clone()));
        }
        self.store
            .iter()
            .find(|r| r.code == code)
            .map(|r| (code, r.state, r.history.clone()))
            .ok_or(BrokerError::UnknownCode(code))
    }

    fn list(&self, selection: &CaseSelection) -> Vec<CaseInfo> {
        self.store
            .iter()
            .filter(|r| selection.matches(r))
            .map(|r| match self.broker.case(r.code) {
                Some(case) => case.info(),
                None => r.info(false, None),
            })
            .collect()
    }

    /// The store's side of the effects; returns the codes of the cases it deleted (and
    /// tells the broker they are free, as the server does after the commit).
    fn apply(&mut self, out: &[Effect]) -> Vec<SessionCode> {
        let mut deleted = Vec::new();
        for effect in out {
            let Effect::Persist(change) = effect else {
                continue;
            };
            match change {
                Persist::Save(record) => {
                    match self.store.iter_mut().find(|r| r.code == record.code) {
                        Some(slot) => *slot = record.clone(),
                        None => self.store.push(record.clone()),
                    }
                }
                Persist::Delete(codes) => self.store.retain(|r| {
                    let doomed = codes.contains(&r.code);
                    if doomed {
                        deleted.push(r.code);
                    }
                    !doomed
                }),
                Persist::DeleteWhere(selection) => self.store.retain(|r| {
                    let doomed = selection.matches(r);
                    if doomed {
                        deleted.push(r.code);
                    }
                    !doomed
                }),
                Persist::Note { code, entry } => {
                    if let Some(record) = self.store.iter_mut().find(|r| r.code == *code) {
                        record.history.push(entry.clone());
                    }
                }
                Persist::Attach { code, attachment } => {
                    let Some(record) = self.store.iter().find(|r| r.code == *code) else {
                        continue;
                    };
                    self.attachments.push((*code, attachment.clone()));
                    let held = self.attachments.iter().filter(|(c, _)| c == code).count();
                    assert_eq!(
                        held as u32, record.attachments,
                        "the record counts every attachment of {code}"
                    );
                    assert!(held as u32 <= self.broker.config().max_attachments_per_case);
                }
                // The audit log is the store's business; the simulation keeps none.
                Persist::Audit(_) => {}
            }
        }
        if !deleted.is_empty() {
            self.attachments.retain(|(code, _)| !deleted.contains(code));
            self.broker.release_codes(&deleted);
        }
        deleted
    }

    /// The broker's invariants, seen through its public API and the store.
    fn check(&self, out: &[Effect]) {
        for effect in out {
            if let Effect::Pair {
                code,
                customer,
                expert,
            } = effect
            {
                let case = self.broker.case(*code).expect("a paired case is open");
                assert_eq!(
                    case.customer,
                    Some(*customer),
                    "paired without its customer"
                );
                assert_eq!(
                    case.expert.as_ref().map(|e| e.party),
                    Some(*expert),
                    "paired without its expert"
                );
            }
        }
        let mut seated = Vec::new();
        let mut open = 0;
        for record in &self.store {
            let Some(case) = self.broker.case(record.code) else {
                assert!(
                    !record.state.is_open(),
                    "{} is open only in the store",
                    record.code
                );
                continue;
            };
            open += 1;
            assert_eq!(&case.record.state, &record.state, "stored state is stale");
            if case.record.state == CaseState::InProgress {
                assert!(case.customer.is_some() && case.expert.is_some());
            }
            seated.extend(case.customer);
            seated.extend(case.expert.as_ref().map(|e| e.party));
        }
        assert_eq!(open, self.broker.open_cases(), "an open case is not stored");
        assert_eq!(self.store.len(), self.broker.codes_held(), "codes held");
        let all = seated.len();
        seated.sort();
        seated.dedup();
        assert_eq!(seated.len(), all, "a party sits in two cases");
        // Online customers are numbered in order; offline ones keep their place unnumbered.
        let queue = self.broker.queue_view();
        let mut position = 0;
        for entry in &queue {
            let case = self.broker.case(entry.code).expect("queued cases are open");
            assert!(case.expert.is_none());
            assert_eq!(entry.online, case.customer.is_some());
            if entry.online {
                position += 1;
                assert_eq!(entry.position, Some(position));
            } else {
                assert_eq!(entry.position, None);
            }
        }
    }
}

/// The dispatcher's own role matrix.
fn allowed(role: Role, request: &Request) -> bool {
    sosqd::server::authorize(role, request).is_ok()
}

fn error_reply(kind: sosq::protocol::ErrorKind, message: &str) -> Reply {
    Reply::Error(sosq::protocol::ErrorReply {
        kind,
        message: message.to_string(),
    })
}

/// The control handler target: the input is a stream of frames; each decoded message is
/// handled by a [`Sim`]. A frame that does not decode ends the stream, as it ends the
/// connection in the daemon.
pub fn control_handler(data: &[u8]) -> Sim {
    let mut sim = Sim::new();
    let mut reader = data;
    loop {
        match block_on(codec::read_frame::<ClientMessage, _>(&mut reader)) {
            Ok(Some(message)) => sim.message(message),
            Ok(None) => break,
            Err(FrameError::Io(e)) => panic!("reading from memory failed: {e}"),
            Err(_) => {
                sim.hang_up();
                break;
            }
        }
    }
    sim.finish();
    sim
}
