//! Console delegation between cluster nodes: a console on one node acts on a case served by
//! another node on behalf of its signed-in staff member, who has no token to give (the
//! console only ever saw it at sign-in).
//!
//! The console follows the redirect itself: it connects to the case's node like `sosq`
//! does and sends the redirect's `Redeem`, saying hello with a short-lived delegation token
//! instead of the staff token. The token names the user and an expiry and is signed with an
//! HMAC key derived from the TLS private key every node of a cluster shares (the key that
//! already proves to every client that a node is the cluster), so only a node of the same
//! cluster can make one. The receiving node checks the signature and the expiry, then looks
//! the user up and treats the connection as that user (revoked: refused), so the role
//! matrix, the ticket and the history are the same as for the user's own `sosq`.
//! A single node never issues or accepts one.

use ring::hmac;
use sosq::protocol::Timestamp;

/// What every delegation token starts with (a staff token starts `sosq_`).
const PREFIX: &str = "sosqnode.";
/// How long a delegation token is good for, in milliseconds: one forwarded request.
const LIFETIME_MS: u64 = 30_000;

/// The cluster's delegation key.
pub struct Delegation {
    key: hmac::Key,
}

impl Delegation {
    /// The delegation key of the cluster whose nodes hold `identity` (its private key, DER).
    pub fn from_identity(identity: &crate::transport::Identity) -> Delegation {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, b"sosq console delegation v1");
        let seed = hmac::sign(&derive, identity.key.secret_der());
        Delegation {
            key: hmac::Key::new(hmac::HMAC_SHA256, seed.as_ref()),
        }
    }

    /// A token that lets this cluster's nodes take a connection for staff member `user`
    /// until [`LIFETIME_MS`] after `now`.
    pub fn token(&self, user: &str, now: Timestamp) -> String {
        let claim = format!("{user}.{}", now.0 + LIFETIME_MS);
        let tag = hmac::sign(&self.key, claim.as_bytes());
        format!("{PREFIX}{claim}.{}", sosq::tls::hex(tag.as_ref()))
    }

    /// Whether `token` looks like a delegation token (so it is never looked up as a staff
    /// token).
    pub fn is_delegation(token: &str) -> bool {
        token.starts_with(PREFIX)
    }

    /// The user a valid, unexpired `token` names; `None` for anything else.
    pub fn verify(&self, token: &str, now: Timestamp) -> Option<String> {
        let rest = token.strip_prefix(PREFIX)?;
        let (claim, tag) = rest.rsplit_once('.')?;
        let tag = unhex(tag)?;
        hmac::verify(&self.key, claim.as_bytes(), &tag).ok()?;
        let (user, expires) = claim.rsplit_once('.')?;
        (now.0 <= expires.parse::<u64>().ok()?).then(|| user.to_string())
    }
}

pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> crate::transport::Identity {
        let made = rcgen::generate_simple_self_signed(vec!["sosqd".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        crate::transport::Identity {
            chain: vec![made.cert.der().clone()],
            key,
        }
    }

    #[test]
    fn a_token_names_its_user_until_it_expires_and_only_under_its_clusters_key() {
        let ours = Delegation::from_identity(&identity());
        let now = Timestamp(1_000_000);
        let token = ours.token("ana", now);
        assert!(Delegation::is_delegation(&token));
        assert_eq!(ours.verify(&token, now), Some("ana".to_string()));
        assert_eq!(
            ours.verify(&token, Timestamp(now.0 + LIFETIME_MS)),
            Some("ana".into())
        );
        assert_eq!(
            ours.verify(&token, Timestamp(now.0 + LIFETIME_MS + 1)),
            None,
            "expired"
        );
        let theirs = Delegation::from_identity(&identity());
        assert_eq!(theirs.verify(&token, now), None, "another cluster's key");
        let forged = token.replace("sosqnode.ana.", "sosqnode.root.");
        assert_eq!(
            ours.verify(&forged, now),
            None,
            "another user under the same tag"
        );
        let later = token.replace(
            &format!(".{}.", now.0 + LIFETIME_MS),
            &format!(".{}.", u64::MAX),
        );
        assert_eq!(
            ours.verify(&later, now),
            None,
            "a longer life under the same tag"
        );
        assert_eq!(ours.verify("sosq_abc", now), None);
        assert_eq!(ours.verify("sosqnode.ana.1.zz", now), None);
    }
}
