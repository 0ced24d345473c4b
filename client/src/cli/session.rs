//! "Runs the session": once paired, stdin goes to the other party and what it sends comes
//! out on stdout, byte for byte, like `nc`; forwarded TCP connections run beside it (see
//! [`super::forwards`]). EOF on stdin half-closes our side; once the peer has finished its
//! side too, the command ends (a half-close never cuts off what the other side still has
//! to say). With forwarding, the session lasts until Ctrl-C or the case ends.
//!
//! A session outlives its connection: when the connection to sosqd is lost (a network that
//! drops, a daemon restart) the command reconnects by itself with back-off and comes back
//! to its case ([`Plan::attach`]: a customer with its resume secret, an expert by code),
//! saying so in one line each way, and gives up only after [`Plan::reconnect_for`]. A
//! pulling expert whose customer vanishes is let go by the daemon and takes the next case.
//! In a cluster, a node may send the party on to the case's home node at any point (the
//! first request, the next pull, or late, after `Waiting`): the client follows, and the
//! session goes on over the new connection.
//!
//! How it ends decides what happens to what is still on the way: the case closed (or
//! deleted, expired) cuts every stream at once; Ctrl-C (or SIGTERM, SIGHUP) lets what this
//! side already took in reach the other side first, for at most [`Plan::drain_for`], then
//! leaves; the case stays open and the command says how to come back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sosq::protocol::{Event, Request, StreamKind};
use sosq::{Client, ClientError, ConnectOptions, SessionCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::chat::{write_stdout, Chat};
use super::endpoints;
use super::events::{report, report_ended, report_paired};
use super::forwards::{self, Forwards, Route, Tally};
use super::output::Output;
use super::reconnect::{final_close, reconnect};
use super::signals::{self, Signal};

mod moves;

use moves::{follow_late, take_next};

/// Which side opens the chat stream once paired: the expert does, the customer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opens the stream.
    Expert,
    /// Accepts the stream.
    Customer,
}

/// What a session forwards besides the chat.
#[derive(Default)]
pub struct Forwarding {
    /// Customer: the one local TCP service the expert may reach.
    pub share: Option<SocketAddr>,
    /// Expert: the bound local port whose connections are forwarded.
    pub listener: Option<TcpListener>,
}

impl Forwarding {
    fn is_active(&self) -> bool {
        self.share.is_some() || self.listener.is_some()
    }
}

/// How this party comes back to its case on a new connection.
#[derive(Debug, Clone)]
pub enum Attach {
    /// A customer, with its resume secret.
    Customer {
        /// The case.
        code: SessionCode,
        /// Its name.
        name: String,
        /// The case's resume secret.
        secret: Option<String>,
    },
    /// An expert in a case, by its code.
    Case {
        /// The case.
        code: SessionCode,
        /// Whether it came from the queue (`pull`): let go if the customer vanishes.
        working_queue: bool,
    },
    /// An expert between cases, pulling the next one (`--wait`: waiting for one).
    Pull {
        /// Wait for a customer if nobody is waiting.
        wait: bool,
    },
}

impl Attach {
    fn side(&self) -> Side {
        match self {
            Attach::Customer { .. } => Side::Customer,
            _ => Side::Expert,
        }
    }

    /// The request that takes this party back to where it was.
    pub fn request(&self) -> Request {
        match self {
            Attach::Customer { code, name, secret } => Request::Join {
                code: code.to_string(),
                customer: name.clone(),
                resume_secret: secret.clone(),
            },
            Attach::Case {
                code,
                working_queue,
            } => Request::Connect {
                code: code.to_string(),
                working_queue: *working_queue,
            },
            Attach::Pull { wait } => Request::Pull { wait: *wait },
        }
    }

    /// The case, once the party has one.
    pub fn code(&self) -> Option<SessionCode> {
        match self {
            Attach::Customer { code, .. } | Attach::Case { code, .. } => Some(*code),
            Attach::Pull { .. } => None,
        }
    }
}

/// Everything a session needs to keep going across connections.
pub struct Plan {
    /// Where sosqd is.
    pub options: ConnectOptions,
    /// How to come back to the case.
    pub attach: Attach,
    /// How long to keep reconnecting before giving up.
    pub reconnect_for: Duration,
    /// How long leaving on purpose waits for what was sent to arrive.
    pub drain_for: Duration,
    /// An expert who asked to wait for customers (`pull --wait`): when let go, it waits
    /// for the next one instead of ending on an empty queue.
    pub pull_waits: bool,
}

