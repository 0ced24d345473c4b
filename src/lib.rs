//! sosqd: the sosq remote-support session broker daemon.
//!
//! - [`broker`]: the pure core (cases, codes, queue, lifecycle, expiry). Start here.
//! - [`server`]: the async shell that runs the core behind QUIC, one task per connection.
//! - [`relay`]: splices session streams between paired parties.
//! - [`store`]: where cases and users are kept.
//! - [`transport`]: the QUIC endpoint and the TLS identity.
//! - [`config`]: one validated configuration from defaults, file and flags.
//! - [`datadir`]: one daemon per data dir (its lock).
//! - [`loadgen`]: the load generator of the scale benchmark and its smoke test.

pub mod broker;
pub mod clock;
pub mod config;
pub mod datadir;
mod fsutil;
pub mod loadgen;
pub mod relay;
pub mod server;
pub mod store;
pub mod transport;
