//! The async client library: connect to sosqd, say hello, send requests, receive events,
//! and open or accept the relayed session streams.
//!
//! A background task reads the control stream and sorts what arrives into replies (answers
//! to our requests, in order) and events (pushed by the server), so a caller can wait for an
//! event while the connection keeps being read. A cluster node's redirect to the case's home
//! node is followed here, for every request (see [`redirect`]).

mod redirect;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::codec::{self, FrameError};
pub use crate::endpoint::{connect_quic, SharedEndpoint};
use crate::protocol::{
    ClientMessage, ErrorReply, Event, Reply, Request, Role, ServerMessage, StreamKind,
    PROTOCOL_VERSION,
};
use redirect::Dial;
pub use redirect::{Hop, RedirectNotice, MAX_REDIRECTS};

/// How long a client waits for the daemon to answer a new connection before it says there
/// is no answer (every address the name resolves to is tried within it).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `host:port` of the daemon.
    pub server: String,
    /// The server certificate's SHA-256 fingerprint to pin (the default trust).
    pub fingerprint: String,
    /// An expert's or admin's token; none connects as a customer.
    pub token: Option<String>,
    /// Trust the server through this CA bundle (PEM) instead of a pinned fingerprint, for an
    /// operator's own certificate; the server name is then checked against `server`'s host.
    pub ca: Option<std::path::PathBuf>,
}

/// Everything that can go wrong talking to sosqd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The options are unusable.
    #[error("{0}")]
    Options(String),
    /// The server address did not resolve.
    #[error("cannot resolve server address {server:?}: {reason}")]
    Resolve {
        /// The address given.
        server: String,
        /// Why it failed.
        reason: String,
    },
    /// The server's certificate is not the pinned one.
    #[error("server certificate fingerprint {actual} does not match the pinned {expected}; check --fingerprint / SOSQ_FINGERPRINT against `sosqd fingerprint`")]
    FingerprintMismatch {
        /// What the server presented.
        actual: String,
        /// What we pinned.
        expected: String,
    },
    /// Nothing answered at any address of the server within [`CONNECT_TIMEOUT`].
    #[error(
        "no answer from sosqd at {server} ({tried}) over UDP: is it running, is the port open?"
    )]
    NoAnswer {
        /// The address given.
        server: String,
        /// The addresses tried, comma-separated.
        tried: String,
    },
    /// The QUIC connection could not be made or was lost.
    #[error("connection to {server} failed: {reason}")]
    Connect {
        /// The address.
        server: String,
        /// Why.
        reason: String,
    },
    /// The connection ended.
    #[error("connection closed: {0}")]
    Disconnected(String),
    /// The daemon closed the connection on purpose, saying why with a close code (see
    /// [`crate::protocol::close_code`]): the case expired or was deleted, a newer
    /// connection took over, the daemon shuts down.
    #[error("connection closed: {reason}")]
    Ended {
        /// The QUIC application close code.
        close_code: u32,
        /// The daemon's words.
        reason: String,
    },
    /// The server refused the request.
    #[error("{0}")]
    Refused(ErrorReply),
    /// The server answered with something that does not fit the request.
    #[error("unexpected answer from server: {0}")]
    Unexpected(String),
    /// Cluster nodes kept redirecting one request: more than [`MAX_REDIRECTS`] in a row.
    #[error("sosqd redirected this request more than {MAX_REDIRECTS} times in a row ({path}): the nodes disagree about where the case lives; try again in a moment, and tell the operator if it persists")]
    TooManyRedirects {
        /// The nodes the redirects named, in order.
        path: String,
    },
    /// The user pressed Ctrl-C.
    #[error("interrupted: you left the session")]
    Interrupted,
    /// Something on this machine failed: a local port to listen on, stdout to write to.
    #[error("{0}")]
    Local(String),
    /// A frame could not be written or read.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ClientError {
    /// The error for a connection that ended for `reason`: [`ClientError::Ended`] when the
    /// daemon closed it with a code, else [`ClientError::Disconnected`].
    pub fn closed(reason: &quinn::ConnectionError) -> ClientError {
        match reason {
            quinn::ConnectionError::ApplicationClosed(close) => ClientError::Ended {
                close_code: u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX),
                reason: describe_close(reason),
            },
            other => ClientError::Disconnected(describe_close(other)),
        }
    }

    /// The stable machine code `sosq --json` prints for this failure (`"code"` of its
    /// error line): a refusal's comes from its [`crate::protocol::ErrorKind`], a failure
    /// on this side has its own. A script's contract: codes are never renamed.
    pub fn code(&self) -> &'static str {
        use crate::protocol::close_code;
        match self {
            ClientError::Options(_) => "bad_option",
            ClientError::Resolve { .. } => "cannot_resolve",
            ClientError::FingerprintMismatch { .. } => "fingerprint_mismatch",
            ClientError::NoAnswer { .. } => "no_answer",
            ClientError::Connect { .. } => "connect_failed",
            ClientError::Disconnected(_) => "connection_lost",
            ClientError::Ended { close_code, .. } => match *close_code {
                close_code::EXPIRED => "case_expired",
                close_code::DELETED => "case_deleted",
                close_code::UNAUTHENTICATED => "unauthenticated",
                close_code::SHUTDOWN => "server_shutting_down",
                close_code::PROTOCOL_ERROR => "protocol_error",
                close_code::REPLACED => "replaced",
                _ => "connection_lost",
            },
            ClientError::Refused(refusal) => refusal.kind.code(),
            ClientError::Unexpected(_) => "unexpected_reply",
            ClientError::TooManyRedirects { .. } => "too_many_redirects",
            ClientError::Interrupted => "interrupted",
            ClientError::Local(_) => "local_failure",
            ClientError::Frame(FrameError::TooLong { .. }) => "too_large",
            ClientError::Frame(FrameError::Malformed(_)) => "unexpected_reply",
            ClientError::Frame(_) => "connection_lost",
        }
    }
}

