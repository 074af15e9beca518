//! Nonce-count replay protection for one replica: the highest `nc` per nonce, in a ring of
//! slots indexed by the nonce itself (as Kamailio's `auth` module keeps its `nc` array).
//!
//! The replica numbers the nonces it issues: a nonce's salt ([`NonceCounts::salt`]) is this
//! ring's random `issuer` and a sequence number, both covered by the nonce's HMAC, so a client
//! cannot choose them. Issuing nonce `seq` claims slot `seq mod N` for it (tag `seq`, count 0).
//! A nonce is [`Record::Forgotten`] when a later nonce has claimed its slot (N nonces were
//! issued since) or when another process issued it (another replica, or this one before a
//! restart, whose counts are gone): it is answered as stale, and the client retries on a fresh
//! challenge rather than being refused. Nothing is ever accepted twice.
//!
//! Why a ring and not a map of nonces: every registration records a nonce a moment after its
//! challenge, and nonces issued together sit together, so the slot is in the cache already; a
//! hash map of 10^6 nonces put each one at a random place, a cache and TLB miss per
//! registration, and grew to 347 MB of RSS where the ring's 16 MB leave 224 (after 100 s at
//! 20 000/s, `bench/register`, seventh round). The ring's size is fixed at start and nothing
//! a client sends grows it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What [`NonceCounts::record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// `nc` is above any seen for the nonce, and now the highest.
    Counted,
    /// `nc` is not above the highest seen: a replay.
    Replay,
    /// The nonce's count is not held here (issued elsewhere, or its slot claimed since).
    Forgotten,
}

/// Highest nonce-count per nonce issued by this replica.
pub struct NonceCounts {
    /// Random per ring: tells this process's nonces from any other's.
    issuer: u32,
    /// The next nonce's sequence number (wrapping).
    next: AtomicU32,
    /// Per slot: the sequence number of the nonce that holds it (high 32 bits) and its highest
    /// `nc` (low 32 bits).
    slots: Box<[AtomicU64]>,
}

impl NonceCounts {
    /// A ring holding the counts of the last `capacity` nonces issued (rounded up to a power of
    /// two, at most 2^30).
    pub fn new(capacity: usize) -> NonceCounts {
        let len = capacity.clamp(1, 1 << 30).next_power_of_two();
        NonceCounts {
            issuer: rand::random(),
            next: AtomicU32::new(0),
            slots: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The salt of a new nonce: this ring's issuer and the nonce's sequence number, whose slot
    /// it claims.
    pub fn salt(&self) -> [u8; 8] {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.slot(seq)
            .store(u64::from(seq) << 32, Ordering::Release);
        let mut salt = [0u8; 8];
        salt[..4].copy_from_slice(&self.issuer.to_be_bytes());
        salt[4..].copy_from_slice(&seq.to_be_bytes());
        salt
    }

    /// Records `nc` for the nonce with `salt` if it is higher than any seen.
    pub fn record(&self, salt: [u8; 8], nc: u32) -> Record {
        let (issuer, seq) = salt.split_at(4);
        if issuer != self.issuer.to_be_bytes() {
            return Record::Forgotten;
        }
        let seq = u32::from_be_bytes(seq.try_into().expect("4 bytes"));
        let slot = self.slot(seq);
        let mut held = slot.load(Ordering::Acquire);
        loop {
            if (held >> 32) as u32 != seq {
                return Record::Forgotten;
            }
            if nc <= held as u32 {
                return Record::Replay;
            }
            let counted = u64::from(seq) << 32 | u64::from(nc);
            match slot.compare_exchange_weak(held, counted, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Record::Counted,
                Err(now) => held = now,
            }
        }
    }

    fn slot(&self, seq: u32) -> &AtomicU64 {
        &self.slots[seq as usize & (self.slots.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_counts_pass_replays_fail() {
        let m = NonceCounts::new(1000);
        let (n1, n2) = (m.salt(), m.salt());
        assert_eq!(m.record(n1, 1), Record::Counted);
        assert_eq!(m.record(n1, 1), Record::Replay);
        assert_eq!(m.record(n1, 2), Record::Counted);
        assert_eq!(m.record(n1, 5), Record::Counted);
        assert_eq!(m.record(n1, 4), Record::Replay);
        assert_eq!(
            m.record(n2, 1),
            Record::Counted,
            "another nonce, its own count"
        );
        assert_eq!(m.record(n1, 5), Record::Replay);
    }

    #[test]
    fn a_claimed_slot_forgets_its_nonce_and_never_takes_it_back() {
        let m = NonceCounts::new(4);
        let first = m.salt();
        assert_eq!(m.record(first, 1), Record::Counted);
        let later: Vec<_> = (0..4).map(|_| m.salt()).collect();
        assert_eq!(
            m.record(first, 2),
            Record::Forgotten,
            "later[3] claimed its slot"
        );
        assert_eq!(m.record(later[3], 1), Record::Counted);
        assert_eq!(
            m.record(first, 9),
            Record::Forgotten,
            "not even with a higher nc"
        );
        assert_eq!(m.record(later[0], 1), Record::Counted);
    }

    #[test]
    fn an_unused_nonce_is_forgotten_once_its_slot_is_claimed() {
        let m = NonceCounts::new(2);
        let old = m.salt();
        let _ = m.salt();
        let _newer = m.salt(); // same slot as `old`
        assert_eq!(m.record(old, 1), Record::Forgotten);
    }

    #[test]
    fn another_rings_nonces_are_forgotten() {
        let (a, b) = (NonceCounts::new(8), NonceCounts::new(8));
        let from_a = a.salt();
        assert_eq!(b.record(from_a, 1), Record::Forgotten);
        assert_eq!(a.record(from_a, 1), Record::Counted);
    }

    #[test]
    fn of_racing_uses_of_one_count_at_most_one_is_counted() {
        use std::sync::atomic::AtomicUsize;
        let m = NonceCounts::new(64);
        let salts: Vec<_> = (0..64).map(|_| m.salt()).collect();
        // Times each (nonce, nc) was counted, by 4 threads each trying nc 1..=8 on every nonce.
        let counted: Vec<AtomicUsize> = (0..64 * 8).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (i, salt) in salts.iter().enumerate() {
                        for nc in 1..=8u32 {
                            if m.record(*salt, nc) == Record::Counted {
                                counted[i * 8 + nc as usize - 1].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        for (i, n) in counted.iter().enumerate() {
            let (n, nc) = (n.load(Ordering::Relaxed), i % 8 + 1);
            assert!(n <= 1, "nonce {} nc {nc} counted {n} times", i / 8);
            assert!(
                nc < 8 || n == 1,
                "the highest nc of nonce {} counted {n} times",
                i / 8
            );
        }
    }

    #[test]
    fn sequence_numbers_wrap() {
        let m = NonceCounts::new(4);
        m.next.store(u32::MAX - 1, Ordering::Relaxed);
        let before: Vec<_> = (0..4).map(|_| m.salt()).collect();
        for s in &before {
            assert_eq!(m.record(*s, 1), Record::Counted);
        }
        let after = m.salt(); // sequence number 2, past the wrap, in before[0]'s slot
        assert_eq!(m.record(after, 1), Record::Counted);
        assert_eq!(m.record(before[0], 2), Record::Forgotten);
        assert_eq!(m.record(before[1], 2), Record::Counted);
    }
}
