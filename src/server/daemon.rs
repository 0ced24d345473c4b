//! The daemon as a whole: [`Server::start`] loads the TLS identity and the stored cases and
//! binds the endpoint; [`Server::run`] serves (the accept loop with admission control, and
//! the background tasks: expiry, retention, revocations, live queue updates, draining
//! sessions, metrics) until told to stop, then shuts down gracefully.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sosq::protocol::close_code;

use super::admission::Decision;
use super::{
    connection, drains, expiry, metrics, queue_updates, retention, Reloader, ServerError, Shared,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::store::CaseStore;
use crate::transport::{self, TransportError};

/// A bound, loaded daemon, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    fingerprint: String,
    metrics: Option<std::net::TcpListener>,
    /// The web console's listener and HTTPS setup, unless `web_listen = ""`.
    web: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
}

impl Server {
    /// Loads the TLS identity and the stored cases, and binds the endpoint.
    pub fn start(config: Config, store: Arc<dyn CaseStore>) -> Result<Server, ServerError> {
        Server::start_with_clock(config, store, Clock::new())
    }

    /// [`Server::start`] with a chosen clock (tests anchor it).
    pub fn start_with_clock(
        config: Config,
        store: Arc<dyn CaseStore>,
        clock: Clock,
    ) -> Result<Server, ServerError> {
        Server::start_node(config, store, clock, None)
    }