/// How a new connection introduces itself.
struct Greeting<'a> {
    server: &'a str,
    token: Option<String>,
    /// Whether the endpoint is the client's alone.
    owns_endpoint: bool,
    /// A request sent right behind the hello.
    first: Option<Request>,
    /// How to open another connection like this one (to follow a redirect).
    dial: Dial,
}

/// A connected, greeted sosq party.
pub struct Client {
    endpoint: quinn::Endpoint,
    /// Whether the endpoint is this client's alone (so closing waits for it to go idle).
    owns_endpoint: bool,
    connection: quinn::Connection,
    control: quinn::SendStream,
    replies: mpsc::UnboundedReceiver<Reply>,
    events: Option<mpsc::UnboundedReceiver<Event>>,
    role: Role,
    name: String,
    /// The daemon's liveness settings, from its welcome.
    liveness: Liveness,
    /// How to open another connection with the same trust and credentials.
    dial: Dial,
    /// Who hears of each redirect followed.
    notice: RedirectNotice,
    /// Redirects followed so far (each one a new connection).
    redirects: u32,
}

/// How the daemon keeps connections alive, as it said at hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How often a quiet connection is pinged.
    pub keep_alive: Duration,
    /// After how long without a word a connection is dropped (both sides): how soon a
    /// vanished party is noticed.
    pub idle_timeout: Duration,
}

impl Client {
    /// Connects, pins the certificate, and says hello; the role comes from the token.
    pub async fn connect(options: &ConnectOptions) -> Result<Client, ClientError> {
        let (client, _) = Client::connect_with(options, None).await?;
        Ok(client)
    }

    /// Connects like [`Client::connect`] and sends `first` right behind the hello, without
    /// waiting for the welcome: a customer on a slow network gets its case a round trip
    /// sooner. Returns the client and the reply to `first` (a refusal is an error); a
    /// redirect is followed (see [`Client::follow`]) without telling anyone.
    pub async fn connect_with(
        options: &ConnectOptions,
        first: Option<Request>,
    ) -> Result<(Client, Option<Reply>), ClientError> {
        Client::connect_with_notice(options, first, RedirectNotice::default()).await
    }

    /// [`Client::connect_with`], telling `notice` of each redirect followed, then and later.
    pub async fn connect_with_notice(
        options: &ConnectOptions,
        first: Option<Request>,
        notice: RedirectNotice,
    ) -> Result<(Client, Option<Reply>), ClientError> {
        let (endpoint, connection) = connect_quic(options).await?;
        let greeting = Greeting {
            server: &options.server,
            token: options.token.clone(),
            owns_endpoint: true,
            first,
            dial: Dial::Own(options.clone()),
        };
        let (client, reply) = Client::greet(endpoint, connection, greeting).await?;
        client.answer_first(reply, notice).await
    }

    /// Connects through an endpoint shared with other parties (see [`SharedEndpoint`]) and
    /// says hello with `token` (none: a customer). For load tools that hold thousands of
    /// parties in one process.
    pub async fn connect_on(
        shared: &SharedEndpoint,
        token: Option<String>,
    ) -> Result<Client, ClientError> {
        let (client, _) = Client::connect_on_with(shared, token, None).await?;
        Ok(client)
    }

