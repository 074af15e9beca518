//! The server-transaction layer a registrar needs: a cache of the last response per request
//! (branch, Call-ID, CSeq, method, source), kept about 32 s (64·T1, Timer J of RFC 3261
//! §17.2.2), so a retransmitted REGISTER is answered again and never reaches the digest check
//! twice (its nonce-count would look like a replay). A request being processed is marked
//! pending; its retransmissions are dropped until the answer is cached. The service may
//! abandon a request instead of completing it, when answering a retransmission afresh is as
//! good (a 5xx the client should retry; the challenge to a REGISTER without credentials).
//!
//! Bounded: two generations per shard, rotated every 32 s or when a shard is full, so an entry
//! lives 32–64 s under normal load and less only when the cache is at capacity.
//!
//! Entries are stored under a 128-bit hash of the key (xxh3, seeded at random per cache), not
//! the key itself: a lookup in a cache of 100 000s of entries then compares 16 bytes held in
//! the table instead of following each candidate's string elsewhere in memory, and an entry
//! allocates nothing for its key. Two live requests sharing a hash would need 2^64 of them.
//! Nor for its response: a copy goes into its generation's buffer
//! ([`crate::generations`]), and a retransmission is answered with a copy of that. A
//! REGISTER's 200 is not kept ([`TransactionCache::answered`]): its retransmission is answered
//! with a 200 built again from the bindings then held. Those 200s (about 500 bytes each) were
//! most of what the registrar held: RSS after 100 s at 20 000 registrations/s 218 MB with
//! them, 98 MB without (`bench/register`); only a lost 200 is ever asked for again.
//! The hash is taken once per request ([`TransactionCache::key`]) and the [`Key`] carried to
//! [`TransactionCache::complete`].

//!
//! The proxy's transactions (RFC 3261 §17: client and server, INVITE and non-INVITE, timers
//! A–L) are in [`machine`], pure state machines over virtual time.

pub mod machine;

use crate::generations::GenerationalMap;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
/// How long a response is kept at least (64·T1).
pub const LIFETIME: Duration = Duration::from_secs(32);

/// What the cache knows of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Never seen: process it (it is now marked pending).
    New,
    /// Being processed: drop this copy.
    Pending,
    /// Answered: send this again.
    Done(Bytes),
    /// Answered, the answer not kept ([`TransactionCache::answered`]): build it again.
    Answered,
}

/// A request's key as the cache holds it: the seeded hash of [`key_text`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(u128);

/// Responses by request.
pub struct TransactionCache {
    /// A request's response, or no value while it is pending.
    map: GenerationalMap<u128>,
    /// The seed of the keys' hash.
    seed: u64,
    /// Time zero of the map's millisecond clock.
    base: Instant,
}

