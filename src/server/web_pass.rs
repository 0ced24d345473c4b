//! The web pass: how the web front's in-process parties say who they stand for.
//!
//! A customer in a browser (`/help`) and an expert chatting from the console are real
//! parties of the broker: the web front runs a `sosq` client for each inside the daemon,
//! connected over loopback QUIC (`crate::web::bridge`), so liveness, pairing, the relay,
//! traffic counts, transfers and the history are the ones a native party gets, with no
//! second implementation. That connection comes from 127.0.0.1, though, and the throttles
//! (SOS per address, wrong codes) and the history must see the browser's own address. The
//! client therefore says hello with a pass that names the browser's address and, for
//! staff, the signed-in user; it is signed with an HMAC key derived from the TLS private
//! key (so every node of a cluster accepts another's pass when a resume is redirected to
//! the case's home node, and nobody without the key can claim an address), and lives
//! [`LIFETIME_MS`]: one hello, or one redirect followed.

use std::net::SocketAddr;

use ring::hmac;
use sosq::protocol::Timestamp;

/// What every web pass starts with (a staff token starts `sosq_`, a delegation token
/// `sosqnode.`).
const PREFIX: &str = "sosqweb.";
/// How long a pass is good for, in milliseconds.
const LIFETIME_MS: u64 = 30_000;

/// Who a web pass stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPass {
    /// The signed-in staff member; none for a customer.
    pub user: Option<String>,
    /// The browser's address, as the web server saw it.
    pub address: SocketAddr,
}

/// The key web passes are signed with.
pub struct WebPassKey {
    key: hmac::Key,
}

impl WebPassKey {
    /// The key of the daemon (or cluster) whose nodes hold `identity` (its private key).
    pub fn from_identity(identity: &crate::transport::Identity) -> WebPassKey {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, b"sosq web pass v1");
        let seed = hmac::sign(&derive, identity.key.secret_der());
        WebPassKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, seed.as_ref()),
        }
    }

    /// A pass for `pass`, good until [`LIFETIME_MS`] after `now`.
    pub fn issue(&self, pass: &WebPass, now: Timestamp) -> String {
        let claim = format!(
            "{}|{}|{}",
            now.0 + LIFETIME_MS,
            pass.address,
            pass.user.as_deref().unwrap_or("")
        );
        let tag = hmac::sign(&self.key, claim.as_bytes());
        format!(
            "{PREFIX}{}.{}",
            sosq::tls::hex(claim.as_bytes()),
            sosq::tls::hex(tag.as_ref())
        )
    }

    /// Whether `token` looks like a web pass (so it is never looked up as a staff token).
    pub fn is_web_pass(token: &str) -> bool {
        token.starts_with(PREFIX)
    }

    /// What a valid, unexpired pass stands for; `None` for anything else.
    pub fn verify(&self, token: &str, now: Timestamp) -> Option<WebPass> {
        let (claim, tag) = token.strip_prefix(PREFIX)?.split_once('.')?;
        let claim = super::delegation::unhex(claim)?;
        hmac::verify(&self.key, &claim, &super::delegation::unhex(tag)?).ok()?;
        let claim = String::from_utf8(claim).ok()?;
        let mut parts = claim.splitn(3, '|');
        let expires: u64 = parts.next()?.parse().ok()?;
        let address: SocketAddr = parts.next()?.parse().ok()?;
        let user = parts.next()?;
        (now.0 <= expires).then(|| WebPass {
            user: (!user.is_empty()).then(|| user.to_string()),
            address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WebPassKey {
        let made = rcgen::generate_simple_self_signed(vec!["sosqd".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        WebPassKey::from_identity(&crate::transport::Identity {
            chain: vec![made.cert.der().clone()],
            key,
        })
    }

    #[test]
    fn a_pass_names_its_browser_and_user_until_it_expires_and_only_under_its_key() {
        let ours = key();
        let now = Timestamp(5_000_000);
        let customer = WebPass {
            user: None,
            address: "203.0.113.7:50123".parse().unwrap(),
        };
        let token = ours.issue(&customer, now);
        assert!(WebPassKey::is_web_pass(&token));
        assert_eq!(ours.verify(&token, now), Some(customer.clone()));
        assert_eq!(
            ours.verify(&token, Timestamp(now.0 + LIFETIME_MS + 1)),
            None,
            "expired"
        );
        assert_eq!(key().verify(&token, now), None, "another daemon's key");
        let staff = WebPass {
            user: Some("ana|x".into()),
            address: "[2001:db8::1]:443".parse().unwrap(),
        };
        assert_eq!(ours.verify(&ours.issue(&staff, now), now), Some(staff));
        // Any change to the claim breaks the tag.
        let (claim, tag) = token.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let mut forged = super::super::delegation::unhex(claim).unwrap();
        forged[0] ^= 1;
        let forged = format!("{PREFIX}{}.{tag}", sosq::tls::hex(&forged));
        assert_eq!(ours.verify(&forged, now), None);
        assert_eq!(ours.verify("sosqweb.zz.zz", now), None);
        assert_eq!(ours.verify("sosq_abc", now), None);
    }
}
