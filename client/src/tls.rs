//! TLS for clients: the server is trusted by the SHA-256 fingerprint of its certificate.
//!
//! sosqd makes a self-signed certificate on first start, so there is no CA to ask; the admin
//! hands out the fingerprint (`sosqd fingerprint`) and the client pins it. The handshake
//! signature is still verified against the pinned certificate's key, so holding a copy of the
//! certificate is not enough to impersonate the server.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The SHA-256 fingerprint of a DER certificate, as 64 lowercase hex digits.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
    hex(digest.as_ref())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalizes a typed fingerprint (any case, optional `:` separators, optional `sha256:`
/// prefix) to 64 lowercase hex digits.
pub fn parse_fingerprint(typed: &str) -> Result<String, String> {
    let trimmed = typed.trim();
    if trimmed.is_empty() {
        // What `export SOSQ_FINGERPRINT=$(sosqd fingerprint)` leaves when that command
        // failed (no certificate where it ran): say so rather than quote an empty string.
        return Err("the certificate fingerprint is empty: if it came from              `$(sosqd fingerprint)`, that command failed (run it where the daemon's data dir              is, or with --data-dir); --fingerprint or SOSQ_FINGERPRINT takes the 64 hex digits"
            .into());
    }
    let without_prefix = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let compact: String = without_prefix
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if compact.len() == 64 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(compact)
    } else {
        Err(format!(
            "{typed:?} is not a SHA-256 fingerprint (64 hex digits, as printed by `sosqd fingerprint`)"
        ))
    }
}

/// The crypto provider used on both sides (ring: pure Rust build, no cmake).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A verifier trusting the CA certificates in a PEM file (an operator's own PKI).
pub fn ca_verifier(path: &std::path::Path) -> Result<Arc<dyn ServerCertVerifier>, String> {
    use rustls::pki_types::pem::PemObject;
    let unusable =
        |e: &dyn std::fmt::Display| format!("cannot use CA file {}: {e}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unusable(&e))? {
        roots
            .add(cert.map_err(|e| unusable(&e))?)
            .map_err(|e| unusable(&e))?;
    }
    if roots.is_empty() {
        return Err(unusable(&"it holds no certificate"));
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        crypto_provider(),
    )
    .build()
    .map_err(|e| unusable(&e))?;
    Ok(verifier)
}

/// Accepts exactly the server certificate whose fingerprint is pinned.
#[derive(Debug)]
pub struct PinnedServerCert {
    expected: String,
    provider: Arc<CryptoProvider>,
    /// The fingerprint the server actually presented, for the error message.
    seen: Mutex<Option<String>>,
}

impl PinnedServerCert {
    /// A verifier pinning `expected` (already normalized by [`parse_fingerprint`]).
    pub fn new(expected: String) -> Arc<Self> {
        Arc::new(PinnedServerCert {
            expected,
            provider: crypto_provider(),
            seen: Mutex::new(None),
        })
    }

    /// The pinned fingerprint.
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// The fingerprint the server presented, once a handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|seen| seen.clone())
    }
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(actual.clone());
        }
        // Fingerprints are public; a plain comparison leaks nothing worth having.
        if actual == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {actual} does not match the pinned {}",
                self.expected
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalized() {
        let fp = "AB".repeat(32);
        assert_eq!(parse_fingerprint(&fp).unwrap(), "ab".repeat(32));
        let with_colons = vec!["Ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&with_colons).unwrap(), "ab".repeat(32));
        assert_eq!(
            parse_fingerprint(&format!("sha256:{}", "0".repeat(64))).unwrap(),
            "0".repeat(64)
        );
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
