//! Open TCP/TLS connections counted per source address, so that one address holding sockets
//! cannot take every connection the registrar allows and lock phones out of TCP/TLS.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Connections per source address, at most `limit` each.
pub struct PerSource {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source; uncounted on drop.
pub struct Slot {
    owner: Arc<PerSource>,
    source: IpAddr,
}

impl PerSource {
    /// A counter allowing `limit` connections per source address.
    pub fn new(limit: usize) -> Arc<PerSource> {
        Arc::new(PerSource {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `source`, unless it has `limit` open already.
    pub fn acquire(self: &Arc<Self>, source: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock();
        let n = open.entry(source).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self.clone(),
            source,
        })
    }

    /// Connections open from `source`.
    pub fn open_from(&self, source: IpAddr) -> usize {
        self.open.lock().get(&source).copied().unwrap_or(0)
    }

    /// Sources with a connection open.
    pub fn sources(&self) -> usize {
        self.open.lock().len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock();
        if let Some(n) = open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_limit_and_others_are_not_affected() {
        let p = PerSource::new(2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let s1 = p.acquire(a).unwrap();
        let _s2 = p.acquire(a).unwrap();
        assert!(p.acquire(a).is_none(), "a third from the same address");
        assert!(p.acquire(b).is_some(), "another address");
        drop(s1);
        assert_eq!(p.open_from(a), 1);
        let _s3 = p.acquire(a).expect("a slot came free");
        assert_eq!(p.open_from(a), 2);
    }

    #[test]
    fn closed_sources_are_forgotten() {
        let p = PerSource::new(5);
        let slots: Vec<Slot> = (0..3u8)
            .filter_map(|i| p.acquire(IpAddr::from([192, 0, 2, i])))
            .collect();
        assert_eq!(p.sources(), 3);
        drop(slots);
        assert_eq!(p.sources(), 0);
    }
}
