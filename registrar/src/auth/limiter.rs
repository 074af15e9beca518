//! The failed-authentication limiter (Kamailio's `pike`, for credentials), shaped for NAT:
//! failures are counted per (source address, user) and, with a much higher ceiling, per
//! source address. A phone with a wrong password behind an office NAT blocks only itself; a
//! source guessing many users' passwords hits the ceiling and is blocked whole.
//!
//! A key (pair or source) that reaches its limit within `window` is blocked for `cooldown`;
//! each further block of the same key doubles that, up to `max_cooldown` (backoff). A key
//! forgets its blocks once `max_cooldown` has passed since the last one ended. Attempts while
//! blocked are refused without being counted, so a phone retrying with a wrong password does
//! not extend its own block.
//!
//! Times are unix milliseconds, so replicas sharing the records through Redis
//! ([`super::redis`], whose script implements [`Record::fail`] the same way) agree.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Limits for the limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Failures of one (source, user) within `window` before that pair is blocked.
    pub pair_failures: u32,
    /// Failures of one source, every user together, within `window` before the source is
    /// blocked: the ceiling for a NAT address many phones share.
    pub source_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a first block lasts; each further block of the same key doubles it.
    pub cooldown: Duration,
    /// The longest block, and how long a key remembers its blocks.
    pub max_cooldown: Duration,
    /// Keys (pairs and sources) tracked at most in memory; beyond, new ones are not tracked
    /// until old ones age out.
    pub capacity: usize,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            pair_failures: 10,
            source_failures: 200,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(3600),
            capacity: 100_000,
        }
    }
}

impl LimiterSettings {
    fn ms(d: Duration) -> u64 {
        d.as_millis().min(u64::MAX as u128) as u64
    }
}

/// Which key a block is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One user from one source.
    Pair,
    /// Every user from one source.
    Source,
}

impl Scope {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Pair => "pair",
            Scope::Source => "source",
        }
    }
}

/// What counting a failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strike {
    /// Counted; nothing blocked.
    Counted,
    /// This failure blocked the key until then (unix ms).
    Blocked {
        /// Pair or source (the pair when both).
        scope: Scope,
        /// Unix milliseconds.
        until: u64,
    },
    /// The key was already blocked: not counted.
    AlreadyBlocked(Scope),
}

/// The failure record of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Start of the counting window (unix ms).
    pub window_start: u64,
    /// Failures in the window.
    pub failures: u32,
    /// Blocked until (unix ms; 0 when never blocked).
    pub blocked_until: u64,
    /// Blocks in a row: the next one lasts `cooldown · 2^strikes`.
    pub strikes: u32,
}

impl Record {
    /// Whether the key is blocked at `now`.
    pub fn blocked(&self, now: u64) -> bool {
        self.blocked_until > now
    }

    /// Counts a failure at `now` against `limit`; `Some(until)` when it blocks the key.
    pub fn fail(&mut self, now: u64, limit: u32, s: &LimiterSettings) -> Option<u64> {
        let (window, cooldown, max) = (
            LimiterSettings::ms(s.window),
            LimiterSettings::ms(s.cooldown),
            LimiterSettings::ms(s.max_cooldown),
        );
        if now.saturating_sub(self.window_start) > window {
            self.window_start = now;
            self.failures = 0;
        }
        if self.strikes > 0 && now.saturating_sub(self.blocked_until) > max {
            self.strikes = 0;
        }
        self.failures += 1;
        if self.failures < limit.max(1) {
            return None;
        }
        let length = cooldown
            .saturating_mul(1u64 << self.strikes.min(32))
            .min(max);
        self.blocked_until = now + length;
        self.strikes += 1;
        self.failures = 0;
        self.window_start = now;
        Some(self.blocked_until)
    }

    /// When the record can be forgotten (unix ms): its window and block are over, and, once it
    /// was blocked, `max_cooldown` after that.
    pub fn forget_at(&self, s: &LimiterSettings) -> u64 {
        let end = self
            .blocked_until
            .max(self.window_start + LimiterSettings::ms(s.window));
        if self.strikes > 0 {
            end + LimiterSettings::ms(s.max_cooldown)
        } else {
            end
        }
    }
}

