//! The pure core of the status writer: a per-resource coalescing map (only the latest desired
//! state of each resource waits, in first-changed-first-written order) and a token bucket that
//! paces the writes. No I/O, no clock of its own: times are passed in.

use super::desired::{Desired, Key};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// What an offered state did to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Nothing new (e.g. a refresh that only moves the expiry): no write.
    Unchanged,
    /// Queued for a write.
    Queued,
    /// Replaced a state already waiting: one write instead of two.
    Coalesced,
    /// Went back to what was last written: the waiting write was dropped.
    Cancelled,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// States offered.
    pub offered: u64,
    /// Offers that changed nothing.
    pub unchanged: u64,
    /// Offers folded into a waiting write.
    pub coalesced: u64,
    /// Writes done.
    pub written: u64,
    /// Writes that failed and were queued again.
    pub retried: u64,
}

/// The coalescing map.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: HashMap<Key, Desired>,
    order: VecDeque<Key>,
    queued: HashSet<Key>,
    /// Popped, being written: an offer compares against it, so nothing is written twice.
    inflight: HashMap<Key, Desired>,
    written: HashMap<Key, Desired>,
    counters: Counters,
}

impl Coalescer {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers the latest desired state of `key`.
    pub fn offer(&mut self, key: Key, mut desired: Desired) -> Offer {
        self.counters.offered += 1;
        let settled = || self.inflight.get(&key).or_else(|| self.written.get(&key));
        let last = self.pending.get(&key).or_else(settled);
        if last.is_some_and(|l| l.same_content(&desired)) {
            self.counters.unchanged += 1;
            return Offer::Unchanged;
        }
        if settled().is_some_and(|w| w.same_content(&desired)) {
            // It flapped back before its write: nothing to write after all.
            self.pending.remove(&key);
            self.counters.coalesced += 1;
            return Offer::Cancelled;
        }
        desired.carry_transition(last);
        let replaced = self.pending.insert(key.clone(), desired).is_some();
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
        if replaced {
            self.counters.coalesced += 1;
            Offer::Coalesced
        } else {
            Offer::Queued
        }
    }

    /// Records what the API already holds for `key` (read at start-up) without writing it, so
    /// that a state equal to it writes nothing and Events fire only on real flips. Ignored if
    /// the key is already known.
    pub fn prime(&mut self, key: Key, desired: Desired) {
        if !self.pending.contains_key(&key) && !self.inflight.contains_key(&key) {
            self.written.entry(key).or_insert(desired);
        }
    }

    /// Whether a write is waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How many resources wait for a write.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the oldest waiting write: the key, the state to write, and the state last
    /// written (for deciding on an Event).
    pub fn pop(&mut self) -> Option<(Key, Desired, Option<Desired>)> {
        while let Some(key) = self.order.pop_front() {
            self.queued.remove(&key);
            if let Some(d) = self.pending.remove(&key) {
                let prev = self.written.get(&key).cloned();
                self.inflight.insert(key.clone(), d.clone());
                return Some((key, d, prev));
            }
        }
        None
    }

    /// Records a successful write.
    pub fn written(&mut self, key: Key, desired: Desired) {
        self.counters.written += 1;
        self.inflight.remove(&key);
        self.written.insert(key, desired);
    }

