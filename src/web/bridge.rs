//! The web front's in-process parties: a `sosq` client inside the daemon for each browser
//! customer (`/help`) and each expert chatting from the console, connected to the daemon's
//! own QUIC endpoint over loopback.
//!
//! Why a real connection rather than a second kind of party in the core: a browser party
//! then gets exactly what a native one gets (the role matrix, throttles, liveness,
//! pairing, transfers, the relay and its traffic counts, the history) by the one request
//! path every party takes. It says hello with a web pass (`server/web_pass.rs`) that names
//! the browser's address and, for staff, the signed-in user, so the throttles and the
//! history see the browser, not 127.0.0.1.
//!
//! A party outlives its WebSocket: when the page reloads or the network drops, the party
//! keeps the case's connection (and the chat with it) for [`chat::linger`], keeping what
//! arrives for the page (bounded, [`chat::Backlog`]); a page that comes back with the case's
//! code and secret takes it over, and the expert notices nothing. A page that does not come
//! back in time is given up on as a vanished native party is, and the party leaves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use sosq::protocol::Priority;
use sosq::{ConnectOptions, SessionCode, SharedEndpoint};
use tokio::sync::mpsc;

mod party;
mod upload;

use super::chat::{FromBrowser, ToBrowser};
use crate::server::Shared;
use party::Party;

/// Messages queued towards one page before the page counts as too slow and is let go (it
/// comes back through the backlog).
const TO_PAGE: usize = 256;

/// A page's requests queued towards its party; the socket stops reading when it is full.
/// An upload's parts in flight fit, so a page sending a file never waits on itself.
const FROM_PAGE: usize = 16;
const _: () = assert!(upload::PARTS_IN_FLIGHT <= FROM_PAGE);

/// One page's two ends, as its WebSocket holds them.
pub struct PageLink {
    /// Where the party's messages go.
    pub to_page: mpsc::Sender<ToBrowser>,
    /// What the page asks.
    pub from_page: mpsc::Receiver<FromBrowser>,
}

/// The page's side of a [`PageLink`].
pub struct PageEnd {
    /// What the party says.
    pub to_page: mpsc::Receiver<ToBrowser>,
    /// Where the page's requests go.
    pub from_page: mpsc::Sender<FromBrowser>,
}

/// A pair of linked ends.
pub fn page_link() -> (PageLink, PageEnd) {
    let (to_tx, to_rx) = mpsc::channel(TO_PAGE);
    let (from_tx, from_rx) = mpsc::channel(FROM_PAGE);
    (
        PageLink {
            to_page: to_tx,
            from_page: from_rx,
        },
        PageEnd {
            to_page: to_rx,
            from_page: from_tx,
        },
    )
}

/// What a page asks its party to do first.
pub enum Start {
    /// A customer asks for help (the `/help` form): `Request::OpenSos`.
    Open {
        /// The customer's name.
        name: String,
        /// What is wrong.
        description: String,
        /// How urgent.
        priority: Priority,
        /// The team queue (from the support profile); none: `general`.
        team: Option<String>,
    },
    /// A customer's page comes back (reload, network back) with its case's code and secret.
    Resume {
        /// The case.
        code: SessionCode,
        /// Its resume secret.
        secret: String,
        /// The customer's name, as first given.
        name: String,
    },
    /// A signed-in expert chats with the customer of `code` from the console.
    Chat {
        /// The staff member.
        user: String,
        /// The case.
        code: SessionCode,
    },
}

/// A party the pages of its case can attach to.
pub(super) struct Registered {
    pub(super) id: u64,
    /// The customer's resume secret, which a page must show to take the party over.
    pub(super) secret: Option<String>,
    pub(super) attach: mpsc::Sender<PageLink>,
}

/// Every in-process party, and the client endpoint they share.
#[derive(Default)]
pub struct Bridges {
    endpoint: tokio::sync::Mutex<Option<(String, SharedEndpoint)>>,
    customers: DashMap<SessionCode, Registered>,
    staff: DashMap<(String, SessionCode), Registered>,
    next_id: AtomicU64,
    /// Live parties per browser address: the web front holds each address to
    /// `max_connections_per_address`, as admission holds a native client's.
    per_address: DashMap<std::net::IpAddr, usize>,
}

