//! Following a cluster node's [`Redirect`]: the case a request is about lives on another
//! node (its home node), so the client connects there with the same trust (pin or CA, the
//! CA checking the new address's own host name) and the same credentials, says hello, sends
//! [`Request::Redeem`] with the ticket, and takes that reply as the answer to the original
//! request. The new connection becomes the party's connection: the old one is closed.
//!
//! Every request goes through here ([`Client::request`], the request sent with the hello,
//! and a reply that comes late, after `Waiting`), so every command follows redirects the
//! same way, at most [`MAX_REDIRECTS`] in a row.

use std::fmt;
use std::sync::Arc;

use crate::code::SessionCode;
use crate::endpoint::{connect_quic, SharedEndpoint};
use crate::protocol::{close_code, Redirect, Reply, Request};

use super::{Client, ClientError, ConnectOptions, Greeting};

/// The most redirects a client follows in a row for one request; one more is an error
/// ([`ClientError::TooManyRedirects`]): nodes that keep sending a client on disagree about
/// where the case lives, and following them for ever would hide it.
pub const MAX_REDIRECTS: usize = 3;

/// The longest `host:port` a redirect may name (a DNS name is at most 253 bytes).
const MAX_ADDRESS_LEN: usize = 300;

/// One redirect as the client follows it: the words for the one line a user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The case the redirected request is about, when it names one.
    pub code: Option<SessionCode>,
    /// What the redirected request is, when it names no case ("the next case" for a pull).
    what: &'static str,
    /// The home node's name (control characters replaced: it comes from the network).
    pub node: String,
    /// Where the client connects: `host:port`.
    pub address: String,
}

impl Hop {
    /// The hop `redirect` asks for; refuses an address no connection could be made to.
    fn of(redirect: &Redirect) -> Result<Hop, ClientError> {
        let address = redirect.address.trim();
        // One address: a list would make this one hop many, and a stray character would
        // only fail later with a less clear error.
        let usable = !address.is_empty()
            && address.len() <= MAX_ADDRESS_LEN
            && !address
                .chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control());
        if !usable {
            return Err(ClientError::Unexpected(format!(
                "sosqd redirected to an unusable address {:?}",
                printable(&redirect.address)
            )));
        }
        let (code, what) = match &*redirect.request {
            Request::Pull { .. } => (None, "the next case"),
            other => (request_code(other), "this request"),
        };
        Ok(Hop {
            code,
            what,
            node: printable(&redirect.node),
            address: address.to_string(),
        })
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "case {code} is served by node ")?,
            None => write!(f, "{} is served by node ", self.what)?,
        }
        write!(f, "{} ({}); reconnecting there", self.node, self.address)
    }
}

/// The case a request names, if its code reads as one.
fn request_code(request: &Request) -> Option<SessionCode> {
    let code = match request {
        Request::Join { code, .. }
        | Request::Connect { code, .. }
        | Request::Close { code, .. }
        | Request::Status { code, .. }
        | Request::Escalate { code, .. }
        | Request::Assign { code, .. }
        | Request::Transfer { code, .. }
        | Request::History { code, .. } => code,
        _ => return None,
    };
    code.parse().ok()
}

/// Text from the network made safe for one terminal line: control characters become `?`,
/// and it is cut at 100 characters.
fn printable(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 100 {
        shown.push('…');
    }
    shown
}

/// Who is told of each redirect just before it is followed (the CLI prints one line); by
/// default nobody.
#[derive(Clone, Default)]
pub struct RedirectNotice(Option<Arc<Tell>>);

/// What a [`RedirectNotice`] calls.
type Tell = dyn Fn(&Hop) + Send + Sync;

impl RedirectNotice {
    /// A notice that calls `tell` with each hop.
    pub fn new(tell: impl Fn(&Hop) + Send + Sync + 'static) -> RedirectNotice {
        RedirectNotice(Some(Arc::new(tell)))
    }

    fn tell(&self, hop: &Hop) {
        if let Some(tell) = &self.0 {
            tell(hop);
        }
    }
}

impl fmt::Debug for RedirectNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "RedirectNotice(set)",
            None => "RedirectNotice(none)",
        })
    }
}

/// How a client opens another connection with the same trust and credentials.
#[derive(Clone)]
pub(super) enum Dial {
    /// On an endpoint of its own, as [`connect_quic`] makes one.
    Own(ConnectOptions),
    /// On an endpoint shared with other parties.
    Shared {
        /// The endpoint.
        endpoint: SharedEndpoint,
        /// The staff token; none for a customer.
        token: Option<String>,
    },
}

impl Dial {
    /// Connects to `address`, says hello and sends `first`; returns the client and its
    /// reply (a refusal is an error, and then nothing changed on this side).
    async fn greet_at(
        &self,
        address: &str,
        first: Request,
    ) -> Result<(Client, Option<Reply>), ClientError> {
        match self {
            Dial::Own(options) => {
                let options = ConnectOptions {
                    server: address.to_string(),
                    ..options.clone()
                };
                let (endpoint, connection) = connect_quic(&options).await?;
                let greeting = Greeting {
                    server: address,
                    token: options.token.clone(),
                    owns_endpoint: true,
                    first: Some(first),
                    dial: self.clone(),
                };
                Client::greet(endpoint, connection, greeting).await
            }
            Dial::Shared { endpoint, token } => {
                let connection = endpoint.connect_to(address).await?;
                let greeting = Greeting {
                    server: address,
                    token: token.clone(),
                    owns_endpoint: false,
                    first: Some(first),
                    dial: self.clone(),
                };
                Client::greet(endpoint.endpoint.clone(), connection, greeting).await
            }
        }
    }
}

