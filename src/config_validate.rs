//! [`Config::validate`]: the range checks of every option, after the defaults, the file
//! and the flags are merged (`config.rs`); one clear error naming the option.

use std::time::Duration;

use super::{customers, Config, ConfigError, CHATS_PER_SESSION};

impl Config {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |option: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                option,
                message: message.to_string(),
            })
        };
        self.web_address(self.listen)?;
        if self.web_session_idle.is_zero() {
            return invalid("web_session_idle", "must be longer than zero");
        }
        if self.web_signin_attempts == 0 {
            return invalid("web_signin_attempts", "must be at least 1");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("tls_cert/tls_key", "give both or neither");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log_level) {
            return invalid(
                "log_level",
                &format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or a RUST_LOG-style filter: {e}",
                    self.log_level
                ),
            );
        }
        if self.case_ttl.is_zero() {
            return invalid("case_ttl", "must be longer than zero");
        }
        // Keep at most 1% of the code space live, so a new code is found in a draw or two
        // and a guessed code is almost always wrong.
        let max_cases = (sosq::code::CODE_SPACE / 100) as usize;
        if self.max_open_cases == 0 || self.max_open_cases > max_cases {
            return invalid(
                "max_open_cases",
                &format!("must be between 1 and {max_cases}"),
            );
        }
        for (option, value) in [
            ("hello_timeout", self.hello_timeout),
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if value.is_zero() {
                return invalid(option, "must be longer than zero");
            }
        }
        if self.keep_alive.is_zero() {
            return invalid("keep_alive", "must be longer than zero");
        }
        // One lost keep-alive (and its retransmission) must not drop a live party.
        if self.idle_timeout < 2 * self.keep_alive {
            return invalid(
                "idle_timeout",
                &format!(
                    "must be at least twice keep_alive ({}), or one lost keep-alive would drop a live party",
                    humantime::format_duration(2 * self.keep_alive)
                ),
            );
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return invalid(
                "max_connections/max_connections_per_address",
                "must be at least 1",
            );
        }
        // A burst of 0 would refuse every look-up, right codes too; nothing earned back
        // would lock a party, an address or everyone out for good after one burst.
        for (option, value) in [
            (
                "wrong_codes_per_connection_burst",
                self.wrong_codes_per_connection_burst,
            ),
            (
                "wrong_codes_per_address_burst",
                self.wrong_codes_per_address_burst,
            ),
            ("wrong_codes_total_burst", self.wrong_codes_total_burst),
            (
                "wrong_codes_per_connection_per_minute",
                self.wrong_codes_per_connection_per_minute,
            ),
            (
                "wrong_codes_per_address_per_minute",
                self.wrong_codes_per_address_per_minute,
            ),
            (
                "wrong_codes_total_per_minute",
                self.wrong_codes_total_per_minute,
            ),
            ("sos_per_address_burst", self.sos_per_address_burst),
            (
                "sos_per_address_per_minute",
                self.sos_per_address_per_minute,
            ),
        ] {
            if value == 0 {
                return invalid(option, "must be at least 1");
            }
        }
        customers::validate(self)?;
        if self.retention.is_zero() {
            return invalid("retention", "must be longer than zero");
        }
        if self.max_streams_per_session == 0 {
            return invalid("max_streams_per_session", "must be at least 1");
        }
        // QUIC holds a party to this many streams before the relay sees them: past it, a
        // new forwarded connection would wait silently for QUIC credit instead of being
        // refused by the relay with a reason. So leave room for everything one party may
        // legitimately have open (all of the session's streams may be its own), plus one.
        let session_streams = u64::from(self.max_streams_per_session) + CHATS_PER_SESSION as u64;
        let least = 1 + session_streams + 1;
        if u64::from(self.max_streams_per_connection) < least {
            return invalid(
                "max_streams_per_connection",
                &format!(
                    "must be at least {least}: the control stream, max_streams_per_session ({}) forwarded connections and {} chats, and one more so a stream over the session limit is refused with a reason",
                    self.max_streams_per_session,
                    CHATS_PER_SESSION
                ),
            );
        }
        // QUIC carries windows as variable-length integers below 2^62.
        let most = (1u64 << 62) - 1;
        if self.stream_receive_window == 0 || self.stream_receive_window > most {
            return invalid("stream_receive_window", "must be between 1 and 2^62 - 1");
        }
        if self.receive_window < self.stream_receive_window || self.receive_window > most {
            return invalid(
                "receive_window",
                "must be at least stream_receive_window and below 2^62",
            );
        }
        if self.udp_receive_buffer == 0 {
            return invalid("udp_receive_buffer", "must be more than zero");
        }
        if self.send_window == 0 {
            return invalid("send_window", "must be longer than zero");
        }
        if !self.store.trim().is_empty() && !self.is_cluster() {
            return invalid(
                "store",
                "must be empty (the embedded SQLite store in data_dir) or a PostgreSQL URL like postgres://user@host/db",
            );
        }
        // A heartbeat every third of the lease: one late renewal does not lose the cases.
        if self.lease < Duration::from_millis(300) {
            return invalid("lease", "must be at least 300ms");
        }
        if self.store_pool_size == 0 {
            return invalid("store_pool_size", "must be at least 1");
        }
        if self.node_id.len() > 64
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        {
            return invalid(
                "node_id",
                "at most 64 letters, digits, '.', '_', ':' or '-'",
            );
        }
        Ok(())
    }
}