/// How a session ended well.
pub enum Outcome {
    /// Both sides finished, or the case ended.
    Finished,
    /// The party left a case that stays open: on a signal (`Some`), or both sides finished
    /// their conversation (`None`); `cut` forwarded connections had to be cut.
    Left {
        /// What asked us to leave, if anything did.
        signal: Option<Signal>,
        /// Forwarded connections that had not finished delivering in time.
        cut: usize,
        /// Where the session was.
        attach: Attach,
    },
    /// A newer connection took over the case (the same customer or expert resumed it
    /// elsewhere); this one must not come back.
    Replaced {
        /// The daemon's words.
        reason: String,
        /// The case.
        code: Option<SessionCode>,
    },
}

/// What ended the work on one connection.
enum Step {
    /// The case ended (closed, deleted, expired).
    Finished,
    /// Both sides finished their conversation; the case stays open.
    Talked,
    /// Nothing is left to do (a pull that found nobody after its customer left): what
    /// is still being delivered finishes first.
    Done,
    /// The user asked to leave; the chat stream, if one is open, to finish first.
    Leave(Signal, Option<quinn::SendStream>),
    /// The connection is gone.
    Lost(quinn::ConnectionError),
    /// A cluster node sent the party to the case's home node, and the client is there now:
    /// the session goes on over the new connection.
    Moved,
    /// A redirect to the case's home node could not be followed (unreachable, its ticket
    /// refused): start again from the servers given, as after a lost connection.
    Detour(ClientError),
    /// The connection failed in a way reconnecting cannot fix.
    Failed(ClientError),
}

