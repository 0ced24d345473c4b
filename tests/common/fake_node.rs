//! A fake cluster node for client tests: a QUIC endpoint on loopback that speaks the sosq
//! protocol through sosq's own codec, answers each request as its test scripts it, and
//! records what every connection sent (its hello's token, its requests, the bytes of the
//! relayed streams it opened) and how each connection ended. No daemon and no store: the
//! client's side of a redirect is tested on its own, before any node can redirect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sosq::code::SessionCode;
use sosq::codec;
use sosq::protocol::{
    CaseInfo, CaseOrigin, CaseState, ClientMessage, Event, Priority, Redirect, Reply, Request,
    Role, ServerMessage, Timestamp, ALPN, PROTOCOL_VERSION,
};

use super::PATIENCE;

/// How a node answers one request: the messages it sends back, in order (a reply, then
/// any events or a late second reply).
pub type Script = Arc<dyn Fn(&Request) -> Vec<ServerMessage> + Send + Sync>;

/// What a node saw, in order of arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A connection said hello with this token.
    Hello {
        /// The connection's number on this node, from 0.
        conn: usize,
        /// Its token.
        token: Option<String>,
    },
    /// A connection sent a request.
    Request {
        /// The connection.
        conn: usize,
        /// The request.
        request: Request,
    },
    /// A connection opened a relayed stream and sent these bytes (its kind byte first)
    /// before finishing it or ending.
    Stream {
        /// The connection.
        conn: usize,
        /// Everything read.
        bytes: Vec<u8>,
    },
    /// A connection ended, for this reason (the client's close reason, in words).
    Closed {
        /// The connection.
        conn: usize,
        /// Why.
        reason: String,
    },
}

/// A certificate and its key for fake nodes.
pub struct Cert {
    /// DER chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the key.
    pub key: Vec<u8>,
}

impl Cert {
    /// A self-signed certificate for the names the pinned client checks ("sosqd").
    pub fn self_signed() -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["sosqd".to_string()]).unwrap();
        Cert {
            chain: vec![made.cert.der().clone()],
            key: made.signing_key.serialize_der(),
        }
    }

    /// The SHA-256 fingerprint clients pin.
    pub fn fingerprint(&self) -> String {
        sosq::tls::fingerprint(&self.chain[0])
    }
}

/// Makes a CA; returns it with its PEM, for [`issue`].
pub fn ca() -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let pem = issuer.pem();
    (issuer, pem)
}

/// A certificate for `names` only, signed by `ca`.
pub fn issue(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, names: &[&str]) -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    Cert {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

/// A running fake node; it stops when dropped.
pub struct FakeNode {
    /// Where it listens.
    pub addr: SocketAddr,
    endpoint: quinn::Endpoint,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeNode {
    /// Starts a node on 127.0.0.1 with `cert`, answering requests with `script`. Runs its
    /// tasks on the current tokio runtime.
    pub async fn start(cert: &Cert, script: Script) -> FakeNode {
        let mut tls = rustls::ServerConfig::builder_with_provider(sosq::tls::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                cert.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
            )
            .unwrap();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicServerConfig::try_from(tls).unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (accepting, log) = (endpoint.clone(), seen.clone());
        tokio::spawn(async move {
            let mut conn = 0;
            while let Some(incoming) = accepting.accept().await {
                let (script, log) = (script.clone(), log.clone());
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.await {
                        serve(conn, connection, script, log).await;
                    }
                });
                conn += 1;
            }
        });
        FakeNode {
            addr,
            endpoint,
            seen,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most [`PATIENCE`]) until something seen matches `wanted`; returns it.
    pub async fn wait_for(&self, wanted: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self.seen().into_iter().find(&wanted) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "not seen; the node saw {:#?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The requests seen, in order, without their connections.
    pub fn requests(&self) -> Vec<Request> {
        self.seen()
            .into_iter()
            .filter_map(|seen| match seen {
                Seen::Request { request, .. } => Some(request),
                _ => None,
            })
            .collect()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"test over");
    }
}

/// One connection: hello, then each request answered by the script; relayed streams read
/// to their end; how it ended recorded last.
async fn serve(
    conn: usize,
    connection: quinn::Connection,
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let record = |what: Seen| seen.lock().unwrap().push(what);
    let Ok((mut send, mut recv)) = connection.accept_bi().await else {
        return;
    };
    let Ok(Some(ClientMessage::Hello { token, .. })) =
        codec::read_frame::<ClientMessage, _>(&mut recv).await
    else {
        return;
    };
    record(Seen::Hello {
        conn,
        token: token.clone(),
    });
    let welcome = Reply::Welcome {
        role: match token {
            Some(_) => Role::Expert,
            None => Role::Customer,
        },
        name: token.map(|_| "ana".to_string()).unwrap_or_default(),
        server: "fake node".into(),
        keep_alive_ms: 1_000,
        idle_timeout_ms: 30_000,
        protocol: PROTOCOL_VERSION,
    };
    if codec::write_frame(&mut send, &ServerMessage::Reply(welcome))
        .await
        .is_err()
    {
        return;
    }
    let streams = connection.clone();
    let stream_log = seen.clone();
    tokio::spawn(async move {
        while let Ok((_, mut stream)) = streams.accept_bi().await {
            let log = stream_log.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(Some(n)) = stream.read(&mut buf).await {
                    bytes.extend_from_slice(&buf[..n]);
                }
                log.lock().unwrap().push(Seen::Stream { conn, bytes });
            });
        }
    });
    while let Ok(Some(ClientMessage::Request(request))) =
        codec::read_frame::<ClientMessage, _>(&mut recv).await
    {
        let answers = script(&request);
        record(Seen::Request { conn, request });
        for answer in answers {
            if codec::write_frame(&mut send, &answer).await.is_err() {
                return;
            }
        }
    }
    let reason = sosq::client::describe_connection_error(&connection.closed().await);
    record(Seen::Closed { conn, reason });
}

/// The code the fake cases have.
pub fn code() -> SessionCode {
    "123-456-789".parse().unwrap()
}

/// A case as a node describes it.
pub fn case(state: CaseState) -> CaseInfo {
    let now = Timestamp::now();
    CaseInfo {
        code: code(),
        state,
        origin: CaseOrigin::Sos,
        customer: "Alice".into(),
        description: "printer on fire".into(),
        created_at: now,
        updated_at: now,
        expires_at: Timestamp(now.0 + 86_400_000),
        group: "general".into(),
        assigned_to: None,
        priority: Priority::Normal,
        response_due: None,
        first_response_at: None,
        response_target_met: None,
        customer_online: true,
        expert: None,
        last_message: None,
        attachments: 0,
    }
}

/// `Reply(m)`.
pub fn reply(reply: Reply) -> ServerMessage {
    ServerMessage::Reply(reply)
}

/// The reply that sends a client to `node` at `address` with `ticket` to ask `request`.
pub fn redirect(node: &str, address: &str, ticket: &str, request: Request) -> ServerMessage {
    reply(Reply::Redirect(Redirect {
        node: node.into(),
        address: address.into(),
        ticket: ticket.into(),
        request: Box::new(request),
    }))
}

/// `Attached` to the fake case, then `Paired` with customer Alice: what a home node
/// answers an expert whose request it redeems.
pub fn attached_and_paired() -> Vec<ServerMessage> {
    vec![
        reply(Reply::Attached {
            case: case(CaseState::InProgress),
            resume_secret: None,
            position: None,
        }),
        ServerMessage::Event(Event::Paired {
            code: code(),
            peer_role: Role::Customer,
            peer_name: "Alice".into(),
        }),
    ]
}
