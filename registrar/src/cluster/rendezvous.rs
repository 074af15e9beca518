//! Rendezvous (highest random weight) hashing: which live replica owns a key.
//!
//! Every replica computes the same owner from the same set of names, with no coordination, and
//! when a replica leaves only the keys it owned move (to the next-highest score), so a
//! replica dying hands over its outbound registrations and nothing else.

use sha2::{Digest, Sha256};

/// The score of `replica` for `key`: the first 8 bytes of SHA-256(replica, 0, key). A
/// cryptographic hash because the score must be the same in every build of every replica
/// (`std`'s hasher promises no stability) and spread evenly; its cost is noise next to the
/// rate at which ownership is asked (config reloads and membership changes).
fn score(replica: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(replica.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The replica of `replicas` that owns `key` (ties, which need a hash collision, go to the
/// smaller name), or `None` when there is none.
pub fn owner<'a>(key: &str, replicas: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    replicas
        .into_iter()
        .map(|r| (score(r, key), r))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..3000).map(|i| format!("ns/registration-{i}")).collect()
    }

    #[test]
    fn same_owner_whatever_the_order() {
        let a = ["r1", "r2", "r3"];
        let b = ["r3", "r1", "r2"];
        for k in keys() {
            assert_eq!(owner(&k, a), owner(&k, b));
        }
        assert_eq!(owner("x", []), None);
        assert_eq!(owner("x", ["only"]), Some("only"));
    }

    #[test]
    fn keys_spread_over_replicas() {
        let replicas = ["r1", "r2", "r3"];
        let mut counts = [0usize; 3];
        for k in keys() {
            let o = owner(&k, replicas).unwrap();
            counts[replicas.iter().position(|r| *r == o).unwrap()] += 1;
        }
        // 1000 each on average; a skew beyond ±20% would mean a broken score.
        for c in counts {
            assert!((800..=1200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn only_the_leavers_keys_move() {
        let all = ["r1", "r2", "r3"];
        let without_r2 = ["r1", "r3"];
        let mut moved = 0;
        for k in keys() {
            let before = owner(&k, all).unwrap();
            let after = owner(&k, without_r2).unwrap();
            if before == "r2" {
                moved += 1;
                assert_ne!(after, "r2");
            } else {
                assert_eq!(before, after, "{k} moved though its owner stayed");
            }
        }
        assert!(moved > 0);
    }
}