    /// [`Client::connect_on`] with `first` sent right behind the hello, as
    /// [`Client::connect_with`] does.
    pub async fn connect_on_with(
        shared: &SharedEndpoint,
        token: Option<String>,
        first: Option<Request>,
    ) -> Result<(Client, Option<Reply>), ClientError> {
        let connection = shared.connect().await?;
        let greeting = Greeting {
            server: &shared.server,
            token: token.clone(),
            owns_endpoint: false,
            first,
            dial: Dial::Shared {
                endpoint: shared.clone(),
                token,
            },
        };
        let (client, reply) = Client::greet(shared.endpoint.clone(), connection, greeting).await?;
        client.answer_first(reply, RedirectNotice::default()).await
    }

    /// The answer to the request sent with the hello: its reply, or where a redirect led.
    async fn answer_first(
        mut self,
        reply: Option<Reply>,
        notice: RedirectNotice,
    ) -> Result<(Client, Option<Reply>), ClientError> {
        self.notice = notice;
        let Some(Reply::Redirect(redirect)) = reply else {
            return Ok((self, reply));
        };
        match self.follow(redirect).await {
            Ok(reply) => Ok((self, Some(reply))),
            Err(e) => {
                self.close().await;
                Err(e)
            }
        }
    }

    async fn greet(
        endpoint: quinn::Endpoint,
        connection: quinn::Connection,
        greeting: Greeting<'_>,
    ) -> Result<(Client, Option<Reply>), ClientError> {
        let Greeting {
            server,
            token,
            owns_endpoint,
            first,
            dial,
        } = greeting;
        let connect_error = |reason: String| ClientError::Connect {
            server: server.to_string(),
            reason,
        };
        let (control, recv) = connection
            .open_bi()
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(read_control(recv, reply_tx, event_tx));
        let mut client = Client {
            endpoint,
            owns_endpoint,
            connection,
            control,
            replies,
            events: Some(events),
            role: Role::Customer,
            name: String::new(),
            liveness: Liveness {
                keep_alive: Duration::ZERO,
                idle_timeout: Duration::ZERO,
            },
            dial,
            notice: RedirectNotice::default(),
            redirects: 0,
        };
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            token,
        };
        // The server reads one frame at a time, so the request waits behind the hello and
        // is never seen if the hello is refused.
        let mut flight = codec::encode(&hello)?;
        let sent_first = first.is_some();
        if let Some(request) = first {
            flight.extend_from_slice(&codec::encode(&ClientMessage::Request(request))?);
        }
        match client.hello(&flight, sent_first).await {
            Ok(first_reply) => Ok((client, first_reply)),
            Err(e) => {
                // Say goodbye even when refused, so the daemon frees the connection at once.
                client.close().await;
                Err(e)
            }
        }
    }

    /// Sends `flight` (the hello, and the first request when `sent_first`), takes the
    /// welcome into this client, and returns the first request's reply.
    ///
    /// # Errors
    /// The connection was lost, the daemon refused the hello or the request's frame, or it
    /// answered with something other than a welcome.
    async fn hello(
        &mut self,
        flight: &[u8],
        sent_first: bool,
    ) -> Result<Option<Reply>, ClientError> {
        if let Err(e) = self.control.write_all(flight).await {
            return Err(self.lost(e.to_string()));
        }
        match self.next_reply().await? {
            Reply::Welcome {
                role,
                name,
                keep_alive_ms,
                idle_timeout_ms,
                protocol,
                ..
            } => {
                if protocol != PROTOCOL_VERSION {
                    return Err(ClientError::Refused(ErrorReply {
                        kind: crate::protocol::ErrorKind::UnsupportedVersion,
                        message: crate::protocol::upgrade_advice(protocol, PROTOCOL_VERSION),
                    }));
                }
                self.role = role;
                self.name = name;
                self.liveness = Liveness {
                    keep_alive: Duration::from_millis(keep_alive_ms),
                    idle_timeout: Duration::from_millis(idle_timeout_ms),
                };
            }
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        if sent_first {
            Ok(Some(self.next_reply().await?))
        } else {
            Ok(None)
        }
    }

    /// The role the server gave this connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The authenticated user's name (empty for customers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// The client endpoint the connection runs on (a program that must leave at once can
    /// close it, which closes every connection on it, and wait for it to go idle).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The daemon's liveness settings, as it told at hello.
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Sends one request and waits for its reply; a refusal becomes [`ClientError::Refused`].
    /// A redirect is followed (see [`Client::follow`]): the reply is the home node's, and
    /// this client is on the home node's connection from then on.
    pub async fn request(&mut self, request: Request) -> Result<Reply, ClientError> {
        match self.exchange(&ClientMessage::Request(request)).await? {
            Reply::Redirect(redirect) => self.follow(redirect).await,
            reply => Ok(reply),
        }
    }

    async fn exchange(&mut self, message: &ClientMessage) -> Result<Reply, ClientError> {
        if let Err(e) = codec::write_frame(&mut self.control, message).await {
            // A request too long for a frame is this side's doing, not a lost connection.
            return Err(match e {
                FrameError::TooLong { .. } => ClientError::Frame(e),
                e => self.lost(e.to_string()),
            });
        }
        self.next_reply().await
    }

    /// The next reply on the control stream; a refusal becomes [`ClientError::Refused`].
    async fn next_reply(&mut self) -> Result<Reply, ClientError> {
        match self.replies.recv().await {
            Some(Reply::Error(refusal)) => Err(ClientError::Refused(refusal)),
            Some(reply) => Ok(reply),
            None => Err(self.lost("the server closed the control stream".into())),
        }
    }

    fn lost(&self, fallback: String) -> ClientError {
        match self.connection.close_reason() {
            Some(reason) => ClientError::closed(&reason),
            None => ClientError::Disconnected(fallback),
        }
    }

    /// Takes the stream of server events; call once.
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.events.take()
    }

    /// Opens a relayed stream to the paired party, announcing its kind.
    pub async fn open_stream(
        &self,
        kind: StreamKind,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        open_relayed(&self.connection, kind).await
    }

    /// Waits for the paired party to open a relayed stream; returns it with its kind.
    pub async fn accept_stream(
        &self,
    ) -> Result<(StreamKind, quinn::SendStream, quinn::RecvStream), ClientError> {
        accept_relayed(&self.connection).await
    }

    /// Closes the connection politely (code `DONE`: the party left on purpose, after what
    /// it sent was delivered) and waits (briefly) for the server to hear it.
    pub async fn close(mut self) {
        let _ = self.control.finish();
        self.connection.close(0u32.into(), b"bye");
        if self.owns_endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        }
    }
}

