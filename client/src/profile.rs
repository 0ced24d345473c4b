//! Support profiles: the branded quick-support file an admin hands out. It carries
//! everything a customer's `sosq request --profile FILE` needs: where the broker is, how to
//! trust it, which team to ask, and a welcome text to show while waiting.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a profile file holds (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportProfile {
    /// The broker's address, `host:port`, as customers reach it.
    pub server: String,
    /// SHA-256 fingerprint of the broker's certificate.
    pub fingerprint: String,
    /// The team queue to ask; none means `general`.
    #[serde(default)]
    pub group: Option<String>,
    /// Shown to the customer while waiting.
    #[serde(default)]
    pub welcome: Option<String>,
}

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read or written.
    #[error("cannot access support profile {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Why (in the message, not an error `source`, so a report of the whole chain
        /// says it once).
        cause: std::io::Error,
    },
    /// The file is not a profile.
    #[error("{path} is not a sosq support profile: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl SupportProfile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<SupportProfile, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| ProfileError::Io {
            path: shown.clone(),
            cause,
        })?;
        let profile: SupportProfile =
            serde_json::from_str(&text).map_err(|e| ProfileError::Invalid {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        crate::tls::parse_fingerprint(&profile.fingerprint).map_err(|message| {
            ProfileError::Invalid {
                path: shown,
                message,
            }
        })?;
        Ok(profile)
    }

    /// Writes the profile as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ProfileError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|cause| ProfileError::Io {
            path: path.display().to_string(),
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_and_a_bad_one_is_named() {
        let dir = std::env::temp_dir().join(format!("sosq-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("support.sosq");
        let profile = SupportProfile {
            server: "support.example.com:4433".into(),
            fingerprint: "ab".repeat(32),
            group: Some("billing".into()),
            welcome: Some("Hello from Example Corp".into()),
        };
        profile.save(&path).unwrap();
        assert_eq!(SupportProfile::load(&path).unwrap(), profile);
        std::fs::write(&path, "{\"server\": 1}").unwrap();
        let err = SupportProfile::load(&path).unwrap_err().to_string();
        assert!(err.contains("support.sosq"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
