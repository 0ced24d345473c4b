//! sosqd: the sosq remote-support session broker daemon.
//!
//! - [`broker`]: the pure core (cases, codes, queue, lifecycle, expiry). Start here.
//! - [`server`]: the async shell that runs the core behind QUIC, one task per connection.
//! - [`relay`]: splices session streams between paired parties.
//! - [`store`]: where cases and users are kept.
//! - [`charts`]: small SVG charts for the web console's Reports page.
//! - [`transport`]: the QUIC endpoint and the TLS identity.
//! - [`config`]: one validated configuration from defaults, file and flags.
//! - [`logging`]: log lines on stderr, with a level a reload can change.
//! - [`datadir`]: one daemon per data dir (its lock).
//! - [`web`]: the HTTPS web console and public pages, another way in to the same core.
//! - [`sos_shortcut`]: the desktop SOS button that opens a support profile's help page.
//! - [`loadgen`]: the load generator of the scale benchmark and its smoke test.

pub mod broker;
pub mod charts;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod fsutil;
pub mod loadgen;
pub mod logging;
pub mod relay;
pub mod server;
pub mod sos_shortcut;
pub mod store;
pub mod transport;
pub mod web;

/// The version of this build, from `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this build was made from (`git rev-parse --short HEAD` at build time, see
/// `build.rs`), or "unknown" when built outside a git checkout.
pub const COMMIT: &str = env!("SOSQD_COMMIT");

/// What `sosqd --version` prints after the program name: the version and the commit.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SOSQD_COMMIT"),
    ")"
);
