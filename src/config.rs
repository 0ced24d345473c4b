//! One validated [`Config`] from, in rising precedence: the embedded defaults, the config
//! file, and command-line flags. `config/sosqd.toml` documents every option.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Chat streams one session may have open at once, besides its forwarded connections:
/// room for one opened by each party (the `sosq` CLI opens one per pairing, the expert's).
/// Fixed, not a setting; here because validating `max_streams_per_connection` needs it.
pub const CHATS_PER_SESSION: usize = 2;

/// A cluster node's `keep_alive` unless its file sets one (see `Config::load`).
pub const CLUSTER_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// A cluster node's `idle_timeout` unless its file sets one (see `Config::load`).
pub const CLUSTER_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped options.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting {option}: {message}")]
    Invalid {
        /// The option's name.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything the daemon needs to run. Serializes to the file's option names (durations as
/// text), which is how a reload names what changed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Where the certificate, key and users live.
    pub data_dir: PathBuf,
    /// `text` or `json` log lines on stderr.
    pub log_format: LogFormat,
    /// Which log lines are written: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// a `RUST_LOG`-style filter such as `info,sosqd=debug`. `RUST_LOG`, if set, wins.
    pub log_level: String,
    /// Where to serve Prometheus metrics over plain HTTP; off unless set.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the web console listens (HTTPS on TCP): unset, the same address and port
    /// number as `listen` (one port number serves both); `""` turns the console off; or
    /// an address of its own. See [`Config::web_address`].
    pub web_listen: Option<String>,
    /// Web console sessions end after this long without a request.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub web_session_idle: Duration,
    /// Failed console sign-ins allowed per address per minute; more are refused until the
    /// minute has passed.
    pub web_signin_attempts: u32,
    /// An operator's certificate chain (PEM) instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How long after creation an open case expires.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub case_ttl: Duration,
    /// The most open cases held at once.
    pub max_open_cases: usize,
    /// How long a new connection has to say hello.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub hello_timeout: Duration,
    /// How often the daemon pings a quiet connection (and asks clients to), so a party
    /// that is alive is heard from at least this often.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub keep_alive: Duration,
    /// A connection not heard from for this long is dropped: how soon a vanished party is
    /// noticed (clients are told at hello and use the same figure).
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub idle_timeout: Duration,
    /// The most bidirectional streams a peer may have open at once (QUIC's own limit): the
    /// control stream plus the relayed ones, so it must exceed what a session may use.
    pub max_streams_per_connection: u32,
    /// Connections open at once, in total; more are refused before the handshake.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// A QUIC handshake must complete within this time.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub handshake_timeout: Duration,
    /// Above this many new handshakes per second, clients must first prove their address
    /// with a QUIC Retry (one extra round trip), so spoofed floods cost us no crypto.
    pub retry_above_handshakes_per_second: u32,
    /// On SIGTERM/Ctrl-C: how long to wait for parties to leave and writes to commit.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub shutdown_grace: Duration,
    /// How soon an expert should pick up a waiting `critical` SOS case.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub response_target_critical: Duration,
    /// ... a `high` one.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub response_target_high: Duration,
    /// ... a `normal` one.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub response_target_normal: Duration,
    /// ... a `low` one.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub response_target_low: Duration,
    /// Wrong session codes one connection (one party) may try in a burst.
    pub wrong_codes_per_connection_burst: u32,
    /// Wrong session codes per minute one connection earns back after its burst.
    pub wrong_codes_per_connection_per_minute: u32,
    /// Wrong session codes one address (an IPv6 address's whole /64) may try in a burst.
    pub wrong_codes_per_address_burst: u32,
    /// Wrong session codes per minute one address earns back after its burst.
    pub wrong_codes_per_address_per_minute: u32,
    /// Wrong session codes all addresses together may try in a burst.
    pub wrong_codes_total_burst: u32,
    /// Wrong session codes per minute all addresses together earn back.
    pub wrong_codes_total_per_minute: u32,
    /// SOS requests (`sosq request`, the `/help` page) one address (an IPv6 address's
    /// whole /64) may open in a burst.
    pub sos_per_address_burst: u32,
    /// SOS requests per minute one address earns back after its burst.
    pub sos_per_address_per_minute: u32,
    /// Messages one case's customer may add per minute (and at once).
    pub customer_messages_per_minute: u32,
    /// The largest file a customer may attach to a case, in bytes.
    pub max_attachment_bytes: u64,
    /// The most files a customer may attach to one case (0: none).
    pub max_attachments_per_case: u32,
    /// Bytes of unfinished uploads the daemon holds at once, all connections together
    /// (each connection holds at most one upload, of at most `max_attachment_bytes`).
    pub max_upload_bytes_in_flight: u64,
    /// Closed and expired cases unchanged for this long are deleted by the daemon.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub retention: Duration,
    /// The most forwarded TCP connections one session (one paired case) may have open at
    /// once; chats have [`CHATS_PER_SESSION`] places of their own.
    pub max_streams_per_session: u32,
    /// A relayed stream that carries no byte either way for this long is reset; zero (the
    /// default): never.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub relay_idle_timeout: Duration,
    /// Bytes a peer may send on one stream before the broker has read them (QUIC flow control).
    pub stream_receive_window: u64,
    /// Bytes a peer may send across all streams of its connection before the broker has read them.
    pub receive_window: u64,
    /// Bytes the broker keeps, per connection, of what it writes until the peer acknowledges it.
    pub send_window: u64,
    /// Bytes of the UDP socket's receive buffer asked of the kernel (Linux caps it at
    /// `net.core.rmem_max`): datagrams that arrive while every thread is busy wait here
    /// instead of being dropped and resent a round trip later.
    pub udp_receive_buffer: usize,
    /// Threads running connections and the relay; 0: one per CPU core (or what the
    /// `TOKIO_WORKER_THREADS` environment variable says).
    pub worker_threads: usize,
    /// Where cases (and, for PostgreSQL, users, groups and profiles) are kept: empty for
    /// the embedded SQLite store in `data_dir`, or a PostgreSQL URL
    /// (`postgres://user@host/db`), which makes this daemon a node of a cluster.
    pub store: String,
    /// This node's name in a cluster; empty: the host name and the listening port.
    pub node_id: String,
    /// The address (`host:port`) clients reach this node at, handed out in redirects;
    /// empty: the listening address, unless it is a wildcard (then it must be set).
    pub advertise: String,
    /// How long a cluster node's claim on its cases outlives its last heartbeat: a node
    /// that stops renewing (dead, paused, cut off from the store) loses its cases to
    /// another node this long after its last renewal. Renewed every third of it.
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub lease: Duration,
    /// Most connections a cluster node opens to PostgreSQL for claims, leases and reads
    /// (the case writer has one more of its own).
    pub store_pool_size: usize,
}