    /// [`Server::start_with_clock`] for a cluster node when `ledger` is given: the same
    /// ledger fences `store`'s writes (a `PgStore` opened with it). Call
    /// [`Server::join_cluster`] before [`Server::run`].
    pub fn start_node(
        config: Config,
        store: Arc<dyn CaseStore>,
        clock: Clock,
        ledger: Option<Arc<crate::store::Ledger>>,
    ) -> Result<Server, ServerError> {
        let identity = crate::transport::Identity::from_config_or_create(&config)?;
        let fingerprint = identity.fingerprint();
        let (endpoint, web_listener) = bind_both(&config, &identity)?;
        let web = match web_listener {
            Some(listener) => Some((
                listener,
                crate::web::tls_config(&identity)
                    .map_err(|e| crate::transport::TlsError::Generate(e.to_string()))?,
            )),
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                    .map_err(|cause| TransportError::Socket { addr, cause })?;
                Some(listener)
            }
            None => None,
        };
        let cluster = match ledger {
            Some(ledger) => {
                let bound = endpoint
                    .local_addr()
                    .map_err(|cause| TransportError::Socket {
                        addr: config.listen,
                        cause,
                    })?;
                let address = advertised(&config, bound)?;
                let node = ledger.node().to_string();
                Some(Arc::new(
                    crate::cluster::Cluster::new(
                        &config.store,
                        &node,
                        &address,
                        config.lease,
                        config.store_pool_size,
                        ledger,
                    )
                    .map_err(ServerError::Cluster)?,
                ))
            }
            None => None,
        };
        let is_cluster = cluster.is_some();
        let shared = Arc::new(Shared::new(config, store, clock, cluster)?);
        if let Ok(bound) = endpoint.local_addr() {
            let _ = shared.quic_addr.set(bound);
        }
        shared.set_fingerprint(fingerprint.clone());
        let _ = shared
            .web_pass
            .set(super::web_pass::WebPassKey::from_identity(&identity));
        if is_cluster {
            let _ = shared
                .delegation
                .set(super::delegation::Delegation::from_identity(&identity));
        }
        Ok(Server {
            shared,
            endpoint,
            fingerprint,
            metrics,
            web,
        })
    }

    /// On a cluster node, joins the cluster (takes the node's lease, reserves codes); a
    /// no-op on one node. Errors: the database fails, or the node's name is taken.
    pub async fn join_cluster(&self) -> Result<(), ServerError> {
        self.shared.placement.join(&self.shared).await
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The address of the metrics endpoint, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address of the web console, if it is on.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The certificate fingerprint clients pin (as started; a reload may change it).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// What applies a new configuration to this daemon while it runs (on SIGHUP);
    /// `logs` is the installed logger, if any, whose level it may change.
    pub fn reloader(&self, logs: Option<Arc<crate::logging::Logs>>) -> Reloader {
        Reloader::new(self.shared.clone(), self.endpoint.clone(), logs)
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stop accepting, tell
    /// every party why, wait (at most `shutdown_grace`) for their connections to end and
    /// their last changes to commit, close the endpoint.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let expiry = tokio::spawn(expiry::run(self.shared.clone()));
        let revocations = tokio::spawn(watch_revocations(self.shared.clone()));
        let queue_updates = tokio::spawn(queue_updates::run(self.shared.clone()));
        let drained = self
            .shared
            .drained
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let drains = drained.map(|drained| tokio::spawn(drains::run(self.shared.clone(), drained)));
        let metrics = self
            .metrics
            .take()
            .and_then(|listener| tokio::net::TcpListener::from_std(listener).ok())
            .map(|listener| tokio::spawn(metrics::serve(self.shared.clone(), listener)));
        let web = self.web.take().and_then(|(listener, tls)| {
            let listener = tokio::net::TcpListener::from_std(listener).ok()?;
            self.shared.set_web_tls(tls);
            let state = crate::web::WebState::new(self.shared.clone());
            Some(tokio::spawn(crate::web::serve(state, listener)))
        });
        let admission = self.shared.admission.clone();
        let retention = tokio::spawn(retention::run(self.shared.clone()));
        let placement = self.shared.placement.clone().start(self.shared.clone());
        let accept = async {
            while let Some(incoming) = self.endpoint.accept().await {
                let remote = incoming.remote_address();
                if !self.shared.placement.serving() {
                    // A cluster node that lost its lease serves nobody: refused, a client
                    // goes on to the next node it was given.
                    tracing::debug!(%remote, "refused a connection: this node's lease lapsed");
                    incoming.refuse();
                    continue;
                }
                let decision = if self.shared.is_web_front(remote) {
                    admission.decide_web_front()
                } else {
                    admission.decide(remote.ip(), incoming.remote_address_validated())
                };
                match decision {
                    Decision::Accept(guard) => {
                        tokio::spawn(connection::serve(self.shared.clone(), incoming, guard));
                    }
                    Decision::Retry => {
                        if let Err(e) = incoming.retry() {
                            // Already validated; a second Retry is not allowed.
                            tracing::debug!(%remote, error = %e, "cannot send a Retry");
                        }
                    }
                    Decision::Refuse(why) => {
                        self.shared
                            .counters
                            .refused_connections
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%remote, reason = why, "refused a connection");
                        incoming.refuse();
                    }
                }
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shutdown => tracing::info!("shutting down"),
        }
        // From here `/healthz` says 503, so a load balancer stops sending new customers
        // while the ones connected are told to come back; metrics stay up for the grace.
        self.shared.begin_shutdown();
        expiry.abort();
        retention.abort();
        revocations.abort();
        queue_updates.abort();
        if let Some(drains) = drains {
            drains.abort();
        }
        self.endpoint.set_server_config(None);
        // A cluster node gives its lease up before telling its parties to come back, so
        // the node they reconnect to takes their cases over at once instead of sending
        // them back here. Its last writes are still its own until another node does.
        for task in placement {
            task.abort();
        }
        if let Err(error) = self.shared.placement.leave().await {
            tracing::warn!(%error, "could not give up the lease; other nodes wait for it to lapse");
        }
        for party in self.shared.parties.iter() {
            party.connection.close(
                close_code::SHUTDOWN.into(),
                b"sosqd is shutting down; your case is kept, connect again in a moment",
            );
        }
        // Connection tasks record each party's departure; wait for them to finish.
        let grace = self.shared.config().shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while admission.open_connections() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = admission.open_connections(),
                "shutdown grace period over with connections still open"
            );
        }
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(web) = web {
            web.abort();
        }
        self.endpoint
            .close(close_code::SHUTDOWN.into(), b"sosqd is shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!("stopped");
    }
}

/// How often binding the QUIC endpoint and the console's TCP listener on one port number
/// is tried when the port is chosen by the system (0): the number UDP got may be taken on
/// TCP, so both are bound again on a new number.
const BIND_ATTEMPTS: usize = 20;

