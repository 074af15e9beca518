//! Nonce-count replay protection: the highest `nc` seen per nonce, in a bounded map.
//!
//! Entries are kept in two generations per shard, rotated every nonce lifetime: an entry lives
//! at least one lifetime after its last use, which is as long as its nonce can be fresh, so a
//! replay inside a nonce's lifetime is always caught. Only requests whose digest verified are
//! recorded, so only authenticated clients can grow the map; past `capacity` a shard rotates
//! early (its oldest generation is forgotten) rather than grow without bound.
//!
//! A nonce is held as a 128-bit hash (xxh3, seeded at random per map), as the transaction
//! cache holds its keys: every registration brings a nonce, and an entry that allocates
//! nothing and compares 16 bytes in the table keeps a map of 100 000s of them cheap. Nonces
//! are this registrar's own HMACed values, and a client would need 2^64 live ones to share a
//! hash.

use crate::generations::GenerationalMap;

/// Highest nonce-count per nonce.
pub struct NonceCounts {
    map: GenerationalMap<u128, u32>,
    /// The seed of the nonces' hash.
    seed: u64,
}

impl NonceCounts {
    /// A map that remembers a nonce for at least `ttl_secs` after its last use, holding up to
    /// about `capacity` nonces.
    pub fn new(ttl_secs: u64, capacity: usize) -> NonceCounts {
        NonceCounts {
            map: GenerationalMap::new(ttl_secs, capacity),
            seed: rand::random(),
        }
    }

    /// Records `nc` for `nonce` if it is higher than any seen; `false` means a replay.
    pub fn record(&self, nonce: &str, nc: u32, now_secs: u64) -> bool {
        let key = xxhash_rust::xxh3::xxh3_128_with_seed(nonce.as_bytes(), self.seed);
        self.map.with(&key, now_secs, |g| {
            if nc <= g.get(&key).copied().unwrap_or(0) {
                return false;
            }
            g.insert(&key, nc);
            true
        })
    }

    /// Nonces remembered (both generations).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generations::SHARDS;

    #[test]
    fn increasing_counts_pass_replays_fail() {
        let m = NonceCounts::new(300, 1000);
        assert!(m.record("n1", 1, 0));
        assert!(!m.record("n1", 1, 1));
        assert!(m.record("n1", 2, 2));
        assert!(m.record("n1", 5, 3));
        assert!(!m.record("n1", 4, 4));
        assert!(m.record("n2", 1, 4));
    }

    #[test]
    fn remembered_for_a_lifetime_after_last_use() {
        let m = NonceCounts::new(300, 1000);
        assert!(m.record("n", 1, 0));
        assert!(!m.record("n", 1, 299));
        assert!(!m.record("n", 1, 450)); // rotated once: still in the previous generation
        assert!(m.record("n", 2, 500)); // moved to the current generation
        assert!(!m.record("n", 2, 700));
        assert!(m.record("other", 1, 1300)); // two rotations later "n" is forgotten
        assert!(m.record("other", 2, 1700));
        assert!(m.len() <= 2);
    }

    #[test]
    fn bounded() {
        let m = NonceCounts::new(300, 160);
        for i in 0..10_000 {
            assert!(m.record(&format!("n{i}"), 1, 0));
        }
        assert!(m.len() <= 2 * SHARDS * m.map.per_shard_cap());
    }
}
