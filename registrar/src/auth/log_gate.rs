//! Log lines about failed authentication, rate-limited per source address: a flood of wrong
//! passwords from one address writes a few lines a minute, the next one saying how many were
//! left out, instead of one line per attempt.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

/// Lines written per source per interval at most.
pub const BURST: u32 = 3;
/// The interval (ms).
pub const INTERVAL_MS: u64 = 60_000;
/// Sources tracked at most; beyond, lines about new sources are left out too.
pub const CAPACITY: usize = 10_000;

#[derive(Clone, Copy, Default)]
struct Window {
    start: u64,
    written: u32,
    suppressed: u64,
}

/// Per-source log budgets.
#[derive(Default)]
pub struct LogGate {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl LogGate {
    /// Whether a line about `source` may be written at `now` (unix ms): `Some(n)` with the
    /// lines left out since the last one written, or `None` to leave this one out.
    pub fn allow(&self, source: IpAddr, now: u64) -> Option<u64> {
        let mut windows = self.windows.lock();
        if windows.len() >= CAPACITY && !windows.contains_key(&source) {
            windows.retain(|_, w| now.saturating_sub(w.start) <= INTERVAL_MS);
            if windows.len() >= CAPACITY {
                return None;
            }
        }
        let w = windows.entry(source).or_default();
        if now.saturating_sub(w.start) > INTERVAL_MS {
            w.start = now;
            w.written = 0;
        }
        if w.written >= BURST {
            w.suppressed += 1;
            return None;
        }
        w.written += 1;
        Some(std::mem::take(&mut w.suppressed))
    }

    /// Forgets sources quiet for an interval, except those with lines left out to report.
    pub fn prune(&self, now: u64) {
        self.windows
            .lock()
            .retain(|_, w| w.suppressed > 0 || now.saturating_sub(w.start) <= INTERVAL_MS);
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.windows.lock().len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_per_source_then_a_count_of_the_rest() {
        let g = LogGate::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = 1_000_000;
        let written: Vec<_> = (0..10).filter_map(|i| g.allow(a, t + i)).collect();
        assert_eq!(written, vec![0; BURST as usize]);
        assert_eq!(g.allow(b, t), Some(0), "another source has its own budget");
        // The next interval's first line reports what was left out.
        assert_eq!(g.allow(a, t + INTERVAL_MS + 10), Some(10 - BURST as u64));
        assert_eq!(g.allow(a, t + INTERVAL_MS + 11), Some(0));
    }

    #[test]
    fn pruned_unless_something_is_owed() {
        let g = LogGate::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for i in 0..=BURST as u64 {
            g.allow(a, i);
        }
        g.allow(b, 0);
        g.prune(INTERVAL_MS + 1);
        assert_eq!(g.len(), 1, "a keeps its count of lines left out");
    }
}
