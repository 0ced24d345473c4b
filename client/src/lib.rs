//! sosq: the client side of the sosq remote-support broker.
//!
//! - [`protocol`] and [`codec`]: the wire contract every client and the daemon speak.
//! - [`code`]: session codes as people read and type them.
//! - [`client`]: an async client library over QUIC; [`endpoint`]: reaching the daemon.
//! - [`forward`]: TCP forwarding over relayed streams (`--share`, `--forward`).
//! - [`tls`]: certificate pinning by SHA-256 fingerprint.
//! - [`profile`]: support profiles, the branded quick-support file.

pub mod client;
pub mod code;
pub mod codec;
pub mod endpoint;
pub mod forward;
pub mod profile;
pub mod protocol;
pub mod tls;

pub use client::{Client, ClientError, ConnectOptions};
pub use code::SessionCode;
pub use endpoint::{connect_quic, SharedEndpoint};