/// The key of a request: RFC 3261 §17.2.3 matching (branch + sent-by via the source, method),
/// with Call-ID and CSeq added so pre-3261 branches still work. Built on every request, so
/// without `format!`: the text fields NUL-separated, then CSeq and source address in hex.
pub fn key_text(
    branch: Option<&str>,
    call_id: &str,
    cseq: u32,
    method: &str,
    source: SocketAddr,
) -> String {
    let branch = branch.unwrap_or("");
    let mut k = String::with_capacity(branch.len() + call_id.len() + method.len() + 56);
    for field in [branch, call_id, method] {
        k.push_str(field);
        k.push('\u{0}');
    }
    push_hex(&mut k, &cseq.to_be_bytes());
    k.push('\u{0}');
    match source.ip() {
        std::net::IpAddr::V4(ip) => push_hex(&mut k, &ip.octets()),
        std::net::IpAddr::V6(ip) => push_hex(&mut k, &ip.octets()),
    }
    push_hex(&mut k, &source.port().to_be_bytes());
    k
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

impl TransactionCache {
    /// A cache holding about `capacity` requests per generation.
    pub fn new(capacity: usize) -> TransactionCache {
        TransactionCache {
            map: GenerationalMap::new(LIFETIME.as_millis() as u64, capacity),
            seed: rand::random(),
            base: Instant::now(),
        }
    }

    /// The key of a request ([`key_text`]'s fields), hashed with this cache's seed.
    pub fn key(
        &self,
        branch: Option<&str>,
        call_id: &str,
        cseq: u32,
        method: &str,
        source: SocketAddr,
    ) -> Key {
        let text = key_text(branch, call_id, cseq, method, source);
        Key(xxhash_rust::xxh3::xxh3_128_with_seed(
            text.as_bytes(),
            self.seed,
        ))
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Looks a request up, marking it pending when new.
    pub fn begin(&self, Key(key): Key, now: Instant) -> Lookup {
        self.map
            .with(&key, self.millis(now), |g| match g.get(&key) {
                Some(None) => Lookup::Pending,
                Some(Some([])) => Lookup::Answered,
                Some(Some(response)) => Lookup::Done(Bytes::copy_from_slice(response)),
                None => {
                    g.insert(&key, None);
                    Lookup::New
                }
            })
    }

    /// Stores (a copy of) the response to a request (never empty: an empty value marks an
    /// answer not kept, [`TransactionCache::answered`]).
    pub fn complete(&self, Key(key): Key, response: &[u8], now: Instant) {
        debug_assert!(
            !response.is_empty(),
            "an empty response would read as not kept"
        );
        self.map
            .with(&key, self.millis(now), |g| g.insert(&key, Some(response)));
    }

    /// Marks a request answered without keeping its answer (an empty value: no response is
    /// empty), for an answer that can be built again from the state it reflects.
    pub fn answered(&self, Key(key): Key, now: Instant) {
        self.map
            .with(&key, self.millis(now), |g| g.insert(&key, Some(&[])));
    }

    /// Forgets a request that got no response (so a retransmission is processed afresh).
    pub fn abandon(&self, Key(key): Key) {
        self.map
            .with(&key, self.millis(Instant::now()), |g| g.remove(&key));
    }

    /// Requests remembered.
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
    fn pending_then_done_then_forgotten() {
        let c = TransactionCache::new(1000);
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let k = c.key(Some("z9hG4bK1"), "cid", 2, "REGISTER", src);
        let t = Instant::now();
        assert_eq!(c.begin(k, t), Lookup::New);
        assert_eq!(c.begin(k, t), Lookup::Pending);
        c.complete(k, b"SIP/2.0 200 OK", t);
        assert_eq!(
            c.begin(k, t + Duration::from_secs(31)),
            Lookup::Done(Bytes::from_static(b"SIP/2.0 200 OK"))
        );
        assert_eq!(
            c.begin(k, t + Duration::from_secs(40)),
            Lookup::Done(Bytes::from_static(b"SIP/2.0 200 OK"))
        );
        // After two rotations it is gone.
        let other = |call_id| c.key(None, call_id, 1, "REGISTER", src);
        let _ = c.begin(other("other"), t + Duration::from_secs(70));
        let _ = c.begin(other("other2"), t + Duration::from_secs(140));
        let k2 = c.key(Some("z9hG4bK1"), "cid", 3, "REGISTER", src);
        assert_eq!(
            c.begin(k2, t),
            Lookup::New,
            "another CSeq is another transaction"
        );
        c.abandon(k2);
        assert_eq!(c.begin(k2, t), Lookup::New);
    }

    #[test]
    fn an_answer_not_kept_is_told_from_a_kept_one() {
        let c = TransactionCache::new(1000);
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let t = Instant::now();
        let (kept, unkept) = (
            c.key(Some("z9hG4bK1"), "cid", 2, "REGISTER", src),
            c.key(Some("z9hG4bK2"), "cid", 3, "REGISTER", src),
        );
        assert_eq!(
            (c.begin(kept, t), c.begin(unkept, t)),
            (Lookup::New, Lookup::New)
        );
        c.complete(kept, b"SIP/2.0 423 Interval Too Brief", t);
        c.answered(unkept, t);
        assert_eq!(
            c.begin(kept, t + Duration::from_secs(1)),
            Lookup::Done(Bytes::from_static(b"SIP/2.0 423 Interval Too Brief"))
        );
        assert_eq!(
            c.begin(unkept, t + Duration::from_secs(31)),
            Lookup::Answered
        );
    }

    #[test]
    fn keys_tell_sources_and_fields_apart() {
        let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let c = TransactionCache::new(10);
        let k = |branch, call_id, cseq, source| c.key(branch, call_id, cseq, "REGISTER", source);
        let base = k(Some("z9hG4bK1"), "cid", 2, a);
        assert_eq!(base, k(Some("z9hG4bK1"), "cid", 2, a));
        for other in [
            k(
                Some("z9hG4bK1"),
                "cid",
                2,
                "192.0.2.1:5061".parse().unwrap(),
            ),
            k(
                Some("z9hG4bK1"),
                "cid",
                2,
                "192.0.2.2:5060".parse().unwrap(),
            ),
            k(
                Some("z9hG4bK1"),
                "cid",
                2,
                "[2001:db8::1]:5060".parse().unwrap(),
            ),
            k(Some("z9hG4bK1"), "cid", 258, a),
            k(Some("z9hG4bK"), "1cid", 2, a),
            k(None, "cid", 2, a),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn bounded() {
        let c = TransactionCache::new(320);
        let t = Instant::now();
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        for i in 0..10_000 {
            c.begin(c.key(None, &format!("k{i}"), 1, "REGISTER", src), t);
        }
        assert!(c.len() <= 2 * 320 + 2 * SHARDS);
    }
}
