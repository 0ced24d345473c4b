//! The shell's one error enum: why the server could not start or a request failed, and
//! the refusal a client sees for it.

use std::time::Duration;

use sosq::protocol::{ErrorKind, ErrorReply};

use crate::broker::BrokerError;
use crate::store::users::UserError;
use crate::store::StoreError;
use crate::transport::{TlsError, TransportError};

/// Why the server could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The core refused.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The users file failed.
    #[error(transparent)]
    Users(#[from] UserError),
    /// The role may not make this request.
    #[error("{0}")]
    Forbidden(String),
    /// Too many wrong codes from this connection, its address, or in total.
    #[error("too many wrong session codes; wait {} and try again", crate::broker::humanize(Duration::from_secs(.0.as_secs() + 1)))]
    Throttled(Duration),
    /// Too many SOS requests from this address (`sos_throttle.rs`).
    #[error("too many requests for help from your address; wait {} and try again", crate::broker::humanize(Duration::from_secs(.0.as_secs() + 1)))]
    SosThrottled(Duration),
    /// A limit on how often or how much (a case's messages per minute, the bytes being
    /// uploaded at once) is reached for now: the sentence says which and how long to wait.
    #[error("{0}")]
    Busy(String),
    /// TLS identity problems.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A reloaded configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A reload came after shutdown had begun.
    #[error("sosqd is shutting down; nothing reloaded")]
    ShuttingDown,
    /// The cluster's shared database failed.
    #[error(transparent)]
    Cluster(crate::cluster::ClusterError),
    /// The case lives on another node of the cluster: the client goes there (not a
    /// failure; the reply is [`sosq::protocol::Reply::Redirect`]).
    #[error("the case is served by node {}", .0.node)]
    Redirect(Box<sosq::protocol::Redirect>),
}

impl ServerError {
    /// The refusal a client sees. Internal failures are logged in full and reported
    /// briefly, so file paths and such stay on the server.
    pub fn to_reply(&self) -> ErrorReply {
        let (kind, message) = match self {
            ServerError::Broker(e) => (e.kind(), e.to_string()),
            ServerError::Forbidden(message) => (ErrorKind::Forbidden, message.clone()),
            ServerError::Throttled(_) | ServerError::SosThrottled(_) | ServerError::Busy(_) => {
                (ErrorKind::Throttled, self.to_string())
            }
            ServerError::Cluster(error) => {
                tracing::error!(%error, "request failed on the cluster's database");
                (
                    ErrorKind::Internal,
                    "this node cannot reach the cluster's database right now; try again in a moment (another node may serve you)".to_string(),
                )
            }
            other => {
                tracing::error!(error = %other, "request failed inside the server");
                (
                    ErrorKind::Internal,
                    "the server failed to carry out the request; try again".to_string(),
                )
            }
        };
        ErrorReply { kind, message }
    }
}