/// Binds the QUIC endpoint and, unless `web_listen = ""`, the console's TCP listener (by
/// default on the same port number). Errors: either address cannot be bound.
fn bind_both(
    config: &Config,
    identity: &crate::transport::Identity,
) -> Result<(quinn::Endpoint, Option<std::net::TcpListener>), ServerError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let endpoint = transport::bind(config, identity)?;
        let bound = endpoint
            .local_addr()
            .map_err(|cause| TransportError::Socket {
                addr: config.listen,
                cause,
            })?;
        let Some(addr) = config.web_address(bound)? else {
            return Ok((endpoint, None));
        };
        match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => return Ok((endpoint, Some(listener))),
            Err(cause)
                if cause.kind() == std::io::ErrorKind::AddrInUse
                    && config.listen.port() == 0
                    && config.web_listen.is_none()
                    && attempt < BIND_ATTEMPTS =>
            {
                drop(endpoint);
            }
            Err(cause) => {
                return Err(crate::config::ConfigError::Invalid {
                    option: "web_listen",
                    message: format!(
                        "the web console cannot listen on TCP {addr}: {cause}; set web_listen to another address, or web_listen = \"\" to turn the console off"
                    ),
                }
                .into())
            }
        }
    }
}

/// The address a cluster node hands out in redirects: `advertise`, or the bound address
/// when it is not a wildcard. Errors: a wildcard listen address with no `advertise`.
fn advertised(config: &Config, bound: SocketAddr) -> Result<String, ServerError> {
    if !config.advertise.trim().is_empty() {
        return Ok(config.advertise.trim().to_string());
    }
    if bound.ip().is_unspecified() {
        return Err(crate::config::ConfigError::Invalid {
            option: "advertise",
            message: format!(
                "a cluster node listening on {bound} (every address) must say which address clients reach it at: set advertise = \"host:port\" (or --advertise)"
            ),
        }
        .into());
    }
    Ok(bound.to_string())
}

/// The log line that says the daemon is up: where it listens and the certificate to pin.
/// Tests and benchmarks find the daemon by it, through [`parse_listening_line`].
pub fn listening_line(addr: SocketAddr, fingerprint: &str) -> String {
    format!("listening on {addr} (certificate fingerprint {fingerprint})")
}

/// The log line that gives the web console's URL (a wildcard address shows as
/// `localhost`, which a browser on the same machine opens). Tests find the console by it,
/// through [`parse_console_line`].
pub fn console_line(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        SocketAddr::new(addr.ip(), 0)
            .to_string()
            .trim_end_matches(":0")
            .to_string()
    };
    format!(
        "web console at https://{host}:{}/ (the same certificate)",
        addr.port()
    )
}

/// The console's URL from a log line containing [`console_line`].
pub fn parse_console_line(line: &str) -> Option<String> {
    let rest = line.split("web console at ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// The address and fingerprint from a log line containing [`listening_line`].
pub fn parse_listening_line(line: &str) -> Option<(String, String)> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?.to_string();
    let fingerprint = rest
        .split("certificate fingerprint ")
        .nth(1)?
        .trim_end()
        .trim_end_matches(')')
        .to_string();
    Some((addr, fingerprint))
}

/// How often open staff connections are checked against the users file.
const REVOCATION_CHECK: Duration = Duration::from_secs(1);

/// Applies `sosqd user revoke` to open connections within [`REVOCATION_CHECK`].
async fn watch_revocations(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(REVOCATION_CHECK);
    loop {
        tick.tick().await;
        shared.drop_revoked();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_listening_line_reads_back_behind_a_log_prefix() {
        let addr = "127.0.0.1:4433".parse().unwrap();
        let line = format!(
            "2026-11-25 INFO sosqd: {}",
            super::listening_line(addr, "ab12")
        );
        assert_eq!(
            super::parse_listening_line(&line),
            Some(("127.0.0.1:4433".to_string(), "ab12".to_string()))
        );
        assert_eq!(super::parse_listening_line("case store open"), None);
    }
}
