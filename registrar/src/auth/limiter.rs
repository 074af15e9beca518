//! Per-source failed-authentication limiter (Kamailio's `pike`, for credentials): after
//! `max_failures` failures within `window`, the source gets 403 for `cooldown`.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Limits for [`FailureLimiter`].
#[derive(Clone, Copy, Debug)]
pub struct LimiterSettings {
    /// Failures allowed within `window` before the source is blocked.
    pub max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a blocked source stays blocked.
    pub cooldown: Duration,
    /// Sources tracked at most (beyond it, new sources are not tracked until old ones age out).
    pub capacity: usize,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            max_failures: 10,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
            capacity: 100_000,
        }
    }
}

/// Failed authentications per source address.
pub struct FailureLimiter {
    settings: LimiterSettings,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl FailureLimiter {
    /// A limiter with the given limits.
    pub fn new(settings: LimiterSettings) -> FailureLimiter {
        FailureLimiter {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` is in its cooling-off period.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let entries = self.entries.lock();
        matches!(entries.get(&ip), Some(Entry { blocked_until: Some(until), .. }) if *until > now)
    }

    /// Counts a failure; returns `true` when this failure blocks the source.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let s = self.settings;
        let mut entries = self.entries.lock();
        if entries.len() >= s.capacity && !entries.contains_key(&ip) {
            Self::prune_locked(&mut entries, &s, now);
            if entries.len() >= s.capacity {
                return false;
            }
        }
        let e = entries.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(e.window_start) > s.window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures += 1;
        if e.failures >= s.max_failures && e.blocked_until.is_none_or(|u| u <= now) {
            e.blocked_until = Some(now + s.cooldown);
            e.failures = 0;
            e.window_start = now;
            return true;
        }
        false
    }

    /// Forgets sources whose window and cooling-off are over.
    pub fn prune(&self, now: Instant) {
        let s = self.settings;
        Self::prune_locked(&mut self.entries.lock(), &s, now);
    }

    fn prune_locked(entries: &mut HashMap<IpAddr, Entry>, s: &LimiterSettings, now: Instant) {
        entries.retain(|_, e| {
            e.blocked_until.is_some_and(|u| u > now)
                || now.duration_since(e.window_start) <= s.window
        });
    }

    /// Sources tracked.
    pub fn tracked(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(LimiterSettings {
            max_failures: 3,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(120),
            capacity: 4,
        })
    }

    #[test]
    fn blocks_after_n_failures_then_cools_off() {
        let l = limiter();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        assert!(!l.record_failure(ip, t));
        assert!(!l.record_failure(ip, t));
        assert!(!l.is_blocked(ip, t));
        assert!(l.record_failure(ip, t));
        assert!(l.is_blocked(ip, t + Duration::from_secs(119)));
        assert!(!l.is_blocked(ip, t + Duration::from_secs(121)));
        // Another source is unaffected.
        assert!(!l.is_blocked("192.0.2.2".parse().unwrap(), t));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = limiter();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t = Instant::now();
        l.record_failure(ip, t);
        l.record_failure(ip, t);
        assert!(!l.record_failure(ip, t + Duration::from_secs(61)));
        assert!(!l.is_blocked(ip, t + Duration::from_secs(61)));
    }

    #[test]
    fn bounded_and_pruned() {
        let l = limiter();
        let t = Instant::now();
        for i in 0..10u8 {
            l.record_failure(IpAddr::from([192, 0, 2, i]), t);
        }
        assert!(l.tracked() <= 4);
        l.prune(t + Duration::from_secs(61));
        assert_eq!(l.tracked(), 0);
    }
}
