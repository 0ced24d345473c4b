//! Where session codes and resume secrets come from: a CSPRNG, never a counter.
//!
//! The code book remembers every code the broker holds (open cases and those still in the
//! store), so a new code never collides with one a person might still have written down.

use std::collections::HashSet;

use rand::{CryptoRng, Rng, RngCore};
use sosq::code::CODE_SPACE;
use sosq::SessionCode;

/// The random source the broker draws codes and secrets from; must be cryptographically
/// secure because codes and secrets are what stands between a stranger and a session.
pub trait SecureRandom: RngCore + CryptoRng + Send {}
impl<T: RngCore + CryptoRng + Send> SecureRandom for T {}

/// Every code in use, and the generator of fresh ones.
pub struct CodeBook {
    in_use: HashSet<SessionCode>,
    rng: Box<dyn SecureRandom>,
    /// In a cluster, codes reserved in the shared store for this node: new cases take
    /// theirs from here, because `in_use` knows only this node's codes. `None` on one node.
    supply: Option<std::collections::VecDeque<SessionCode>>,
}

impl CodeBook {
    /// An empty book drawing from `rng`.
    pub fn new(rng: Box<dyn SecureRandom>) -> Self {
        CodeBook {
            in_use: HashSet::new(),
            rng,
            supply: None,
        }
    }

    /// From now on, new codes come only from [`CodeBook::supply`] (a cluster node's codes,
    /// reserved in the shared store so no two nodes hand out the same one).
    pub fn use_supply(&mut self) {
        self.supply.get_or_insert_with(Default::default);
    }

    /// Adds reserved codes to the supply (a no-op unless [`CodeBook::use_supply`] was called).
    pub fn supply(&mut self, codes: impl IntoIterator<Item = SessionCode>) {
        if let Some(supply) = &mut self.supply {
            supply.extend(codes.into_iter().filter(|code| !self.in_use.contains(code)));
        }
    }

    /// How many supplied codes are left; `None` when codes are drawn locally.
    pub fn supplied(&self) -> Option<usize> {
        self.supply.as_ref().map(|supply| supply.len())
    }

    /// `count` random codes no case here holds: candidates to reserve in the shared store.
    pub fn candidates(&mut self, count: usize) -> Vec<SessionCode> {
        let mut found = Vec::with_capacity(count);
        while found.len() < count {
            let n = self.rng.random_range(0..CODE_SPACE);
            if let Some(code) = SessionCode::from_number(n) {
                if !self.in_use.contains(&code) && !found.contains(&code) {
                    found.push(code);
                }
            }
        }
        found
    }

    /// Marks `code` as held (a case loaded from the store).
    pub fn reserve(&mut self, code: SessionCode) {
        self.in_use.insert(code);
    }

    /// Frees `code` once its case is gone from the store.
    pub fn release(&mut self, code: SessionCode) {
        self.in_use.remove(&code);
    }

    /// How many codes are held.
    pub fn len(&self) -> usize {
        self.in_use.len()
    }

    /// Whether no code is held.
    pub fn is_empty(&self) -> bool {
        self.in_use.is_empty()
    }

    /// Draws a code no case holds and reserves it; `None` only when a cluster node's
    /// supply is empty. On one node the caller keeps the number of held codes
    /// far below [`CODE_SPACE`] (the open-case limit), so this ends after a few draws.
    pub fn issue(&mut self) -> Option<SessionCode> {
        if let Some(supply) = &mut self.supply {
            let code = supply.pop_front()?;
            self.in_use.insert(code);
            return Some(code);
        }
        loop {
            let n = self.rng.random_range(0..CODE_SPACE);
            let Some(code) = SessionCode::from_number(n) else {
                continue;
            };
            if self.in_use.insert(code) {
                return Some(code);
            }
        }
    }

    /// A fresh resume secret: 128 random bits as 32 hex digits.
    pub fn resume_secret(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        sosq::tls::hex(&bytes)
    }
}

/// SHA-256 (hex) of a resume secret, which is all the store keeps of it.
pub fn hash_secret(secret: &str) -> String {
    sosq::tls::hex(ring::digest::digest(&ring::digest::SHA256, secret.trim().as_bytes()).as_ref())
}

/// Whether `secret` is the one whose hash is `expected_hash`, compared in constant time.
pub fn secret_matches(secret: &str, expected_hash: &str) -> bool {
    let actual = hash_secret(secret);
    actual.len() == expected_hash.len()
        && actual
            .bytes()
            .zip(expected_hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
