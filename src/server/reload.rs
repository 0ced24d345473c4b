//! Applying a re-read configuration to the running daemon (SIGHUP, `systemctl reload`),
//! without dropping anyone.
//!
//! What reloads, and when it takes effect:
//! - the TLS certificate and key (`tls_cert`/`tls_key`, or `cert.pem`/`key.pem` in the
//!   data dir, re-read even under the same names): new handshakes get the new ones,
//!   connections already up keep theirs;
//! - `log_level`, at once (unless `RUST_LOG` is set, which wins);
//! - admission (`max_connections`, `max_connections_per_address`,
//!   `retry_above_handshakes_per_second`): the next connection attempt; nobody already in
//!   is dropped;
//! - the wrong-code budgets (`wrong_codes_*`): the next look-up; what was spent stays spent;
//! - `case_ttl`, `max_open_cases`, the `response_target_*`: new cases and new waits (cases
//!   keep the expiry and response deadline they were given);
//! - `hello_timeout`, `handshake_timeout`: new connections; `retention`: the next sweep;
//!   `shutdown_grace`: the next shutdown.
//!
//! Everything else is fixed for the daemon's life, because it is built into the socket, the
//! runtime or every connection's transport: `listen`, `data_dir`, `metrics_listen`,
//! `log_format`, `worker_threads`, `udp_receive_buffer`, `keep_alive`, `idle_timeout`,
//! `max_streams_per_connection`, the flow-control windows, `max_streams_per_session` and
//! `relay_idle_timeout`. A change to one of those is logged as a warning naming it, and the
//! running value stays until a restart.
//!
//! Users and tokens need no reload: `users.json` is re-read whenever it changes (see
//! `store::users`). A reload is all or nothing: an unreadable certificate or an invalid value
//! changes nothing, and the daemon keeps serving on what it had.

use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use serde_json::Value;

use super::{ServerError, Shared};
use crate::config::Config;
use crate::logging::Logs;
use crate::transport::{self, Identity};

/// What a reload changed, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// One line per change now in force, e.g. "max_connections 50000 -> 100".
    pub applied: Vec<String>,
    /// Options changed in the file that keep their running value until a restart, as
    /// "name old -> new".
    pub needs_restart: Vec<String>,
    /// Changes that were not applied for another reason (`RUST_LOG` deciding the level).
    pub warnings: Vec<String>,
}

/// The TLS material in force: a digest to notice a change, and the fingerprint to log.
struct TlsInForce {
    digest: Vec<u8>,
    fingerprint: String,
}

/// Applies new configurations to a running daemon. Made by [`super::Server::reloader`].
pub struct Reloader {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    logs: Option<Arc<Logs>>,
    /// Also serializes reloads: one at a time.
    tls: Mutex<Option<TlsInForce>>,
}

impl Reloader {
    pub(super) fn new(
        shared: Arc<Shared>,
        endpoint: quinn::Endpoint,
        logs: Option<Arc<Logs>>,
    ) -> Reloader {
        // What the daemon started with, read back the way a reload reads it.
        let tls = Identity::from_config(&shared.config())
            .ok()
            .map(|identity| TlsInForce {
                digest: digest(&identity),
                fingerprint: identity.fingerprint(),
            });
        Reloader {
            shared,
            endpoint,
            logs,
            tls: Mutex::new(tls),
        }
    }