impl Config {
    /// Whether this daemon is a node of a cluster (its store is PostgreSQL).
    pub fn is_cluster(&self) -> bool {
        is_postgres_url(&self.store)
    }
}

/// Whether `store` names a PostgreSQL database rather than the embedded SQLite store.
pub fn is_postgres_url(store: &str) -> bool {
    let store = store.trim();
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            data_dir: PathBuf::from("sosqd-data"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            metrics_listen: None,
            web_listen: None,
            web_session_idle: Duration::from_secs(8 * 60 * 60),
            web_signin_attempts: 5,
            tls_cert: None,
            tls_key: None,
            case_ttl: Duration::from_secs(24 * 60 * 60),
            max_open_cases: 200_000,
            hello_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(6),
            max_streams_per_connection: 32,
            max_connections: 50_000,
            max_connections_per_address: 100,
            handshake_timeout: Duration::from_secs(10),
            retry_above_handshakes_per_second: 500,
            shutdown_grace: Duration::from_secs(10),
            response_target_critical: Duration::from_secs(2 * 60),
            response_target_high: Duration::from_secs(5 * 60),
            response_target_normal: Duration::from_secs(15 * 60),
            response_target_low: Duration::from_secs(60 * 60),
            // The total budget sets the guessing odds (README "Guessing odds, computed").
            // A connection is one party: 5 at once covers a person's typos, then one
            // retry every 30 s is plenty for a person and little for a script. An address
            // can be an office NAT with dozens of customers, and `sosq join` connects anew
            // for every attempt, so there every typo costs the address: 30 at once is six
            // connections' whole bursts, one person's typos (5 on a connection) leave 25
            // to everyone else, and one comes back every 6 s. The address budget does not
            // loosen the odds: two addresses guessing already reach the total (20 a
            // minute), and one alone gets half of it.
            wrong_codes_per_connection_burst: 5,
            wrong_codes_per_connection_per_minute: 2,
            wrong_codes_per_address_burst: 30,
            wrong_codes_per_address_per_minute: 10,
            wrong_codes_total_burst: 50,
            wrong_codes_total_per_minute: 20,
            // An office behind one NAT: ten people asking at once, then one every 6 s; a
            // script filling the queue from one machine gets ten.
            sos_per_address_burst: 10,
            sos_per_address_per_minute: 10,
            customer_messages_per_minute: 20,
            max_attachment_bytes: crate::broker::DEFAULT_MAX_ATTACHMENT_BYTES,
            max_attachments_per_case: crate::broker::DEFAULT_MAX_ATTACHMENTS_PER_CASE,
            max_upload_bytes_in_flight: 64 * 1024 * 1024,
            retention: Duration::from_secs(30 * 24 * 60 * 60),
            max_streams_per_session: 16,
            relay_idle_timeout: Duration::ZERO,
            stream_receive_window: 1024 * 1024,
            receive_window: 4 * 1024 * 1024,
            send_window: 4 * 1024 * 1024,
            udp_receive_buffer: 4 * 1024 * 1024,
            worker_threads: 0,
            store: String::new(),
            node_id: String::new(),
            advertise: String::new(),
            lease: Duration::from_secs(3),
            store_pool_size: 8,
        }
    }
}