/// Runs the session on `client` until it ends, reconnecting when the connection is lost.
pub async fn run(
    mut client: Client,
    mut plan: Plan,
    out: Output,
    forwarding: Forwarding,
) -> Result<Outcome, ClientError> {
    let keep_open = forwarding.is_active();
    let share = forwarding.share;
    let tally = Arc::new(Tally::default());
    let (route, routes) = watch::channel::<Route>(None);
    let _listener = forwarding.listener.map(|listener| {
        AbortOnDrop(tokio::spawn(forwards::forward_connections(
            listener,
            routes,
            tally.clone(),
            out,
        )))
    });
    let mut chat = Chat::new(keep_open);
    let interrupted = signals::interrupted();
    tokio::pin!(interrupted);
    loop {
        let forwards = Forwards::new(tally.clone());
        let link = Link {
            forwards: &forwards,
            route: &route,
            share,
            out,
        };
        let step = on_connection(&mut client, &mut plan, &link, &mut chat, &mut interrupted).await;
        route.send_replace(None);
        match step {
            Step::Finished => {
                forwards.cut().await;
                client.close().await;
                return Ok(Outcome::Finished);
            }
            Step::Talked => {
                client.close().await;
                return Ok(Outcome::Left {
                    signal: None,
                    cut: 0,
                    attach: plan.attach,
                });
            }
            Step::Done => {
                forwards.finish(plan.drain_for).await;
                client.close().await;
                return Ok(Outcome::Finished);
            }
            Step::Leave(signal, send) => {
                let cut = leave(&forwards, send, plan.drain_for, plan.attach.code(), &out).await;
                client.close().await;
                return Ok(Outcome::Left {
                    signal: Some(signal),
                    cut,
                    attach: plan.attach,
                });
            }
            Step::Failed(e) => {
                // Forwards still delivering what a departed customer sent finish first.
                forwards.finish(plan.drain_for).await;
                client.close().await;
                return Err(e);
            }
            Step::Moved => {
                // The old connection is closed, and its streams with it.
                forwards.cut().await;
                endpoints::remember(client.endpoint());
            }
            Step::Lost(error) => {
                forwards.cut().await;
                if let Some(end) = final_close(&error, plan.attach.code()) {
                    return end;
                }
                let reason = sosq::client::describe_connection_error(&error);
                match reconnect(&mut plan, &out, &reason, &mut interrupted).await {
                    Ok(Some(next)) => client = next,
                    Ok(None) => return Ok(interrupted_outcome(plan)),
                    Err(e) => return Err(e),
                }
            }
            Step::Detour(error) => {
                forwards.cut().await;
                client.close().await;
                let reason = format!("could not reach the case's home node: {error}");
                match reconnect(&mut plan, &out, &reason, &mut interrupted).await {
                    Ok(Some(next)) => client = next,
                    Ok(None) => return Ok(interrupted_outcome(plan)),
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// The user left while the session was reconnecting.
fn interrupted_outcome(plan: Plan) -> Outcome {
    Outcome::Left {
        signal: Some(Signal::Interrupt),
        cut: 0,
        attach: plan.attach,
    }
}

/// What one connection's work needs besides the client.
struct Link<'a> {
    forwards: &'a Forwards,
    route: &'a watch::Sender<Route>,
    share: Option<SocketAddr>,
    out: Output,
}

/// Works the session on one connection: waits to be paired, runs the chat, and is paired
/// again after the peer comes back, until something ends this connection's part.
async fn on_connection(
    client: &mut Client,
    plan: &mut Plan,
    link: &Link<'_>,
    chat: &mut Chat,
    interrupted: &mut std::pin::Pin<&mut impl std::future::Future<Output = Signal>>,
) -> Step {
    let out = link.out;
    let Some(mut events) = client.take_events() else {
        return Step::Failed(ClientError::Unexpected("events already taken".into()));
    };
    // The customer accepts every stream the expert opens: chats come here, forwarded
    // connections go to the shared service (or are refused).
    let (chats, mut chat_streams) = mpsc::channel(4);
    let customer_case = plan
        .attach
        .code()
        .filter(|_| plan.attach.side() == Side::Customer);
    let _acceptor = customer_case.map(|code| {
        AbortOnDrop(tokio::spawn(forwards::accept_streams(
            code,
            client.connection().clone(),
            link.share,
            chats,
            link.forwards.tally.clone(),
            link.forwards.leave.subscribe(),
            out,
        )))
    });
    // A new pairing announced while the old one's streams were still open (the peer came
    // back on a new connection): handled as soon as the old chat is left.
    let mut repaired: Option<Event> = None;
    loop {
        // Wait to be paired.
        loop {
            let event = match repaired.take() {
                Some(event) => Some(event),
                None => tokio::select! {
                    event = events.recv() => event,
                    reply = client.late_reply() => return follow_late(client, plan, &out, reply).await,
                    signal = &mut *interrupted => return Step::Leave(signal, None),
                },
            };
            match event {
                Some(Event::Paired {
                    code,
                    peer_role,
                    peer_name,
                }) => {
                    if let Attach::Pull { .. } = plan.attach {
                        plan.attach = Attach::Case {
                            code,
                            working_queue: true,
                        };
                    }
                    // Local connections go through from here on; only then say so, so
                    // one made right after the line is never refused.
                    if plan.attach.side() == Side::Expert {
                        let route = (
                            code,
                            client.connection().clone(),
                            link.forwards.leave.subscribe(),
                        );
                        link.route.send_replace(Some(route));
                    }
                    report_paired(&out, code, peer_role, &peer_name, link.share);
                    break;
                }
                Some(Event::Released { code, reason }) => {
                    if let Err(step) = take_next(client, plan, &out, code, &reason).await {
                        return step;
                    }
                }
                Some(Event::SessionEnded { code, reason }) => {
                    report_ended(&out, code, &reason);
                    return Step::Finished;
                }
                Some(other) => report(&out, other),
                None => return lost(client),
            }
        }
        // Get the chat stream.
        let stream = match plan.attach.side() {
            Side::Expert => match client.open_stream(StreamKind::Chat).await {
                Ok(stream) => Some(stream),
                Err(_) => continue,
            },
            Side::Customer => tokio::select! {
                accepted = chat_streams.recv() => match accepted {
                    Some(stream) => Some(stream),
                    None => return lost(client),
                },
                event = events.recv() => match event {
                    Some(Event::SessionEnded { code, reason }) => {
                        report_ended(&out, code, &reason);
                        return Step::Finished;
                    }
                    Some(event @ Event::Paired { .. }) => { repaired = Some(event); None }
                    Some(other) => { report(&out, other); None }
                    None => return lost(client),
                },
                signal = &mut *interrupted => return Step::Leave(signal, None),
            },
        };
        let Some((mut send, mut recv)) = stream else {
            continue;
        };
        if chat.stdin_done {
            let _ = send.finish();
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdout = tokio::io::stdout();
        let mut peer_done = false;
        // The peer left, but what it sent before leaving (its end-of-stream included) may
        // still be on the way; the broker ends the stream either way, so read on until then.
        let mut peer_left = false;
        // Copy until both sides have finished (done) or the peer leaves (wait for it again).
        loop {
            tokio::select! {
                chunk = chat.stdin.recv(), if !chat.stdin_done => match chunk {
                    Some(bytes) => {
                        if send.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        chat.stdin_done = true;
                        let _ = send.finish();
                        if peer_done && !chat.keep_open {
                            delivered(&mut send, Duration::from_secs(2)).await;
                            return Step::Talked;
                        }
                    }
                },
                read = recv.read(&mut buf), if !peer_done => match read {
                    Ok(Some(n)) => {
                        if let Err(e) = write_stdout(&mut stdout, &buf[..n]).await {
                            return Step::Failed(e);
                        }
                    }
                    Ok(None) => {
                        peer_done = true;
                        out.status("peer_finished", "the other side has finished sending", json!({"code": plan.attach.code()}));
                        if chat.stdin_done && !chat.keep_open {
                            delivered(&mut send, Duration::from_secs(2)).await;
                            return Step::Talked;
                        }
                        if peer_left {
                            break;
                        }
                    }
                    // Reset or connection trouble: the control stream says what happened.
                    Err(_) => break,
                },
                event = events.recv() => match event {
                    Some(Event::SessionEnded { code, reason }) => {
                        report_ended(&out, code, &reason);
                        return Step::Finished;
                    }
                    Some(Event::Released { code, reason }) => {
                        if let Err(step) = take_next(client, plan, &out, code, &reason).await {
                            return step;
                        }
                        break;
                    }
                    Some(event @ Event::Paired { .. }) => {
                        repaired = Some(event);
                        break;
                    }
                    Some(event) => {
                        let left = matches!(event, Event::PeerLeft { .. });
                        report(&out, event);
                        if left && peer_done {
                            break;
                        }
                        peer_left |= left;
                    }
                    None => return lost(client),
                },
                reply = client.late_reply() => return follow_late(client, plan, &out, reply).await,
                signal = &mut *interrupted => return Step::Leave(signal, Some(send)),
            }
        }
        // This pairing is over; new local connections wait for the next one.
        link.route.send_replace(None);
    }
}

/// Leaving on purpose: what this side already took in reaches the other side first (for at
/// most `within`; a second Ctrl-C leaves at once), then the connection closes with `DONE`,
/// so the broker drains what it holds instead of cutting it. Returns how many forwarded
/// connections had to be cut.
async fn leave(
    forwards: &Forwards,
    send: Option<quinn::SendStream>,
    within: Duration,
    code: Option<SessionCode>,
    out: &Output,
) -> usize {
    let open = forwards.tally.open_now();
    if open > 0 {
        out.status(
            "draining",
            format!(
                "leaving: letting {open} forwarded connection(s) deliver what they are still sending (at most {}; Ctrl-C again to leave at once)",
                humantime::format_duration(within)
            ),
            json!({"code": code, "open": open, "within_ms": within.as_millis() as u64}),
        );
    }
    let deadline = tokio::time::Instant::now() + within;
    let cut = forwards.drain(within, hurry()).await;
    if let Some(mut send) = send {
        let _ = send.finish();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        delivered(&mut send, left.max(Duration::from_millis(200))).await;
    }
    cut
}

/// A second Ctrl-C (or SIGTERM, SIGHUP) while leaving.
async fn hurry() {
    let _ = signals::interrupted().await;
}

/// Waits (at most `within`) until the broker has all we sent on `send`, end included, so
/// closing the connection right after cannot discard it.
async fn delivered(send: &mut quinn::SendStream, within: Duration) {
    let _ = tokio::time::timeout(within, send.stopped()).await;
}

/// Aborts a background task when the session that started it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lost(client: &Client) -> Step {
    match client.connection().close_reason() {
        Some(reason) => Step::Lost(reason),
        None => Step::Lost(quinn::ConnectionError::LocallyClosed),
    }
}
