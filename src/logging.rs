//! Log lines on stderr (journald takes them as they are under systemd), as text or JSON,
//! filtered by the config file's `log_level`, which a reload can change while the daemon
//! runs. `RUST_LOG`, when set and not empty, wins over `log_level`: it is what a developer
//! or a one-off debugging session sets, and an environment variable silently losing to a
//! file would surprise more than the other way round.

use std::sync::Mutex;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogFormat;

/// The installed logger's filter, changeable at run time.
pub struct Logs {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG`, if it decides the filter.
    rust_log: Option<String>,
    /// The filter in force when it came from `log_level`.
    level: Mutex<String>,
}

/// Why a new `log_level` was not applied.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// `RUST_LOG` is set and decides.
    #[error("RUST_LOG={0:?} is set and decides the log level; unset it to use log_level")]
    RustLogWins(String),
    /// Not a filter (the config's validation catches this first).
    #[error("{0}")]
    Invalid(String),
}

/// Installs the global logger: stderr, `format`, filtered by `RUST_LOG` if set, else by
/// `level` (a `log_level` value, already validated; "info" if it fails to parse anyway).
pub fn init(format: LogFormat, level: &str) -> Logs {
    use std::io::IsTerminal;
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let from_env = rust_log
        .as_deref()
        .and_then(|spec| EnvFilter::builder().parse(spec).ok());
    let rust_log = from_env.as_ref().and(rust_log);
    let filter = from_env.unwrap_or_else(|| {
        EnvFilter::builder()
            .parse(level)
            .unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let (filter, handle) = reload::Layer::new(filter);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(logs.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => registry.with(logs.json()).init(),
    }
    Logs {
        handle,
        rust_log,
        level: Mutex::new(level.to_string()),
    }
}

impl Logs {
    /// Applies a new `log_level`; returns the one it replaced, or `None` if it is the same.
    ///
    /// Errors: `RUST_LOG` decides the filter ([`LogLevelError::RustLogWins`]), or `level`
    /// is not a filter.
    pub fn set_level(&self, level: &str) -> Result<Option<String>, LogLevelError> {
        let mut current = self
            .level
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current == level {
            return Ok(None);
        }
        if let Some(rust_log) = &self.rust_log {
            return Err(LogLevelError::RustLogWins(rust_log.clone()));
        }
        let filter = EnvFilter::builder()
            .parse(level)
            .map_err(|e| LogLevelError::Invalid(e.to_string()))?;
        self.handle
            .reload(filter)
            .map_err(|e| LogLevelError::Invalid(e.to_string()))?;
        Ok(Some(std::mem::replace(&mut *current, level.to_string())))
    }
}
