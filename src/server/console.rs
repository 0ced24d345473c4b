//! What the web console (`crate::web`) asks of the daemon beyond the wire's requests:
//! sign-in, party ids for its sessions, the queue-change signal its live views follow,
//! the public status, a customer following its case, and the audit log's latest entries.
//! Each is a thin read of state the daemon already keeps.

use std::sync::atomic::Ordering;

use sosq::protocol::Timestamp;
use tokio::sync::watch;

use super::Shared;
use crate::broker::{CustomerFollow, PartyId, QueueId};
use crate::store::users::User;
use crate::web::public::{StatusReport, TeamStatus};

/// How many history entries a customer's follow page shows (the latest).
const FOLLOW_HISTORY: usize = 50;

impl Shared {
    /// The staff account of `token`, if it is valid. Errors: the users store cannot be read.
    pub(crate) fn authenticate(&self, token: &str) -> Result<Option<User>, String> {
        let found = self.users.authenticate(token).map_err(|e| {
            tracing::error!(error = %e, "cannot read the users store");
            "the users store cannot be read; see the daemon's log".to_string()
        })?;
        if found.is_none() {
            self.counters
                .failed_authentications
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// A party id for a console session (or one public request), never reused.
    pub(crate) fn new_party(&self) -> PartyId {
        self.next_party_id()
    }

    /// Forgets what the throttle keeps for a console party that is gone.
    pub(crate) fn forget_party(&self, party: PartyId) {
        self.throttle().forget(party);
    }

    /// A receiver that sees a new value whenever the queue changed (after the same short
    /// batching as `sosq queue --watch`).
    pub(crate) fn queue_changes(&self) -> watch::Receiver<u64> {
        self.queue_seen.subscribe()
    }

    /// A customer following its case on `/case`. Errors: the words to show (no open case
    /// with this code and secret).
    pub(crate) fn customer_case(
        &self,
        party: PartyId,
        code: sosq::SessionCode,
        secret: &str,
    ) -> Result<CustomerFollow, String> {
        self.broker()
            .customer_follow(party, code, secret, FOLLOW_HISTORY)
            .map_err(|_| {
                format!("request {code} is no longer open: it was closed, expired or deleted")
            })
    }

    /// `/status` now: up or shutting down, the maintenance notice, the public teams'
    /// queues and the typical wait.
    pub(crate) fn public_status(&self) -> StatusReport {
        let now = self.now();
        let public = self.public_teams();
        let (summary, stats) = {
            let broker = self.broker();
            (broker.queue_summary(), broker.stats().clone())
        };
        let teams = public
            .into_iter()
            .map(|team| {
                let (waiting, oldest) = summary
                    .iter()
                    .filter(|(id, _, _)| *id == QueueId::Group(team.clone()))
                    .fold((0, None::<Timestamp>), |(n, oldest), (_, count, since)| {
                        (n + count, Some(oldest.map_or(*since, |o| o.min(*since))))
                    });
                let typical_wait_seconds = stats
                    .first_response_by_team
                    .get(&team)
                    .and_then(|histogram| histogram.median_bound())
                    .map(|bound| bound as u64);
                TeamStatus {
                    team,
                    waiting,
                    longest_wait_seconds: oldest
                        .map_or(0, |since| now.0.saturating_sub(since.0) / 1000),
                    typical_wait_seconds,
                }
            })
            .collect();
        let mut overall = crate::broker::Histogram::default();
        for histogram in &stats.first_response {
            for (sum, n) in overall.buckets.iter_mut().zip(histogram.buckets) {
                *sum += n;
            }
            overall.count += histogram.count;
        }
        let typical_wait_seconds = overall.median_bound().map(|bound| bound as u64);
        StatusReport {
            service: if self.is_shutting_down() {
                "shutting_down"
            } else {
                "up"
            },
            notice: self.notice(),
            teams,
            typical_wait_seconds,
        }
    }

    /// The teams an admin marked public (shown on `/status`); none while the users
    /// store cannot be read (logged), since a public page must not fail for it.
    fn public_teams(&self) -> Vec<String> {
        self.users.public_groups().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the public teams");
            Vec::new()
        })
    }