/// A (source, user) key. `known` tells a configured user from an unknown name, so the failures
/// of a phone retrying while its device is not configured yet do not block it once it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PairKey {
    /// The source address.
    pub source: IpAddr,
    /// The digest username.
    pub user: String,
    /// Whether the user is configured.
    pub known: bool,
}

/// Failure records in this process (one replica).
pub struct Limiter {
    settings: LimiterSettings,
    pairs: Mutex<HashMap<PairKey, Record>>,
    sources: Mutex<HashMap<IpAddr, Record>>,
}

impl Limiter {
    /// A limiter with the given limits.
    pub fn new(settings: LimiterSettings) -> Limiter {
        Limiter {
            settings,
            pairs: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// The limits.
    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    /// What blocks `pair` (its own record, else its source's) at `now`, if anything.
    pub fn blocked(&self, pair: &PairKey, now: u64) -> Option<Scope> {
        let pairs = self.pairs.lock();
        // The usual case, nobody failing: no hashing.
        if !pairs.is_empty() && pairs.get(pair).is_some_and(|r| r.blocked(now)) {
            return Some(Scope::Pair);
        }
        drop(pairs);
        let sources = self.sources.lock();
        (!sources.is_empty() && sources.get(&pair.source).is_some_and(|r| r.blocked(now)))
            .then_some(Scope::Source)
    }

    /// Counts a failure of `pair` (and its source) at `now`, unless either is blocked.
    pub fn fail(&self, pair: &PairKey, now: u64) -> Strike {
        if let Some(scope) = self.blocked(pair, now) {
            return Strike::AlreadyBlocked(scope);
        }
        let s = self.settings;
        let pair_until = {
            let mut pairs = self.pairs.lock();
            match tracked(&mut pairs, pair.clone(), &s, now) {
                Some(r) => r.fail(now, s.pair_failures, &s),
                None => None,
            }
        };
        let source_until = {
            let mut sources = self.sources.lock();
            match tracked(&mut sources, pair.source, &s, now) {
                Some(r) => r.fail(now, s.source_failures, &s),
                None => None,
            }
        };
        match (pair_until, source_until) {
            (Some(until), _) => Strike::Blocked {
                scope: Scope::Pair,
                until,
            },
            (None, Some(until)) => Strike::Blocked {
                scope: Scope::Source,
                until,
            },
            (None, None) => Strike::Counted,
        }
    }

    /// Pairs and sources blocked at `now`.
    pub fn blocked_counts(&self, now: u64) -> (usize, usize) {
        let pairs = self
            .pairs
            .lock()
            .values()
            .filter(|r| r.blocked(now))
            .count();
        let sources = self
            .sources
            .lock()
            .values()
            .filter(|r| r.blocked(now))
            .count();
        (pairs, sources)
    }

    /// Forgets the records that can be forgotten at `now`.
    pub fn prune(&self, now: u64) {
        let s = self.settings;
        self.pairs.lock().retain(|_, r| r.forget_at(&s) > now);
        self.sources.lock().retain(|_, r| r.forget_at(&s) > now);
    }

    /// Keys tracked (pairs and sources).
    pub fn tracked(&self) -> usize {
        self.pairs.lock().len() + self.sources.lock().len()
    }
}

/// The record of `key`, made if there is room (after forgetting what can be forgotten).
fn tracked<'m, K: std::hash::Hash + Eq>(
    map: &'m mut HashMap<K, Record>,
    key: K,
    s: &LimiterSettings,
    now: u64,
) -> Option<&'m mut Record> {
    if map.len() >= s.capacity && !map.contains_key(&key) {
        map.retain(|_, r| r.forget_at(s) > now);
        if map.len() >= s.capacity {
            return None;
        }
    }
    Some(map.entry(key).or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1000;

    fn settings() -> LimiterSettings {
        LimiterSettings {
            pair_failures: 3,
            source_failures: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(40),
            capacity: 8,
        }
    }

    fn pair(user: &str) -> PairKey {
        PairKey {
            source: "192.0.2.1".parse().unwrap(),
            user: user.into(),
            known: true,
        }
    }

    #[test]
    fn a_pair_is_blocked_and_its_neighbours_behind_the_nat_are_not() {
        let l = Limiter::new(settings());
        let t = 1_000 * SEC;
        assert_eq!(l.fail(&pair("alice"), t), Strike::Counted);
        assert_eq!(l.fail(&pair("alice"), t), Strike::Counted);
        assert_eq!(
            l.fail(&pair("alice"), t),
            Strike::Blocked {
                scope: Scope::Pair,
                until: t + 10 * SEC
            }
        );
        assert_eq!(l.blocked(&pair("alice"), t + 9 * SEC), Some(Scope::Pair));
        assert_eq!(
            l.blocked(&pair("bob"), t),
            None,
            "bob shares the address only"
        );
        assert_eq!(l.blocked(&pair("alice"), t + 11 * SEC), None);
        // Attempts while blocked are not counted: no longer block from retries.
        assert_eq!(
            l.fail(&pair("alice"), t + SEC),
            Strike::AlreadyBlocked(Scope::Pair)
        );
        assert_eq!(l.blocked_counts(t + SEC), (1, 0));
    }

    #[test]
    fn blocks_back_off_then_are_forgotten() {
        let l = Limiter::new(LimiterSettings {
            source_failures: 100,
            ..settings()
        });
        let mut t = 1_000 * SEC;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let mut last = Strike::Counted;
            for _ in 0..3 {
                last = l.fail(&pair("alice"), t);
            }
            let Strike::Blocked { until, .. } = last else {
                panic!("{last:?}")
            };
            lengths.push((until - t) / SEC);
            t = until + SEC;
        }
        assert_eq!(lengths, vec![10, 20, 40, 40], "doubling up to max_cooldown");
        // Quiet for longer than max_cooldown: back to the first length.
        t += 41 * SEC;
        for _ in 0..2 {
            l.fail(&pair("alice"), t);
        }
        assert_eq!(
            l.fail(&pair("alice"), t),
            Strike::Blocked {
                scope: Scope::Pair,
                until: t + 10 * SEC
            }
        );
    }

