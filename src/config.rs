//! One validated [`Config`] from, in rising precedence: the embedded defaults, the config
//! file, and command-line flags. `config/sosqd.toml` documents every option.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::broker::BrokerConfig;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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

/// Everything the daemon needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Where the certificate, key and users live.
    pub data_dir: PathBuf,
    /// How long after creation an open case expires.
    #[serde(deserialize_with = "duration")]
    pub case_ttl: Duration,
    /// The most open cases held at once.
    pub max_open_cases: usize,
    /// How long a new connection has to say hello.
    #[serde(deserialize_with = "duration")]
    pub hello_timeout: Duration,
    /// A connection silent for this long is dropped (clients send keep-alives).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// The most bidirectional streams a peer may have open at once (control + relayed).
    pub max_streams_per_connection: u32,
    /// The most relayed streams one session (one paired case) may have open at once.
    pub max_streams_per_session: u32,
    /// A relayed stream that carries no byte either way for this long is reset.
    #[serde(deserialize_with = "duration")]
    pub relay_idle_timeout: Duration,
    /// Bytes a peer may send on one stream before the broker has read them (QUIC flow control).
    pub stream_receive_window: u64,
    /// Bytes a peer may send across all streams of its connection before the broker has read them.
    pub receive_window: u64,
    /// Bytes the broker keeps, per connection, of what it writes until the peer acknowledges it.
    pub send_window: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            data_dir: PathBuf::from("sosqd-data"),
            case_ttl: Duration::from_secs(24 * 60 * 60),
            max_open_cases: 200_000,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_streams_per_connection: 32,
            max_streams_per_session: 16,
            relay_idle_timeout: Duration::from_secs(15 * 60),
            stream_receive_window: 1024 * 1024,
            receive_window: 4 * 1024 * 1024,
            send_window: 4 * 1024 * 1024,
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
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file; unknown options are an error so typos do not pass silently.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |option, message: &str| {
            Err(ConfigError::Invalid {
                option,
                message: message.to_string(),
            })
        };
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
        if self.hello_timeout.is_zero() || self.idle_timeout.is_zero() {
            return invalid("hello_timeout/idle_timeout", "must be longer than zero");
        }
        if self.max_streams_per_connection < 2 {
            return invalid(
                "max_streams_per_connection",
                "must be at least 2 (the control stream and one session stream)",
            );
        }
        if self.max_streams_per_session == 0 {
            return invalid("max_streams_per_session", "must be at least 1");
        }
        if self.relay_idle_timeout.is_zero() {
            return invalid("relay_idle_timeout", "must be longer than zero");
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
        if self.send_window == 0 {
            return invalid("send_window", "must be longer than zero");
        }
        Ok(())
    }

    /// The worst-case bytes the broker buffers for one party's connection: what the peer
    /// may send unread, what we keep of what we write, and the relay's copy buffers of the
    /// session's streams (README "Memory" explains the sum).
    pub fn memory_bound_per_connection(&self) -> u64 {
        let copy_buffers =
            u64::from(self.max_streams_per_session) * 2 * crate::relay::COPY_BUFFER as u64;
        self.receive_window + self.send_window + copy_buffers
    }

    /// The limits the relay enforces.
    pub fn relay_limits(&self) -> crate::relay::RelayLimits {
        crate::relay::RelayLimits {
            max_streams_per_session: self.max_streams_per_session as usize,
            idle_timeout: self.relay_idle_timeout,
        }
    }

    /// The part of the configuration the broker core needs.
    pub fn broker(&self) -> BrokerConfig {
        BrokerConfig {
            case_ttl: self.case_ttl,
            max_open_cases: self.max_open_cases,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Parses "24h", "90s", "1h 30m", "500ms".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"24h\" or \"90s\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_file_matches_the_defaults() {
        let shipped = include_str!("../config/sosqd.toml");
        let parsed = Config::from_toml(shipped).expect("config/sosqd.toml parses");
        let defaults = Config::default();
        assert_eq!(format!("{parsed:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn file_then_flags_take_precedence() {
        let mut file = Config::from_toml("case_ttl = \"2h\"\nlisten = \"127.0.0.1:9000\"").unwrap();
        assert_eq!(file.case_ttl, Duration::from_secs(7200));
        file.listen = "127.0.0.1:1".parse().unwrap();
        assert_eq!(file.max_open_cases, Config::default().max_open_cases);
    }

    #[test]
    fn unknown_options_and_bad_values_are_clear_errors() {
        let err = Config::from_toml("case_tll = \"2h\"").unwrap_err();
        assert!(err.contains("case_tll"), "{err}");
        let err = Config::from_toml("case_ttl = \"soon\"").unwrap_err();
        assert!(err.contains("soon"), "{err}");
        let zero = Config {
            case_ttl: Duration::ZERO,
            ..Config::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn relay_limits_and_windows_are_checked() {
        let narrow = Config {
            receive_window: 1024,
            stream_receive_window: 4096,
            ..Config::default()
        };
        assert!(
            narrow.validate().is_err(),
            "a stream window past the connection's"
        );
        let no_streams = Config {
            max_streams_per_session: 0,
            ..Config::default()
        };
        assert!(no_streams.validate().is_err());
        // 4 MiB + 4 MiB + 16 streams x 2 x 64 KiB, as config/sosqd.toml documents.
        assert_eq!(
            Config::default().memory_bound_per_connection(),
            10 * 1024 * 1024
        );
    }
}