    /// The maintenance notice an admin set, if any.
    fn notice(&self) -> Option<String> {
        match self.users.notice() {
            Ok(notice) => notice.map(|n| n.text),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the maintenance notice");
                None
            }
        }
    }

    /// At most `limit` audit entries with ids below `before`, newest first (a page of the
    /// console's audit log). Errors: the store cannot be read.
    pub(crate) async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::store::AuditRecord>, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.audit_page(before, limit))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// How many stored cases `filter` selects now, up to [`crate::store::DEFAULT_COUNT_CAP`]
    /// (the console's "all N that match"). Errors: the filter is invalid (in words), or the
    /// store cannot be read.
    pub(crate) async fn count_cases(
        &self,
        filter: &sosq::protocol::CaseFilter,
    ) -> Result<u64, String> {
        let selection =
            crate::broker::CaseSelection::resolve(filter, self.now()).map_err(|e| e.to_string())?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.count(&selection, crate::store::DEFAULT_COUNT_CAP)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

impl Shared {
    /// The console's HTTPS setup in force (`None` while the console is off).
    pub(crate) fn web_tls(&self) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        self.web_tls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a console HTTPS setup in force: new connections use it, open ones keep theirs.
    pub(crate) fn set_web_tls(&self, tls: std::sync::Arc<rustls::ServerConfig>) {
        *self.web_tls.write().unwrap_or_else(|p| p.into_inner()) = Some(tls);
    }

    /// The experts, admins and teams (the console's admin pages manage them, as
    /// `sosqd user` and `sosqd group` do).
    pub(crate) fn users(&self) -> &crate::store::users::UserDirectory {
        &self.users
    }

    /// Records an admin's console action that touches no case (a user added or revoked,
    /// a team added) in the audit log, and waits until it is kept. Errors: the store
    /// failed.
    pub(crate) async fn audit(
        &self,
        actor: &crate::broker::Actor,
        action: &str,
        selector: String,
    ) -> Result<(), String> {
        let entry = crate::broker::AuditEntry {
            at: self.now(),
            actor: actor.who.to_string(),
            address: actor.address.clone(),
            action: action.to_string(),
            selector,
            count: 0,
        };
        let ticket = self
            .store
            .submit(vec![crate::broker::Persist::Audit(entry)]);
        ticket.await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Runs a console request that `redirect` sent to another node of the cluster, there,
    /// on behalf of `user` (a delegation token stands for the user's own: `delegation.rs`).
    /// Errors: in words, when this daemon is no cluster node or the other node cannot be
    /// reached or refuses.
    pub(crate) async fn forward(
        &self,
        redirect: &sosq::protocol::Redirect,
        user: &User,
    ) -> Result<sosq::protocol::Reply, String> {
        let delegation = self
            .delegation
            .get()
            .ok_or("this sosqd is not a cluster node")?;
        let options = sosq::ConnectOptions {
            server: redirect.address.clone(),
            fingerprint: self.fingerprint(),
            token: Some(delegation.token(&user.name, self.now())),
            ca: None,
        };
        let mut client = sosq::Client::connect(&options)
            .await
            .map_err(|e| format!("cannot reach the node at {}: {e}", redirect.address))?;
        let reply = client
            .request(sosq::protocol::Request::Redeem {
                ticket: redirect.ticket.clone(),
                request: redirect.request.clone(),
            })
            .await
            .map_err(|e| format!("the node at {} did not answer: {e}", redirect.address));
        client.close().await;
        reply
    }

    /// A web pass (`web_pass.rs`) for an in-process party standing for a browser at
    /// `address`, as staff member `user` or (none) as a customer; none before the daemon
    /// has its identity.
    pub(crate) fn web_pass(
        &self,
        user: Option<&str>,
        address: std::net::SocketAddr,
    ) -> Option<String> {
        let pass = super::web_pass::WebPass {
            user: user.map(str::to_string),
            address,
        };
        Some(self.web_pass.get()?.issue(&pass, self.now()))
    }

    /// Puts on record the address the web front's client endpoint is bound to, so its
    /// connections are admitted as the web front's (see `Admission::decide_web_front`).
    pub(crate) fn set_web_front(&self, address: std::net::SocketAddr) {
        *self.web_front.write().unwrap_or_else(|p| p.into_inner()) = Some(address);
    }

    /// Whether a connection from `remote` is the web front's own.
    pub(crate) fn is_web_front(&self, remote: std::net::SocketAddr) -> bool {
        *self.web_front.read().unwrap_or_else(|p| p.into_inner()) == Some(remote)
    }

    /// Where this daemon's own QUIC endpoint is reached from inside the machine: its
    /// bound address, with a wildcard IP (`0.0.0.0`, `::`) made the loopback of its family.
    pub(crate) fn quic_loopback(&self) -> std::net::SocketAddr {
        let mut addr = self
            .quic_addr
            .get()
            .copied()
            .unwrap_or(self.config().listen);
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    /// The typical wait, in seconds, from asking for help to an expert in `team`'s queue
    /// since the daemon started (as `/status` shows it); none before its first response.
    pub(crate) fn typical_wait(&self, team: &str) -> Option<u64> {
        let broker = self.broker();
        let stats = broker.stats();
        stats
            .first_response_by_team
            .get(team)
            .and_then(|histogram| histogram.median_bound())
            .map(|bound| bound as u64)
    }

    /// The UDP port the QUIC endpoint listens on (as bound).
    pub(crate) fn quic_port(&self) -> u16 {
        self.quic_addr
            .get()
            .map_or_else(|| self.config().listen.port(), |addr| addr.port())
    }

    /// The daemon's certificate fingerprint, for support profiles made in the console and
    /// for pinning the other nodes of its cluster (they share the certificate).
    pub(crate) fn fingerprint(&self) -> String {
        self.fingerprint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts the fingerprint of the certificate now in force on record (start, reload).
    pub(crate) fn set_fingerprint(&self, fingerprint: String) {
        *self.fingerprint.write().unwrap_or_else(|p| p.into_inner()) = fingerprint;
    }
}
