//! Stateless nonces: `base64url(timestamp ‖ salt ‖ HMAC-SHA256(key, timestamp ‖ salt ‖ realm)[..16])`.
//!
//! Any replica holding the same key (the config's `nonceKey`) checks a nonce another replica
//! issued, with no shared state; the timestamp gives `stale=true` after the lifetime; the salt
//! (random, or a replica's numbering: [`super::replay`]) makes every challenge's nonce unique,
//! so nonce-count tracking per nonce never mixes two clients.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TAG_LEN: usize = 16;
const RAW_LEN: usize = 8 + 8 + TAG_LEN;
/// A nonce dated this far in the future (clock skew between replicas) is still accepted.
const MAX_SKEW_SECS: u64 = 5;

/// What a nonce turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceStatus {
    /// Made with our key for this realm, within its lifetime.
    Fresh,
    /// Made with our key for this realm, but older than the lifetime.
    Stale,
    /// Not one of ours (another key, another realm, tampered, garbage).
    Invalid,
}

/// The keyed MAC nonces are made and checked with.
#[derive(Clone)]
pub struct NonceKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// A key from bytes (any length).
    pub fn new(key: &[u8]) -> NonceKey {
        NonceKey {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    /// A key from the config's `nonceKey`: hex when it is even-length hex, else its bytes.
    pub fn from_config(s: &str) -> NonceKey {
        match hex::decode(s.trim()) {
            Ok(bytes) if !bytes.is_empty() => NonceKey::new(&bytes),
            _ => NonceKey::new(s.as_bytes()),
        }
    }

    fn tag(&self, ts: u64, salt: &[u8; 8], realm: &str) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&ts.to_be_bytes());
        mac.update(salt);
        mac.update(realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// A new nonce for `realm`, dated `now_secs` (Unix seconds).
    pub fn issue(&self, realm: &str, now_secs: u64, salt: [u8; 8]) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now_secs.to_be_bytes());
        raw[8..16].copy_from_slice(&salt);
        raw[16..].copy_from_slice(&self.tag(now_secs, &salt, realm));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce for `realm` at `now_secs` with lifetime `ttl_secs`.
    pub fn check(&self, nonce: &str, realm: &str, now_secs: u64, ttl_secs: u64) -> NonceStatus {
        let Some(raw) = decode(nonce) else {
            return NonceStatus::Invalid;
        };
        let ts = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let salt: [u8; 8] = raw[8..16].try_into().expect("8 bytes");
        let expected = self.tag(ts, &salt, realm);
        let diff = expected
            .iter()
            .zip(&raw[16..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 || ts > now_secs + MAX_SKEW_SECS {
            return NonceStatus::Invalid;
        }
        if now_secs.saturating_sub(ts) > ttl_secs {
            NonceStatus::Stale
        } else {
            NonceStatus::Fresh
        }
    }
}

/// The salt `nonce` was issued with, if it has a nonce's shape (not checked: see
/// [`NonceKey::check`]).
pub fn salt_of(nonce: &str) -> Option<[u8; 8]> {
    decode(nonce).map(|raw| raw[8..16].try_into().expect("8 bytes"))
}

/// A nonce's bytes, if it is 43 characters of base64url making [`RAW_LEN`] bytes.
fn decode(nonce: &str) -> Option<[u8; RAW_LEN]> {
    let mut raw = [0u8; RAW_LEN];
    if nonce.len() != 43 {
        return None;
    }
    match URL_SAFE_NO_PAD.decode_slice(nonce.as_bytes(), &mut raw) {
        Ok(RAW_LEN) => Some(raw),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_stale() {
        let k = NonceKey::new(b"secret");
        let n = k.issue("a.test", 1000, [1; 8]);
        assert_eq!(n.len(), 43);
        assert_eq!(k.check(&n, "a.test", 1000, 300), NonceStatus::Fresh);
        assert_eq!(k.check(&n, "a.test", 1300, 300), NonceStatus::Fresh);
        assert_eq!(k.check(&n, "a.test", 1301, 300), NonceStatus::Stale);
        assert_eq!(salt_of(&n), Some([1; 8]));
        assert_eq!(salt_of("n1"), None);
    }

    #[test]
    fn other_key_realm_or_tampering_is_invalid() {
        let k = NonceKey::new(b"secret");
        let n = k.issue("a.test", 1000, [1; 8]);
        assert_eq!(
            NonceKey::new(b"other").check(&n, "a.test", 1000, 300),
            NonceStatus::Invalid
        );
        assert_eq!(k.check(&n, "b.test", 1000, 300), NonceStatus::Invalid);
        let mut t = n.clone().into_bytes();
        t[3] = if t[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.check(std::str::from_utf8(&t).unwrap(), "a.test", 1000, 300),
            NonceStatus::Invalid
        );
        assert_eq!(k.check("", "a.test", 1000, 300), NonceStatus::Invalid);
        assert_eq!(
            k.check(&"!".repeat(43), "a.test", 1000, 300),
            NonceStatus::Invalid
        );
        // From the future beyond the allowed skew.
        let future = k.issue("a.test", 2000, [1; 8]);
        assert_eq!(k.check(&future, "a.test", 1000, 300), NonceStatus::Invalid);
    }

    #[test]
    fn replicas_sharing_a_key_agree() {
        let a = NonceKey::from_config("00112233445566778899aabbccddeeff");
        let b = NonceKey::from_config("00112233445566778899aabbccddeeff");
        let n = a.issue("a.test", 50, [9; 8]);
        assert_eq!(b.check(&n, "a.test", 60, 300), NonceStatus::Fresh);
        assert_ne!(a.issue("a.test", 50, [1; 8]), a.issue("a.test", 50, [2; 8]));
    }
}