impl Client {
    /// Follows `redirect` (and any redirect the home node answers in turn, at most
    /// [`MAX_REDIRECTS`] in a row): connects to its address with the same trust and
    /// credentials, redeems its ticket, and returns that reply as the answer to the request
    /// that was redirected. From then on this client is on the new connection (the old one
    /// is closed; events taken before come from the old one and end).
    ///
    /// # Errors
    /// The address is unusable, the home node cannot be reached or refuses the redeemed
    /// request (this client then stays on its old connection), or too many redirects.
    pub async fn follow(&mut self, redirect: Redirect) -> Result<Reply, ClientError> {
        let mut redirect = redirect;
        let mut path: Vec<Hop> = Vec::new();
        loop {
            let hop = Hop::of(&redirect)?;
            if path.len() >= MAX_REDIRECTS {
                path.push(hop);
                return Err(ClientError::TooManyRedirects {
                    path: path
                        .iter()
                        .map(|hop| format!("node {} at {}", hop.node, hop.address))
                        .collect::<Vec<_>>()
                        .join(", then "),
                });
            }
            self.notice.tell(&hop);
            let redeem = Request::Redeem {
                ticket: redirect.ticket,
                request: redirect.request,
            };
            let (next, reply) = self.dial.greet_at(&hop.address, redeem).await?;
            self.take_over(next);
            path.push(hop);
            match reply {
                Some(Reply::Redirect(again)) => redirect = again,
                Some(reply) => return Ok(reply),
                None => return Err(ClientError::Unexpected("no reply to the redirect".into())),
            }
        }
    }

    /// Waits for a reply to no request and returns it. In a cluster a node may move a
    /// party after answering it: an expert told `Waiting` (or attached to a case whose
    /// customer then arrives on another node) gets a [`Reply::Redirect`] later, to pass to
    /// [`Client::follow`]. Call only while no request is waiting for its reply; this is
    /// safe to cancel (nothing is lost if another branch of a `select!` wins).
    ///
    /// # Errors
    /// The connection ended ([`ClientError::Ended`] or [`ClientError::Disconnected`]), or
    /// the late reply is a refusal.
    pub async fn late_reply(&mut self) -> Result<Reply, ClientError> {
        self.next_reply().await
    }

    /// Who is told of each redirect this client follows from now on.
    pub fn set_redirect_notice(&mut self, notice: RedirectNotice) {
        self.notice = notice;
    }

    /// How many redirects this client has followed in its life: each moved it to a new
    /// connection, so a caller holding the old connection's events knows to take the new.
    pub fn redirects(&self) -> u32 {
        self.redirects
    }

    /// Becomes `next` (a connection to the home node), closing the old connection.
    fn take_over(&mut self, next: Client) {
        let notice = self.notice.clone();
        let redirects = self.redirects.saturating_add(1);
        let mut old = std::mem::replace(self, next);
        self.notice = notice;
        self.redirects = redirects;
        // Closed at once rather than waited for: the old node's seat is free as soon as the
        // close arrives, and the endpoint finishes sending it in the background.
        let _ = old.control.finish();
        old.connection
            .close(close_code::DONE.into(), b"redirected to the home node");
    }
}

impl SharedEndpoint {
    /// Makes one more QUIC connection (no hello) to `server`, another node than the one
    /// this endpoint was opened for (a redirect's home node), with the same trust.
    pub async fn connect_to(&self, server: &str) -> Result<quinn::Connection, ClientError> {
        let addr = crate::endpoint::resolve(server).await?;
        let connect_error = |reason: String| ClientError::Connect {
            server: server.to_string(),
            reason,
        };
        let name = self.server_name_for(server);
        self.endpoint
            .connect(addr, &name)
            .map_err(|e| connect_error(e.to_string()))?
            .await
            .map_err(|e| connect_error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Priority;

    fn redirect(address: &str, request: Request) -> Redirect {
        Redirect {
            node: "b".into(),
            address: address.into(),
            ticket: "t".into(),
            request: Box::new(request),
        }
    }

    #[test]
    fn the_line_names_the_case_the_node_and_its_address() {
        let connect = Request::Connect {
            code: "123456789".into(),
            working_queue: false,
        };
        let hop = Hop::of(&redirect("127.0.0.1:4502", connect)).unwrap();
        assert_eq!(
            hop.to_string(),
            "case s123-456-789 is served by node b (127.0.0.1:4502); reconnecting there"
        );
        let pull = Hop::of(&redirect("b.example:4433", Request::Pull { wait: true })).unwrap();
        assert_eq!(
            pull.to_string(),
            "the next case is served by node b (b.example:4433); reconnecting there"
        );
        let sos = Request::OpenSos {
            customer: "c".into(),
            description: String::new(),
            priority: Priority::Normal,
            group: None,
        };
        let other = Hop::of(&redirect("[::1]:1", sos)).unwrap();
        assert!(other.to_string().starts_with("this request is served"));
    }

    #[test]
    fn an_address_that_is_not_one_host_and_port_is_refused() {
        let pull = || Request::Pull { wait: false };
        for bad in ["", "  ", "a:1,b:2", "a b:1", "a\n:1", &"x".repeat(400)] {
            let error = Hop::of(&redirect(bad, pull())).unwrap_err();
            assert_eq!(error.code(), "unexpected_reply", "{bad:?}");
        }
        let mut shady = redirect("a:1", pull());
        shady.node = "evil\x1b[2Jnode".into();
        assert_eq!(Hop::of(&shady).unwrap().node, "evil?[2Jnode");
    }
}