    /// Puts `new` (freshly read from the config file, with the command line's overrides)
    /// in force as far as it can be at run time (see the module documentation), and logs
    /// one line per change and a warning per option that needs a restart.
    ///
    /// Errors (nothing changed, the daemon keeps its settings): an invalid value, a
    /// certificate or key that cannot be read or used, or shutdown already begun.
    pub fn reload(&self, new: Config) -> Result<ReloadReport, ServerError> {
        let mut tls = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.is_shutting_down() {
            return Err(ServerError::ShuttingDown);
        }
        new.validate()?;
        let old = self.shared.config();
        let running = (*old).clone();
        let effective = Config {
            tls_cert: new.tls_cert.clone(),
            tls_key: new.tls_key.clone(),
            log_level: new.log_level.clone(),
            case_ttl: new.case_ttl,
            max_open_cases: new.max_open_cases,
            hello_timeout: new.hello_timeout,
            handshake_timeout: new.handshake_timeout,
            max_connections: new.max_connections,
            max_connections_per_address: new.max_connections_per_address,
            retry_above_handshakes_per_second: new.retry_above_handshakes_per_second,
            shutdown_grace: new.shutdown_grace,
            response_target_critical: new.response_target_critical,
            response_target_high: new.response_target_high,
            response_target_normal: new.response_target_normal,
            response_target_low: new.response_target_low,
            wrong_codes_per_connection_burst: new.wrong_codes_per_connection_burst,
            wrong_codes_per_connection_per_minute: new.wrong_codes_per_connection_per_minute,
            wrong_codes_per_address_burst: new.wrong_codes_per_address_burst,
            wrong_codes_per_address_per_minute: new.wrong_codes_per_address_per_minute,
            wrong_codes_total_burst: new.wrong_codes_total_burst,
            wrong_codes_total_per_minute: new.wrong_codes_total_per_minute,
            sos_per_address_burst: new.sos_per_address_burst,
            sos_per_address_per_minute: new.sos_per_address_per_minute,
            retention: new.retention,
            ..running
        };
        effective.validate()?;
        // Read-only: a reload never makes a new identity (that would change the fingerprint
        // every client pins).
        let identity = Identity::from_config(&effective)?;
        let identity_digest = digest(&identity);
        let new_tls = match tls.as_ref() {
            Some(current) if current.digest == identity_digest => None,
            _ => Some(transport::server_config(&effective, &identity)?),
        };

        let mut report = ReloadReport::default();
        if let Some(server_config) = new_tls {
            let web_tls = match self.shared.web_tls() {
                Some(_) => Some(
                    crate::web::tls_config(&identity)
                        .map_err(|e| crate::transport::TlsError::Generate(e.to_string()))?,
                ),
                None => None,
            };
            let swapped = self.shared.unless_shutting_down(|| {
                self.endpoint.set_server_config(Some(server_config));
                if let Some(web_tls) = web_tls {
                    self.shared.set_web_tls(web_tls);
                }
            });
            if !swapped {
                return Err(ServerError::ShuttingDown);
            }
            let fingerprint = identity.fingerprint();
            self.shared.set_fingerprint(fingerprint.clone());
            let was = tls
                .as_ref()
                .map(|current| format!(", was {}", current.fingerprint))
                .unwrap_or_default();
            report.applied.push(format!(
                "tls certificate (new fingerprint {fingerprint}{was})"
            ));
            *tls = Some(TlsInForce {
                digest: identity_digest,
                fingerprint,
            });
        }
        for (name, before, after) in differences(&old, &effective) {
            match (name.as_str(), &self.logs) {
                ("log_level", Some(logs)) => match logs.set_level(&effective.log_level) {
                    Ok(_) => report
                        .applied
                        .push(format!("log level {before} -> {after}")),
                    Err(e) => report
                        .warnings
                        .push(format!("log_level {after} not applied: {e}")),
                },
                _ => report.applied.push(format!("{name} {before} -> {after}")),
            }
        }
        report.needs_restart = differences(&effective, &new)
            .into_iter()
            .map(|(name, before, after)| format!("{name} {before} -> {after}"))
            .collect();
        self.shared.set_config(effective);

        for line in &report.applied {
            tracing::info!("reloaded: {line}");
        }
        for line in &report.needs_restart {
            tracing::warn!("not reloaded, needs a restart: {line}");
        }
        for line in &report.warnings {
            tracing::warn!("not reloaded: {line}");
        }
        if report == ReloadReport::default() {
            tracing::info!("reloaded: nothing changed");
        }
        Ok(report)
    }
}

/// A digest of the whole chain and the key, so a new intermediate or key counts too.
fn digest(identity: &Identity) -> Vec<u8> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for cert in &identity.chain {
        let cert: &CertificateDer<'_> = cert;
        context.update(&(cert.len() as u64).to_be_bytes());
        context.update(cert);
    }
    context.update(identity.key.secret_der());
    context.finish().as_ref().to_vec()
}

/// The options whose values differ, by their config-file names: (name, before, after).
fn differences(before: &Config, after: &Config) -> Vec<(String, String, String)> {
    let (Ok(Value::Object(before)), Ok(Value::Object(after))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Vec::new();
    };
    after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(value))
        .map(|(name, value)| (name.clone(), shown(before.get(name)), shown(Some(value))))
        .collect()
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "unset".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_changed_option_with_both_values() {
        let before = Config::default();
        let after = Config {
            max_connections: 100,
            case_ttl: std::time::Duration::from_secs(7200),
            tls_cert: Some("/etc/sosqd/cert.pem".into()),
            ..Config::default()
        };
        let mut changed = differences(&before, &after);
        changed.sort();
        assert_eq!(
            changed,
            vec![
                ("case_ttl".into(), "1day".into(), "2h".into()),
                ("max_connections".into(), "50000".into(), "100".into()),
                (
                    "tls_cert".into(),
                    "unset".into(),
                    "/etc/sosqd/cert.pem".into()
                ),
            ]
        );
        assert!(differences(&before, &Config::default()).is_empty());
    }
}
