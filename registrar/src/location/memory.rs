//! The in-memory location store: AOR → bindings in sharded maps, one lock per shard. The
//! maps hash with foldhash (seeded per map), not SipHash: AORs are device ids from the config.

use super::{Binding, Decide, Expired, LocationStore, StoreFuture, StoreStats, Update};
use foldhash::fast::RandomState;
use foldhash::{HashMap, HashMapExt};
use parking_lot::Mutex;
use std::hash::BuildHasher;
use std::time::SystemTime;

const SHARDS: usize = 32;

/// Bindings held in this process.
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<String, Vec<Binding>>>>,
    hasher: RandomState,
    /// Outbound registration → Contact registered upstream.
    upstream: Mutex<HashMap<String, String>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::default(),
            upstream: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, aor: &str) -> &Mutex<HashMap<String, Vec<Binding>>> {
        &self.shards[(self.hasher.hash_one(aor) as usize) % SHARDS]
    }

    fn lookup_now(&self, aor: &str, now: SystemTime) -> Vec<Binding> {
        self.shard(aor)
            .lock()
            .get(aor)
            .map(|b| b.iter().filter(|b| b.is_live(now)).cloned().collect())
            .unwrap_or_default()
    }

    fn update_now(&self, aor: &str, now: SystemTime, decide: &mut Decide<'_>) -> Update {
        let mut shard = self.shard(aor).lock();
        let before: Vec<Binding> = shard
            .get(aor)
            .map(|b| b.iter().filter(|b| b.is_live(now)).cloned().collect())
            .unwrap_or_default();
        match decide(&before) {
            None => Update {
                after: before.clone(),
                before,
            },
            Some(after) => {
                let after: Vec<Binding> = after.into_iter().filter(|b| b.is_live(now)).collect();
                if after.is_empty() {
                    shard.remove(aor);
                } else if let Some(stored) = shard.get_mut(aor) {
                    stored.clone_from(&after); // no new key for a refresh
                } else {
                    shard.insert(aor.to_string(), after.clone());
                }
                Update { before, after }
            }
        }
    }

    fn expire_now(&self, now: SystemTime) -> Vec<Expired> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.retain(|aor, bindings| {
                if bindings.iter().all(|b| b.is_live(now)) {
                    return true;
                }
                let (live, lapsed): (Vec<Binding>, Vec<Binding>) =
                    bindings.drain(..).partition(|b| b.is_live(now));
                out.push(Expired {
                    aor: aor.clone(),
                    expired: lapsed,
                    remaining: live.clone(),
                });
                *bindings = live;
                !bindings.is_empty()
            });
        }
        out.sort_by(|a, b| a.aor.cmp(&b.aor));
        out
    }
}

impl LocationStore for MemoryStore {
    fn lookup<'a>(&'a self, aor: &'a str, now: SystemTime) -> StoreFuture<'a, Vec<Binding>> {
        let r = self.lookup_now(aor, now);
        Box::pin(async move { Ok(r) })
    }

