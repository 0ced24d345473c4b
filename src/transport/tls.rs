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
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
    Rustls(#[from] rustls::Error),
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

    /// Loads the identity from `data_dir`, making a new self-signed one on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, TlsError> {
        let cert_path = data_dir.join(CERT_FILE);
        let key_path = data_dir.join(KEY_FILE);
        if !cert_path.exists() && !key_path.exists() {
            Identity::create(data_dir, &cert_path, &key_path)?;
        }
        Identity::load(&cert_path, &key_path)
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

    fn create(data_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        fsutil::create_private_dir(data_dir).map_err(io(data_dir))?;
        let names = vec!["sosqd".to_string(), "localhost".to_string()];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        // Key first: a crash in between leaves a key without a certificate, which the next
        // start reports instead of silently replacing.
        fsutil::write_private_atomically(
            key_path,
            generated.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(io(key_path))?;
        fsutil::write_private_atomically(cert_path, generated.cert.pem().as_bytes())
            .map_err(io(cert_path))?;
        tracing::info!(cert = %cert_path.display(), "made a new self-signed certificate");
        Ok(())
    }
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
}