    /// Puts a failed write back, unless a newer state is already waiting.
    pub fn retry(&mut self, key: Key, desired: Desired) {
        self.counters.retried += 1;
        self.inflight.remove(&key);
        if !self.pending.contains_key(&key) {
            self.pending.insert(key.clone(), desired);
        }
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    /// Forgets a resource (deleted: its writes fail with 404).
    pub fn forget(&mut self, key: &Key) {
        self.pending.remove(key);
        self.inflight.remove(key);
        self.written.remove(key);
    }

    /// The state last written for `key`.
    pub fn last_written(&self, key: &Key) -> Option<&Desired> {
        self.written.get(key)
    }

    /// The latest known state of `key`: waiting, else in flight, else written (or primed).
    pub fn latest(&self, key: &Key) -> Option<&Desired> {
        self.pending
            .get(key)
            .or_else(|| self.inflight.get(key))
            .or_else(|| self.written.get(key))
    }

    /// Resources whose latest known state (waiting, in flight or written) is registered.
    pub fn registered(&self) -> impl Iterator<Item = &Key> {
        let settled = self
            .written
            .keys()
            .chain(self.inflight.keys())
            .filter(|k| !self.pending.contains_key(*k));
        settled.chain(self.pending.keys()).filter(|k| {
            matches!(self.latest(k), Some(Desired::Device(r)) if r.registration.state == switchboard_crds::device::RegistrationState::Registered)
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is at least 1.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token: `None` when taken, else how long to wait before trying again.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Charges extra calls made after the fact (an Event next to a status write); the bucket
    /// may go negative, which delays the next write.
    pub fn charge(&mut self, now: Instant, n: u32) {
        self.refill(now);
        self.tokens -= f64::from(n);
    }
}

#[cfg(test)]
mod tests {
    use super::super::desired::{device_status, Kind};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use switchboard_crds::common::Transport;
    use switchboard_crds::device::ContactStatus;

    fn key(n: usize) -> Key {
        Key::parse(Kind::Device, &format!("default/d{n}")).unwrap()
    }

    fn reg(uri: &str, exp: i64) -> Desired {
        let c = ContactStatus {
            uri: uri.into(),
            transport: Transport::Tcp,
            source_address: "127.0.0.1:1".into(),
            user_agent: None,
            expires: Time(Timestamp::from_second(1_700_000_000 + exp).unwrap()),
            replica: None,
        };
        Desired::Device(device_status(
            vec![c],
            Time(Timestamp::from_second(1_700_000_000).unwrap()),
        ))
    }

    fn unreg() -> Desired {
        Desired::Device(device_status(
            vec![],
            Time(Timestamp::from_second(1_700_000_000).unwrap()),
        ))
    }

    #[test]
    fn coalesces_and_skips_refreshes() {
        let mut q = Coalescer::new();
        assert_eq!(q.offer(key(1), reg("sip:a@x", 60)), Offer::Queued);
        assert_eq!(q.offer(key(1), reg("sip:a@x", 120)), Offer::Unchanged);
        assert_eq!(q.offer(key(1), reg("sip:b@x", 120)), Offer::Coalesced);
        assert_eq!(q.offer(key(3), reg("sip:a@x", 60)), Offer::Queued);
        let (k3, d3, _) = q.pop().unwrap();
        assert_eq!(k3, key(1));
        // While it is being written, the same state again is not news.
        assert_eq!(q.offer(key(1), reg("sip:b@x", 180)), Offer::Unchanged);
        q.written(k3, d3);
        assert_eq!(q.offer(key(2), reg("sip:c@x", 60)), Offer::Queued);
        assert_eq!(
            q.offer(key(1), reg("sip:b@x", 999)),
            Offer::Unchanged,
            "steady refresh: no write"
        );
        assert_eq!(q.pop().unwrap().0, key(3));
        let (k, _, prev) = q.pop().unwrap();
        assert_eq!(k, key(2));
        assert!(prev.is_none());
        assert!(q.pop().is_none());
    }

    #[test]
    fn primed_state_is_not_rewritten() {
        let mut q = Coalescer::new();
        q.prime(key(1), reg("sip:a@x", 60));
        assert_eq!(q.offer(key(1), reg("sip:a@x", 600)), Offer::Unchanged);
        assert_eq!(q.offer(key(1), unreg()), Offer::Queued);
        let (_, _, prev) = q.pop().unwrap();
        assert!(
            prev.unwrap().same_content(&reg("sip:a@x", 0)),
            "the event sees the flip"
        );
        assert_eq!(q.counters().written, 0);
    }

    #[test]
    fn flapping_back_cancels_the_write() {
        let mut q = Coalescer::new();
        q.offer(key(1), reg("sip:a@x", 60));
        let (k, d, _) = q.pop().unwrap();
        q.written(k, d);
        assert_eq!(q.offer(key(1), unreg()), Offer::Queued);
        assert_eq!(q.offer(key(1), reg("sip:a@x", 90)), Offer::Cancelled);
        assert!(q.pop().is_none());
    }

    #[test]
    fn failed_write_is_retried_unless_superseded() {
        let mut q = Coalescer::new();
        q.offer(key(1), reg("sip:a@x", 60));
        let (k, d, _) = q.pop().unwrap();
        q.retry(k.clone(), d.clone());
        let (k2, d2, _) = q.pop().unwrap();
        assert_eq!((k2, d2), (k.clone(), d));
        q.offer(key(1), unreg());
        q.retry(k, reg("sip:a@x", 60));
        let (_, d3, _) = q.pop().unwrap();
        assert_eq!(d3, unreg(), "the newer state wins");
    }

    fn at(uris: &[&str], secs: i64) -> Desired {
        let contacts = uris
            .iter()
            .map(|u| match reg(u, 60) {
                Desired::Device(d) => d.registration.contacts[0].clone(),
                Desired::Registration(_) => unreachable!(),
            })
            .collect();
        Desired::Device(device_status(
            contacts,
            Time(Timestamp::from_second(1_700_000_000 + secs).unwrap()),
        ))
    }

    fn since(d: &Desired) -> i64 {
        match d {
            Desired::Device(d) => {
                d.registered
                    .as_ref()
                    .unwrap()
                    .last_transition_time
                    .0
                    .as_second()
                    - 1_700_000_000
            }
            Desired::Registration(_) => unreachable!(),
        }
    }

    #[test]
    fn condition_transition_time_is_carried_until_a_flip() {
        let mut q = Coalescer::new();
        q.offer(key(1), at(&["sip:a@x"], 0));
        let (k, d, _) = q.pop().unwrap();
        q.written(k, d);
        // A contact added while registered: written, transition time kept.
        assert_eq!(
            q.offer(key(1), at(&["sip:a@x", "sip:b@x"], 10)),
            Offer::Queued
        );
        // Coalesced into a waiting write: still kept.
        assert_eq!(q.offer(key(1), at(&["sip:b@x"], 20)), Offer::Coalesced);
        let (k, d, _) = q.pop().unwrap();
        assert_eq!(since(&d), 0);
        q.written(k, d);
        // Unregistered: the flip moves it.
        q.offer(key(1), at(&[], 30));
        let (_, d, _) = q.pop().unwrap();
        assert_eq!(since(&d), 30);
    }

    #[test]
    fn bucket_paces_at_rate_after_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20.0, 50, t0);
        for _ in 0..50 {
            assert!(b.take(t0).is_none());
        }
        let wait = b.take(t0).unwrap();
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(50)).is_none());
        b.charge(t0 + Duration::from_millis(50), 1);
        assert!(b.take(t0 + Duration::from_millis(60)).is_some());
    }
}
