//! sosqd: the sosq remote-support session broker daemon.
//!
//! - [`broker`]: the pure core (cases, codes, queue, lifecycle, expiry).
//! - [`store`]: where cases and users are kept.
//! - [`server`]: the async shell that runs the core behind QUIC.
//! - [`config`]: one validated configuration from file, flags and defaults.

pub mod broker;