/// Command-line values that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--case-ttl`.
    pub case_ttl: Option<Duration>,
    /// `--retention`.
    pub retention: Option<Duration>,
    /// `--store` (or `SOSQ_STORE`).
    pub store: Option<String>,
    /// `--node-id`.
    pub node_id: Option<String>,
    /// `--advertise`.
    pub advertise: Option<String>,
}

impl Config {
    /// Defaults, then `file` if given, then `overrides`; validated.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(ttl) = overrides.case_ttl {
            config.case_ttl = ttl;
        }
        if let Some(retention) = overrides.retention {
            config.retention = retention;
        }
        if let Some(store) = &overrides.store {
            config.store = store.clone();
        }
        if let Some(node_id) = &overrides.node_id {
            config.node_id = node_id.clone();
        }
        if let Some(advertise) = &overrides.advertise {
            config.advertise = advertise.clone();
        }
        if config.is_cluster() {
            config.apply_cluster_defaults(file)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// A cluster node's own defaults for what the file leaves unset: a quicker
    /// `keep_alive` (1 s) and `idle_timeout` (3 s), because a client notices a dead node
    /// only when the idle timeout passes, and failing over within seconds is what a
    /// cluster is for (README "Cluster"). A customer on a bad network who is dropped a
    /// little sooner reconnects and resumes by itself.
    fn apply_cluster_defaults(&mut self, file: Option<&Path>) -> Result<(), ConfigError> {
        let given: toml::Table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.to_path_buf(),
                    cause,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: toml_error_line(&text, &e),
                })?
            }
            None => toml::Table::new(),
        };
        if !given.contains_key("keep_alive") {
            self.keep_alive = CLUSTER_KEEP_ALIVE;
        }
        if !given.contains_key("idle_timeout") {
            self.idle_timeout = CLUSTER_IDLE_TIMEOUT;
        }
        Ok(())
    }

    /// Parses a TOML file; unknown options are an error so typos do not pass silently.
    /// Relative paths in it (`data_dir`, `tls_cert`, `tls_key`) are relative to the file's
    /// directory, not to wherever the daemon was started from.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let parse_error = |message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut config = Config::from_toml(&text).map_err(parse_error)?;
        let given: toml::Table =
            toml::from_str(&text).map_err(|e| parse_error(toml_error_line(&text, &e)))?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        // Only what the file sets: the default data dir stays relative to the current
        // directory, like `--data-dir`.
        if given.contains_key("data_dir") {
            config.data_dir = base.join(&config.data_dir);
        }
        for file in [&mut config.tls_cert, &mut config.tls_key]
            .into_iter()
            .flatten()
        {
            *file = base.join(&*file);
        }
        Ok(config)
    }

    /// Parses TOML text. Errors: the parser's complaint in one line, with where it is.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| toml_error_line(text, &e))
    }

    /// Where the web console listens, given the address the QUIC endpoint actually bound
    /// (`listen` with its port chosen when it was 0): `None` when `web_listen = ""`.
    /// Errors: `web_listen` is neither empty nor an address.
    pub fn web_address(&self, quic_bound: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
        match self.web_listen.as_deref().map(str::trim) {
            None => Ok(Some(SocketAddr::new(self.listen.ip(), quic_bound.port()))),
            Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| ConfigError::Invalid {
                option: "web_listen",
                message: format!(
                    "{text:?} is not an address such as \"0.0.0.0:4433\"; leave it out for the same address as listen, or set it to \"\" to turn the console off"
                ),
            }),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn duration_text<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// A TOML error in one line ("line 3, column 25: expected a value"): the parser's own
/// text spans several lines with a snippet, which the journal would split into separate
/// entries, and a `grep ERROR` would keep only the first.
fn toml_error_line(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Parses "24h", "90s", "1h 30m", "500ms".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"24h\" or \"90s\": {e}"))
}

#[path = "config_customers.rs"]
mod customers;
#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
#[path = "config_validate.rs"]
mod validate;