    fn update<'a>(
        &'a self,
        aor: &'a str,
        now: SystemTime,
        decide: &'a mut Decide<'_>,
    ) -> StoreFuture<'a, Update> {
        let r = self.update_now(aor, now, decide);
        Box::pin(async move { Ok(r) })
    }

    fn expire(&self, now: SystemTime) -> StoreFuture<'_, Vec<Expired>> {
        let r = self.expire_now(now);
        Box::pin(async move { Ok(r) })
    }

    fn retain<'a>(
        &'a self,
        keep: &'a (dyn Fn(&str) -> bool + Send + Sync),
    ) -> StoreFuture<'a, usize> {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|aor, _| keep(aor));
            removed += before - shard.len();
        }
        Box::pin(async move { Ok(removed) })
    }

    fn snapshot(&self, now: SystemTime) -> StoreFuture<'_, Vec<(String, Vec<Binding>)>> {
        let mut out: Vec<(String, Vec<Binding>)> = Vec::new();
        for shard in &self.shards {
            for (aor, bindings) in shard.lock().iter() {
                let live: Vec<Binding> = bindings
                    .iter()
                    .filter(|b| b.is_live(now))
                    .cloned()
                    .collect();
                if !live.is_empty() {
                    out.push((aor.clone(), live));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Box::pin(async move { Ok(out) })
    }

    fn stats(&self, now: SystemTime) -> StoreFuture<'_, StoreStats> {
        let mut stats = StoreStats::default();
        for shard in &self.shards {
            for bindings in shard.lock().values() {
                let live = bindings.iter().filter(|b| b.is_live(now)).count();
                if live > 0 {
                    stats.aors += 1;
                    stats.bindings += live;
                }
            }
        }
        Box::pin(async move { Ok(stats) })
    }

    fn upstream_contact<'a>(&'a self, registration: &'a str) -> StoreFuture<'a, Option<String>> {
        let r = self.upstream.lock().get(registration).cloned();
        Box::pin(async move { Ok(r) })
    }

    fn set_upstream_contact<'a>(
        &'a self,
        registration: &'a str,
        contact: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        let mut upstream = self.upstream.lock();
        match contact {
            Some(c) => {
                upstream.insert(registration.to_string(), c.to_string());
            }
            None => {
                upstream.remove(registration);
            }
        }
        Box::pin(async move { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchboard_crds::common::Transport;

    fn binding(contact: &str, now: SystemTime, secs: u64) -> Binding {
        Binding {
            contact: contact.into(),
            q: None,
            expires_at: now + Duration::from_secs(secs),
            registered_at: now,
            updated_at: now,
            call_id: "c".into(),
            cseq: 1,
            source: "127.0.0.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            user_agent: None,
            replica: "r".into(),
        }
    }

    fn block<T>(f: StoreFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
            .unwrap()
    }

    /// A refresh writes the stored binding in place: its strings keep their buffers (a
    /// derived `clone_from` would allocate new ones), and hold the new values.
    #[test]
    fn a_refresh_keeps_the_stored_strings_buffers() {
        let s = MemoryStore::new();
        let now = SystemTime::now();
        let stored_ptrs = || {
            let shard = s.shard("ns/a").lock();
            let b = &shard["ns/a"][0];
            (b.contact.as_ptr(), b.call_id.as_ptr(), b.replica.as_ptr())
        };
        let mut first = |_: &[Binding]| Some(vec![binding("sip:a@192.0.2.1", now, 60)]);
        block(s.update("ns/a", now, &mut first));
        let before = stored_ptrs();
        let mut refresh = |current: &[Binding]| {
            let mut next = current.to_vec();
            next[0].call_id = "d".into();
            next[0].cseq = 2;
            Some(next)
        };
        block(s.update("ns/a", now, &mut refresh));
        assert_eq!(stored_ptrs(), before);
        let held = block(s.lookup("ns/a", now));
        assert_eq!((held[0].call_id.as_str(), held[0].cseq), ("d", 2));
    }

    /// The memory store runs no guard: it decides and writes nothing, so the caller admits
    /// through the authentication state and updates as usual.
    #[test]
    fn a_guarded_update_is_skipped() {
        let s = MemoryStore::new();
        let now = SystemTime::now();
        let guard = crate::location::Guard {
            blocks: ["p".into(), "s".into()],
            counter: "n".into(),
            count: 1,
            now_ms: 0,
            ttl_ms: 1,
        };
        let mut decide = |_: &[Binding]| -> Option<Vec<Binding>> { panic!("not decided") };
        let done = block(s.update_guarded("ns/a", now, &guard, &mut decide));
        assert!(
            matches!(done, crate::location::Guarded::Skipped),
            "{done:?}"
        );
        assert!(block(s.lookup("ns/a", now)).is_empty());
    }

    #[test]
    fn update_lookup_expire() {
        let s = MemoryStore::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let u = block(s.update("ns/a", t, &mut |cur: &[Binding]| {
            assert!(cur.is_empty());
            Some(vec![binding("sip:a@1", t, 10), binding("sip:a@2", t, 100)])
        }));
        assert!(u.before.is_empty());
        assert_eq!(u.after.len(), 2);
        assert_eq!(block(s.lookup("ns/a", t)).len(), 2);
        // A lapsed binding is never returned, even before the sweeper ran.
        assert_eq!(
            block(s.lookup("ns/a", t + Duration::from_secs(10))).len(),
            1
        );
        assert_eq!(
            block(s.stats(t)),
            StoreStats {
                aors: 1,
                bindings: 2
            }
        );
        let gone = block(s.expire(t + Duration::from_secs(50)));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].expired[0].contact, "sip:a@1");
        assert_eq!(gone[0].remaining.len(), 1);
        let gone = block(s.expire(t + Duration::from_secs(500)));
        assert!(gone[0].remaining.is_empty());
        assert_eq!(
            block(s.stats(t + Duration::from_secs(500))),
            StoreStats::default()
        );
    }

    #[test]
    fn no_change_keeps_bindings_and_retain_drops_aors() {
        let s = MemoryStore::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        block(s.update("ns/a", t, &mut |_: &[Binding]| {
            Some(vec![binding("sip:a@1", t, 10)])
        }));
        block(s.update("ns/b", t, &mut |_: &[Binding]| {
            Some(vec![binding("sip:b@1", t, 10)])
        }));
        let u = block(s.update("ns/a", t, &mut |_: &[Binding]| None));
        assert_eq!(u.before, u.after);
        assert_eq!(block(s.retain(&|aor: &str| aor == "ns/a")), 1);
        let snap = block(s.snapshot(t));
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].0, "ns/a");
        // Removing the last binding removes the AOR.
        block(s.update("ns/a", t, &mut |_: &[Binding]| Some(vec![])));
        assert_eq!(block(s.stats(t)).aors, 0);
    }
}
