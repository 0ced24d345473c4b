//! One in-process party (see `bridge.rs`): connects as its page's customer or expert,
//! then works the case (events, the chat stream, the page's requests) until it ends.

use std::net::SocketAddr;
use std::sync::Arc;

use sosq::protocol::{close_code, Event, Reply, Request, StreamKind};
use sosq::{Client, ClientError, SessionCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::upload::PageUpload;
use super::{Bridges, PageLink, Registered, Start};
use crate::server::Shared;
use crate::web::chat::{self, Backlog, FromBrowser, LineRate, LineSplitter, ToBrowser};

/// Chat lines a browser may send before the chat stream is open, kept until it is.
const EARLY_LINES: usize = 20;

/// One in-process party's state towards its page.
pub(super) struct Party {
    /// Whether this party is the customer (else staff).
    customer: bool,
    page: Option<PageLink>,
    /// When the page went away (the party leaves [`chat::linger`] later).
    away_since: Option<Instant>,
    backlog: Backlog,
    /// What a page that attaches is told first: the case, and the pairing if any.
    attached: Option<ToBrowser>,
    paired: Option<ToBrowser>,
    /// The name of the other party, while paired.
    peer: Option<String>,
    /// The last expert this customer was paired with (to tell a transfer).
    last_expert: Option<String>,
    /// Own name, for the lines this side sends.
    own_name: String,
    /// The customer's resume secret (customers only), for the native client's command.
    secret: Option<String>,
    /// The daemon, whose clock stamps the lines.
    shared: Arc<Shared>,
}

impl Party {
    pub(super) fn new(shared: &Arc<Shared>, start: &Start, link: PageLink) -> Party {
        let (customer, own_name) = match start {
            Start::Open { name, .. } | Start::Resume { name, .. } => (true, name.clone()),
            Start::Chat { user, .. } => (false, user.clone()),
        };
        Party {
            customer,
            page: Some(link),
            away_since: None,
            backlog: Backlog::default(),
            attached: None,
            paired: None,
            peer: None,
            last_expert: None,
            own_name,
            secret: None,
            shared: shared.clone(),
        }
    }

    /// Sends `message` to the page, or keeps it while the page is away (or too slow: it is
    /// let go, and gets the backlog when it comes back).
    fn tell(&mut self, message: ToBrowser) {
        let Some(page) = &self.page else {
            return self.backlog.keep(message);
        };
        if let Err(
            mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message),
        ) = page.to_page.try_send(message)
        {
            self.page = None;
            self.away_since = Some(Instant::now());
            self.backlog.keep(message);
        }
    }

    /// A page takes over: it hears where the case stands, then what it missed.
    fn take_page(&mut self, link: PageLink) {
        if let Some(old) = self.page.take() {
            // Told, not just dropped: a page whose socket merely closed would come back
            // and take the party again, and two tabs would take turns forever.
            let _ = old.to_page.try_send(ToBrowser::Elsewhere {
                text: "this chat continues in another window".into(),
            });
        }
        self.page = Some(link);
        self.away_since = None;
        let mut opening: Vec<ToBrowser> = self.attached.iter().cloned().collect();
        opening.extend(self.paired.iter().cloned());
        opening.extend(self.backlog.drain());
        for message in opening {
            self.tell(message);
        }
    }

    /// Connects and works the case until it ends, the connection is lost, or the page has
    /// been away too long.
    pub(super) async fn run(
        mut self,
        bridges: &Arc<Bridges>,
        shared: &Arc<Shared>,
        start: Start,
        address: SocketAddr,
        id: u64,
    ) {
        let (first, user) = match &start {
            Start::Open {
                name,
                description,
                priority,
                team,
            } => (
                Request::OpenSos {
                    customer: name.clone(),
                    description: description.clone(),
                    priority: *priority,
                    group: team.clone(),
                },
                None,
            ),
            Start::Resume { code, secret, name } => (
                Request::Join {
                    code: code.to_string(),
                    customer: name.clone(),
                    resume_secret: Some(secret.clone()),
                },
                None,
            ),
            Start::Chat { user, code } => (
                Request::Connect {
                    code: code.to_string(),
                    working_queue: false,
                },
                Some(user.as_str()),
            ),
        };
        let connected = async {
            let endpoint = bridges.endpoint(shared).await.map_err(|e| (e, true))?;
            let pass = shared
                .web_pass(user, address)
                .ok_or(("the support service is still starting".to_string(), true))?;
            Client::connect_on_with(&endpoint, Some(pass), Some(first))
                .await
                .map_err(|e| match e {
                    ClientError::Refused(refusal) => (refusal.message, false),
                    other => (format!("cannot reach the support service: {other}"), true),
                })
        }
        .await;
        let (client, case, secret, position) = match connected {
            Ok((
                client,
                Some(Reply::Attached {
                    case,
                    resume_secret,
                    position,
                }),
            )) => (client, case, resume_secret, position),
            Ok((client, other)) => {
                tracing::warn!(reply = ?other, "a web party got an unexpected first reply");
                client.close().await;
                return self.tell_final(ToBrowser::Failed {
                    text: "the support service gave an unexpected answer".into(),
                    retry: false,
                });
            }
            Err((text, retry)) => return self.tell_final(ToBrowser::Failed { text, retry }),
        };
        let code = case.code;
        // A resumed case gets no new secret: the page's own is the case's.
        let secret = secret.or_else(|| match &start {
            Start::Resume { secret, .. } => Some(secret.clone()),
            _ => None,
        });
        self.secret = secret.clone().filter(|_| self.customer);
        let (attach_tx, attach_rx) = mpsc::channel(4);
        bridges.register(
            &start,
            code,
            Registered {
                id,
                secret: secret.clone(),
                attach: attach_tx,
            },
        );
        let typical_wait_seconds = shared.typical_wait(&case.group);
        self.attached = Some(ToBrowser::Attached {
            code: code.to_string(),
            secret: secret.filter(|_| self.customer),
            customer: case.customer.clone(),
            description: case.description.clone(),
            team: case.group.clone(),
            position,
            typical_wait_seconds,
        });
        if let Some(attached) = self.attached.clone() {
            self.tell(attached);
        }
        let linger = chat::linger(client.liveness().idle_timeout);
        self.work(client, code, attach_rx, linger).await;
        bridges.unregister(&start, code, id);
    }

    pub(super) fn tell_final(mut self, message: ToBrowser) {
        self.tell(message);
    }

    /// The party's life on its connection (see the module doc).
    async fn work(
        &mut self,
        mut client: Client,
        code: SessionCode,
        mut attach: mpsc::Receiver<PageLink>,
        linger: std::time::Duration,
    ) {
        let Some(mut events) = client.take_events() else {
            return;
        };
        // The customer accepts the chat the expert opens; anything else is refused: a
        // browser shares no local service.
        let (chats_tx, mut chats) = mpsc::channel(2);
        let acceptor = self
            .customer
            .then(|| tokio::spawn(accept_chats(client.connection().clone(), chats_tx)));
        let mut chat: Option<(quinn::SendStream, quinn::RecvStream)> = None;
        let mut split = LineSplitter::default();
        let mut early: Vec<String> = Vec::new();
        let mut rate = LineRate::new(Instant::now());
        let mut upload = PageUpload::default();
        let mut buf = vec![0u8; 16 * 1024];
        let ending = loop {
            let away_deadline = self.away_since.map(|since| since + linger);
            tokio::select! {
                link = attach.recv() => if let Some(link) = link { self.take_page(link) },
                asked = next_ask(&mut self.page) => match asked {
                    Some(FromBrowser::Say { text }) => {
                        let line = match chat::check_line(&text).and_then(|line| {
                            rate.take(Instant::now()).map(|()| line.to_string())
                        }) {
                            Ok(line) => line,
                            Err(text) => { self.tell(ToBrowser::Refused { text }); continue; }
                        };
                        if self.customer && self.peer.is_none() {
                            // Waiting: the line goes to the case, for the expert to read
                            // in the queue and the case page (as `sosq message`).
                            let added = client.request(Request::AddMessage { code: code.to_string(), resume_secret: None, text: line.clone() }).await;
                            match added {
                                Ok(_) => self.said(line),
                                Err(e) => self.tell(ToBrowser::Refused { text: e.to_string() }),
                            }
                            continue;
                        }
                        match chat.as_mut() {
                            Some((send, _)) => {
                                if send.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                                    self.tell(ToBrowser::Refused { text: "the line could not be sent: the chat was cut; it resumes when the other side is back".into() });
                                    chat = None;
                                    continue;
                                }
                                self.said(line);
                            }
                            None if early.len() < EARLY_LINES => {
                                early.push(line.clone());
                                self.said(line);
                            }
                            None => self.tell(ToBrowser::Refused { text: format!("{EARLY_LINES} lines already wait for the chat to open; wait until it does") }),
                        }
                    }
                    Some(asked @ (FromBrowser::AttachStart { .. } | FromBrowser::AttachPart { .. } | FromBrowser::AttachFinish)) => {
                        if !self.customer {
                            self.tell(ToBrowser::Refused { text: "files are attached by the customer".into() });
                            continue;
                        }
                        if let Some(told) = upload.step(&mut client, code, asked).await {
                            self.tell(told);
                        }
                    }
                    Some(FromBrowser::End) => {
                        if !self.customer {
                            break ToBrowser::Ended { reason: "you left the chat; the case stays as it is".into() };
                        }
                        let closed = client.request(Request::Close { code: code.to_string(), resume_secret: None }).await;
                        if let Err(e) = closed {
                            self.tell(ToBrowser::Refused { text: e.to_string() });
                        }
                        // The session's end arrives as an event.
                    }
                    None => {
                        self.page = None;
                        self.away_since = Some(Instant::now());
                    }
                },
                _ = sleep_until_some(away_deadline) => {
                    tracing::info!(%code, "a web party leaves: its page did not come back");
                    break ToBrowser::Ended { reason: "this page was away too long".into() };
                }
                stream = chats.recv(), if self.customer => {
                    if let Some(stream) = stream {
                        chat = Some(stream);
                        send_early(&mut chat, &mut early).await;
                    }
                }
                read = read_chat(&mut chat, &mut buf) => match read {
                    Some(n) => {
                        let lines = split.push(&buf[..n]);
                        for text in lines { self.heard(text); }
                    }
                    None => {
                        if let Some(rest) = split.finish() { self.heard(rest); }
                        chat = None;
                    }
                },
                event = events.recv() => match event {
                    Some(Event::Paired { peer_name, .. }) => {
                        let takes_over = self.customer
                            && self.last_expert.as_ref().is_some_and(|last| *last != peer_name);
                        if self.customer { self.last_expert = Some(peer_name.clone()); }
                        self.peer = Some(peer_name.clone());
                        self.paired = Some(ToBrowser::Paired { name: peer_name.clone(), takes_over: false });
                        self.tell(ToBrowser::Paired { name: peer_name, takes_over });
                        if !self.customer {
                            match client.open_stream(StreamKind::Chat).await {
                                Ok(stream) => {
                                    chat = Some(stream);
                                    send_early(&mut chat, &mut early).await;
                                }
                                Err(e) => self.tell(ToBrowser::Notice { text: format!("the chat could not be opened: {e}") }),
                            }
                        }
                    }
                    Some(Event::PeerLeft { reason, .. }) => {
                        chat = None;
                        self.peer = None;
                        self.paired = None;
                        self.tell(ToBrowser::PeerLeft { reason });
                    }
                    Some(Event::QueuePosition { position, .. }) => {
                        if let Some(ToBrowser::Attached { position: kept, .. }) = self.attached.as_mut() {
                            *kept = Some(position);
                        }
                        self.tell(ToBrowser::Position { position });
                    }
                    Some(Event::SessionEnded { reason, .. }) => break ToBrowser::Ended { reason },
                    Some(Event::Released { reason, .. }) => self.tell(ToBrowser::Notice { text: reason }),
                    Some(Event::NativeInvite { code, expert, share }) => {
                        let secret = self.secret.clone().unwrap_or_default();
                        let commands = crate::web::invite::commands(&code.to_string(), &self.own_name, &secret, &share);
                        self.tell(ToBrowser::Invite { expert, share, commands });
                    }
                    Some(Event::QueueChanged(_)) => {}
                    None => break closed_by_daemon(&client),
                },
            }
        };
        if let Some(acceptor) = acceptor {
            acceptor.abort();
        }
        if let Some((mut send, _)) = chat {
            let _ = send.finish();
        }
        self.tell(ending);
        client.close().await;
    }

    /// A line this side sent, echoed to its page.
    fn said(&mut self, text: String) {
        let name = self.own_name.clone();
        self.tell(ToBrowser::Line {
            from: "you",
            name,
            at_ms: self.shared.now().0,
            text,
        });
    }

    /// A line the other side sent.
    fn heard(&mut self, text: String) {
        let name = self.peer.clone().unwrap_or_default();
        self.tell(ToBrowser::Line {
            from: "peer",
            name,
            at_ms: self.shared.now().0,
            text,
        });
    }
}