/// A party's place in [`Bridges::per_address`], given back on drop.
struct AddressPlace {
    bridges: Arc<Bridges>,
    address: std::net::IpAddr,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        if let Some(mut count) = self.bridges.per_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
        }
        self.bridges
            .per_address
            .remove_if(&self.address, |_, count| *count == 0);
    }
}

impl Bridges {
    /// Gives `link` to the party `start` names: a lingering one of the same case (for a
    /// customer, only with the case's secret), or a new one.
    pub async fn attach(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        start: Start,
        address: SocketAddr,
        link: PageLink,
    ) {
        let link = match &start {
            Start::Resume { code, secret, .. } => {
                let found = self.customers.get(code).and_then(|party| {
                    let same = party
                        .secret
                        .as_deref()
                        .is_some_and(|kept| crate::store::users::same_hash(kept, secret));
                    same.then(|| party.attach.clone())
                });
                match found {
                    Some(attach) => match attach.send(link).await {
                        Ok(()) => return,
                        Err(mpsc::error::SendError(link)) => link,
                    },
                    None => link,
                }
            }
            Start::Chat { user, code } => {
                let found = self
                    .staff
                    .get(&(user.clone(), *code))
                    .map(|party| party.attach.clone());
                match found {
                    Some(attach) => match attach.send(link).await {
                        Ok(()) => return,
                        Err(mpsc::error::SendError(link)) => link,
                    },
                    None => link,
                }
            }
            Start::Open { .. } => link,
        };
        let party = Party::new(shared, &start, link);
        let Some(place) = self.place_for(address.ip(), shared.config().max_connections_per_address)
        else {
            return party.tell_final(ToBrowser::Failed {
                text: "too many support sessions from your address; close some and try again"
                    .into(),
                retry: false,
            });
        };
        let bridges = self.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _place = place;
            let id = bridges.next_id.fetch_add(1, Ordering::Relaxed);
            party.run(&bridges, &shared, start, address, id).await;
        });
    }

    /// A place for one more party from `address`, unless it has `most` already.
    fn place_for(self: &Arc<Self>, address: std::net::IpAddr, most: usize) -> Option<AddressPlace> {
        let mut count = self.per_address.entry(address).or_insert(0);
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(AddressPlace {
            bridges: self.clone(),
            address,
        })
    }

    /// The client endpoint the parties share, opened (again) for the certificate now in
    /// force. Errors: in words.
    pub(super) async fn endpoint(&self, shared: &Shared) -> Result<SharedEndpoint, String> {
        let fingerprint = shared.fingerprint();
        let mut cached = self.endpoint.lock().await;
        if let Some((pinned, endpoint)) = cached.as_ref() {
            if *pinned == fingerprint {
                return Ok(endpoint.clone());
            }
        }
        let server = shared.quic_loopback();
        let options = ConnectOptions {
            server: server.to_string(),
            fingerprint: fingerprint.clone(),
            token: None,
            ca: None,
        };
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::LOCALHOST, 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let endpoint = SharedEndpoint::open(&options, bind)
            .await
            .map_err(|e| format!("cannot open the web front's client endpoint: {e}"))?;
        if let Ok(local) = endpoint.endpoint().local_addr() {
            shared.set_web_front(local);
        }
        *cached = Some((fingerprint, endpoint.clone()));
        Ok(endpoint)
    }

    pub(super) fn register(&self, start: &Start, code: SessionCode, entry: Registered) {
        match start {
            Start::Chat { user, .. } => {
                self.staff.insert((user.clone(), code), entry);
            }
            _ => {
                self.customers.insert(code, entry);
            }
        }
    }

    pub(super) fn unregister(&self, start: &Start, code: SessionCode, id: u64) {
        match start {
            Start::Chat { user, .. } => {
                self.staff
                    .remove_if(&(user.clone(), code), |_, party| party.id == id);
            }
            _ => {
                self.customers.remove_if(&code, |_, party| party.id == id);
            }
        }
    }
}
