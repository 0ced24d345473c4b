//! The daemon's TLS identity: a self-signed certificate made with rcgen on first start and
//! kept in the data dir (owner-only), identified to clients by its SHA-256 fingerprint.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::fsutil;

/// Certificate file name in the data dir.
pub const CERT_FILE: &str = "cert.pem";
/// Private key file name in the data dir.
pub const KEY_FILE: &str = "key.pem";

/// Why the TLS identity could not be loaded or made.
///
/// Each message carries its cause in its own text and none is an error `source`, so
/// `sosqd`'s one-line report (which prints the whole chain) shows every cause once.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A read-only command found no certificate: nothing is made behind the admin's back.
    #[error(
        "no certificate at {path} yet: `sosqd fingerprint --create --data-dir {dir}` makes \
         one (so does the daemon's first start)"
    )]
    Missing {
        /// Where it looked, absolute.
        path: PathBuf,
        /// The data dir, absolute.
        dir: PathBuf,
    },
    /// A file is not what it should be.
    #[error("{path} is not a usable PEM {what}: {message}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
        /// Details.
        message: String,
    },
    /// rcgen failed to make a certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate or key.
    #[error("TLS setup failed: {0}")]
    Rustls(rustls::Error),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e)
    }
}

/// A certificate chain with its key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain, DER, the server's own certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// SHA-256 fingerprint of the certificate, as clients pin it.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|cert| sosq::tls::fingerprint(cert))
            .unwrap_or_default()
    }

    /// Loads the identity kept in `data_dir`; never makes one, so a read-only command run
    /// against the wrong directory cannot mint an unrelated certificate.
    ///
    /// Errors: [`TlsError::Missing`] (with where it looked and how to make one) if there is
    /// neither a certificate nor a key; [`TlsError::BadPem`] if either is missing or bad.
    pub fn load_existing(data_dir: &Path) -> Result<Identity, TlsError> {
        let cert_path = data_dir.join(CERT_FILE);
        let key_path = data_dir.join(KEY_FILE);
        if !cert_path.exists() && data_dir.is_dir() {
            // One may be being made right now: wait for its maker's turn to end.
            let _turn = fsutil::lock_dir(data_dir).map_err(io_error(data_dir))?;
        }
        if !cert_path.exists() && !key_path.exists() {
            return Err(TlsError::Missing {
                path: absolute(&cert_path),
                dir: absolute(data_dir),
            });
        }
        Identity::load_kept(&cert_path, &key_path)
    }

    /// The server's identity from its settings: the operator's files (`tls_cert`,
    /// `tls_key`) if configured, else the self-signed certificate kept in the data dir.
    /// Makes nothing: read-only commands and reloads use this.
    ///
    /// Errors: no certificate yet (naming where it looked and how to make one), or an
    /// unreadable or bad one (see [`Identity::load_existing`]).
    pub fn from_config(config: &crate::config::Config) -> Result<Identity, TlsError> {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Identity::load(cert, key),
            _ => Identity::load_existing(&config.data_dir),
        }
    }

    /// [`Identity::from_config`], making the self-signed certificate in the data dir if
    /// there is none yet: the daemon's start and `sosqd fingerprint --create` only.
    pub fn from_config_or_create(config: &crate::config::Config) -> Result<Identity, TlsError> {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Identity::load(cert, key),
            _ => Identity::load_or_create(&config.data_dir),
        }
    }

    /// Loads the identity from `data_dir`, making a new self-signed one (and the dir) if
    /// there is neither a certificate nor a key. Only the daemon and `sosqd fingerprint
    /// --create` make one.
    ///
    /// Concurrent makers take turns on the data dir's lock, so they end with one pair;
    /// the key is in place before the certificate, so whoever sees `cert.pem` finds its
    /// key. Errors: as [`Identity::load_existing`], plus [`TlsError::Io`] if the files
    /// cannot be written (a data dir owned by another user is refused with the fix).
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, TlsError> {
        let cert_path = data_dir.join(CERT_FILE);
        let key_path = data_dir.join(KEY_FILE);
        if !cert_path.exists() {
            fsutil::create_private_dir(data_dir).map_err(io_error(data_dir))?;
            let _turn = fsutil::lock_dir(data_dir).map_err(io_error(data_dir))?;
            if !cert_path.exists() && !key_path.exists() {
                Identity::create(&cert_path, &key_path)?;
            }
        }
        Identity::load_kept(&cert_path, &key_path)
    }

    /// [`Identity::load`] for the pair kept in the data dir, where a file this user may not
    /// read is named with its owner and the fix rather than as a bad PEM file.
    fn load_kept(cert_path: &Path, key_path: &Path) -> Result<Identity, TlsError> {
        for path in [cert_path, key_path] {
            if let Err(e) = std::fs::File::open(path) {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    return Err(TlsError::Io {
                        path: path.to_path_buf(),
                        cause: fsutil::explain_denied(e, path),
                    });
                }
            }
        }
        Identity::load(cert_path, key_path)
    }

    /// Loads a certificate chain and key from PEM files (an operator's own, or ours).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, TlsError> {
        let bad_cert = |message: String| TlsError::BadPem {
            path: cert_path.to_path_buf(),
            what: "certificate",
            message,
        };
        let chain = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| bad_cert(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_cert(e.to_string()))?;
        if chain.is_empty() {
            return Err(bad_cert("no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::BadPem {
            path: key_path.to_path_buf(),
            what: "private key",
            message: e.to_string(),
        })?;
        Ok(Identity { chain, key })
    }

    /// Writes a new key and certificate, each through a temporary file and a rename.
    fn create(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        let names = vec!["sosqd".to_string(), "localhost".to_string()];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        // Key first: a crash in between leaves a key without a certificate, which the next
        // start reports instead of silently replacing.
        fsutil::write_private_atomically(
            key_path,
            generated.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(io_error(key_path))?;
        fsutil::write_private_atomically(cert_path, generated.cert.pem().as_bytes())
            .map_err(io_error(cert_path))?;
        tracing::info!(cert = %cert_path.display(), "made a new self-signed certificate");
        Ok(())
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |cause| TlsError::Io { path, cause }
}

/// `path` made absolute for messages; as given if that fails.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_makes_a_private_certificate_and_later_starts_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = Identity::load_or_create(&data).unwrap();
        let again = Identity::load_or_create(&data).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
        for file in [CERT_FILE, KEY_FILE] {
            let mode = std::fs::metadata(data.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn a_missing_certificate_beside_a_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let err = Identity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains(CERT_FILE), "{err}");
    }

    #[test]
    fn a_read_only_load_makes_nothing_and_says_where_it_looked_and_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let err = Identity::load_existing(&data).unwrap_err().to_string();
        assert!(
            err.contains(&data.join(CERT_FILE).display().to_string()),
            "{err}"
        );
        assert!(err.contains("sosqd fingerprint --create"), "{err}");
        assert!(!data.exists(), "nothing made");
        std::fs::create_dir(&data).unwrap();
        assert!(Identity::load_existing(&data).is_err());
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "nothing made");
        let made = Identity::load_or_create(&data).unwrap();
        let read = Identity::load_existing(&data).unwrap();
        assert_eq!(made.fingerprint(), read.fingerprint());
    }

    #[test]
    fn concurrent_makers_end_with_one_pair() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let fingerprints: Vec<String> = std::thread::scope(|scope| {
            let makers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| Identity::load_or_create(&data).map(|i| i.fingerprint())))
                .collect();
            makers
                .into_iter()
                .map(|maker| maker.join().unwrap().unwrap())
                .collect()
        });
        assert!(fingerprints.iter().all(|f| f == &fingerprints[0]));
        let on_disk = Identity::load_existing(&data).unwrap();
        assert_eq!(on_disk.fingerprint(), fingerprints[0]);
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}