/// What to tell the page when the daemon's connection ended without an event: the case
/// expired or was deleted (over, in the daemon's words), a newer connection took the seat
/// (the native client with the case's secret, or the case resumed from another tab), or
/// the connection was lost or the daemon is restarting (the page tries again).
fn closed_by_daemon(client: &Client) -> ToBrowser {
    let Some(error) = client.connection().close_reason() else {
        return lost();
    };
    let quinn::ConnectionError::ApplicationClosed(close) = &error else {
        return lost();
    };
    match u32::try_from(close.error_code.into_inner()) {
        Ok(close_code::REPLACED) => ToBrowser::Elsewhere {
            text: "your session continues in the sosq program (or another window) that \
                   joined with this case's secret"
                .into(),
        },
        Ok(close_code::EXPIRED | close_code::DELETED) => ToBrowser::Ended {
            reason: sosq::client::describe_connection_error(&error),
        },
        _ => lost(),
    }
}

/// The connection to the daemon was lost: the page tries again.
fn lost() -> ToBrowser {
    ToBrowser::Failed {
        text: "the connection to the support service was lost (is it restarting?); this page \
               tries again"
            .into(),
        retry: true,
    }
}

/// The page's next request; never, while no page is attached.
async fn next_ask(page: &mut Option<PageLink>) -> Option<FromBrowser> {
    match page {
        Some(page) => page.from_page.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the chat stream; `None` at its end (or reset); never, while there is none.
async fn read_chat(
    chat: &mut Option<(quinn::SendStream, quinn::RecvStream)>,
    buf: &mut [u8],
) -> Option<usize> {
    match chat {
        Some((_, recv)) => recv.read(buf).await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends the lines typed before the chat opened.
async fn send_early(
    chat: &mut Option<(quinn::SendStream, quinn::RecvStream)>,
    early: &mut Vec<String>,
) {
    if let Some((send, _)) = chat.as_mut() {
        for line in early.drain(..) {
            if send
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// The customer side: hands each chat stream the expert opens to the party, refuses
/// forwarded connections (a browser shares nothing).
async fn accept_chats(
    connection: quinn::Connection,
    chats: mpsc::Sender<(quinn::SendStream, quinn::RecvStream)>,
) {
    loop {
        match sosq::client::accept_relayed(&connection).await {
            Ok((StreamKind::Chat, send, recv)) => {
                if chats.send((send, recv)).await.is_err() {
                    return;
                }
            }
            Ok((_, mut send, mut recv)) => {
                let _ = send.reset(close_code::NOTHING_SHARED.into());
                let _ = recv.stop(close_code::NOTHING_SHARED.into());
            }
            Err(ClientError::Disconnected(_)) => return,
            Err(_) => continue,
        }
    }
}