    #[test]
    fn many_users_from_one_source_hit_the_ceiling() {
        let l = Limiter::new(settings());
        let t = 1_000 * SEC;
        for (i, user) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(l.fail(&pair(user), t), Strike::Counted, "{i}");
        }
        assert_eq!(
            l.fail(&pair("e"), t),
            Strike::Blocked {
                scope: Scope::Source,
                until: t + 10 * SEC
            }
        );
        assert_eq!(l.blocked(&pair("somebody-else"), t), Some(Scope::Source));
        let other = PairKey {
            source: "192.0.2.2".parse().unwrap(),
            ..pair("a")
        };
        assert_eq!(l.blocked(&other, t), None);
        assert_eq!(l.blocked_counts(t), (0, 1));
    }

    #[test]
    fn an_unknown_name_does_not_block_the_user_it_becomes() {
        let l = Limiter::new(settings());
        let t = 1_000 * SEC;
        let unknown = PairKey {
            known: false,
            ..pair("alice")
        };
        for _ in 0..3 {
            l.fail(&unknown, t);
        }
        assert_eq!(l.blocked(&unknown, t), Some(Scope::Pair));
        assert_eq!(l.blocked(&pair("alice"), t), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = Limiter::new(settings());
        let t = 1_000 * SEC;
        l.fail(&pair("alice"), t);
        l.fail(&pair("alice"), t);
        assert_eq!(l.fail(&pair("alice"), t + 61 * SEC), Strike::Counted);
    }

    #[test]
    fn bounded_and_pruned() {
        let l = Limiter::new(settings());
        let t = 1_000 * SEC;
        for i in 0..20u8 {
            l.fail(
                &PairKey {
                    source: IpAddr::from([192, 0, 2, i]),
                    user: "u".into(),
                    known: true,
                },
                t,
            );
        }
        assert!(l.tracked() <= 16);
        l.prune(t + 61 * SEC);
        assert_eq!(l.tracked(), 0);
    }
}