/// Opens a relayed stream of `kind` on a party's connection (see [`Client::open_stream`]);
/// for tasks that hold a clone of the connection rather than the client.
pub async fn open_relayed(
    connection: &quinn::Connection,
    kind: StreamKind,
) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| ClientError::Disconnected(describe_connection_error(&e)))?;
    send.write_all(&[kind as u8])
        .await
        .map_err(|e| ClientError::Disconnected(e.to_string()))?;
    Ok((send, recv))
}

/// Accepts the next relayed stream on a party's connection and reads its kind (see
/// [`Client::accept_stream`]). A stream of an unknown kind is stopped and reported.
pub async fn accept_relayed(
    connection: &quinn::Connection,
) -> Result<(StreamKind, quinn::SendStream, quinn::RecvStream), ClientError> {
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| ClientError::Disconnected(describe_connection_error(&e)))?;
    let mut kind = [0u8; 1];
    // A stream that ends before its kind byte is one stream's trouble, not the connection's.
    recv.read_exact(&mut kind).await.map_err(|e| {
        ClientError::Unexpected(format!("a relayed stream ended before its kind: {e}"))
    })?;
    match StreamKind::from_byte(kind[0]) {
        Some(known) => Ok((known, send, recv)),
        None => {
            let code = crate::protocol::close_code::PROTOCOL_ERROR;
            let _ = send.reset(code.into());
            let _ = recv.stop(code.into());
            Err(ClientError::Unexpected(format!(
                "stream of unknown kind {}",
                kind[0]
            )))
        }
    }
}

/// Reads server messages until the stream ends, routing replies and events.
async fn read_control(
    mut recv: quinn::RecvStream,
    replies: mpsc::UnboundedSender<Reply>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Ok(Some(message)) = codec::read_frame::<ServerMessage, _>(&mut recv).await {
        let delivered = match message {
            ServerMessage::Reply(reply) => replies.send(reply).is_ok(),
            // Nobody listening for events is fine: the caller only wanted replies.
            ServerMessage::Event(event) => {
                let _ = events.send(event);
                true
            }
        };
        if !delivered {
            break;
        }
    }
}

/// A human sentence for why a connection ended.
pub fn describe_connection_error(error: &quinn::ConnectionError) -> String {
    describe_close(error)
}

fn describe_close(reason: &quinn::ConnectionError) -> String {
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let text = String::from_utf8_lossy(&close.reason);
            if text.is_empty() {
                format!("closed by server (code {})", close.error_code)
            } else {
                text.into_owned()
            }
        }
        quinn::ConnectionError::ConnectionClosed(close) => {
            format!("closed by server: {close}")
        }
        quinn::ConnectionError::TimedOut => "the server stopped answering (timed out)".into(),
        other => other.to_string(),
    }
}
