//! A bounded map that forgets by generations: the transaction cache's.
//!
//! Keys are spread over shards, each behind its own lock. A shard holds two generations and
//! rotates (the current becomes the previous, the previous is forgotten) once a lifetime has
//! passed since its last rotation, or early when the current generation is full. An entry
//! therefore lives at least one lifetime after it was last stored, unless the map is at
//! capacity, and the map never holds more than about twice its capacity.
//!
//! It sits on the path of every request, so it hashes with foldhash (randomly seeded, so keys
//! a client picks cannot be aimed at one bucket) rather than SipHash, and a rotation reuses
//! the forgotten generation's table for the new one: under steady load the map stops
//! allocating once it has grown to its size.

use foldhash::fast::RandomState;
use parking_lot::Mutex;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Shards per map.
pub const SHARDS: usize = 16;

/// One shard's two generations.
pub struct Generations<K, V> {
    current: HashMap<K, V, RandomState>,
    previous: HashMap<K, V, RandomState>,
    rotated_at: u64,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    /// The entry for `key`, from either generation.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// Stores an entry in the current generation, dropping an older copy.
    pub fn insert<Q>(&mut self, key: &Q, value: V)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Replacing in place keeps the key's allocation (a response completing its pending
        // entry); an entry in `current` is never also in `previous`.
        if let Some(v) = self.current.get_mut(key) {
            *v = value;
            return;
        }
        self.previous.remove(key);
        self.current.insert(key.to_owned(), value);
    }

    /// Forgets an entry.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.current.remove(key);
        self.previous.remove(key);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// A sharded two-generation map. Time is a plain counter (seconds, milliseconds…) in the unit
/// of `lifetime`, passed in by the caller so tests control it.
pub struct GenerationalMap<K, V> {
    shards: Vec<Mutex<Generations<K, V>>>,
    /// Picks the shard; seeded apart from the shards' own maps.
    hasher: RandomState,
    lifetime: u64,
    per_shard_cap: usize,
}

impl<K: Hash + Eq, V> GenerationalMap<K, V> {
    /// A map keeping entries at least `lifetime` after their last store, holding about
    /// `capacity` entries per generation.
    pub fn new(lifetime: u64, capacity: usize) -> GenerationalMap<K, V> {
        GenerationalMap {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        current: HashMap::default(),
                        previous: HashMap::default(),
                        rotated_at: 0,
                    })
                })
                .collect(),
            hasher: RandomState::default(),
            lifetime: lifetime.max(1),
            per_shard_cap: (capacity / SHARDS).max(16),
        }
    }

    /// Runs `f` on the shard of `key`, after rotating it if due at `now`.
    pub fn with<Q: Hash + ?Sized, R>(
        &self,
        key: &Q,
        now: u64,
        f: impl FnOnce(&mut Generations<K, V>) -> R,
    ) -> R {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut s = self.shards[i].lock();
        if now.saturating_sub(s.rotated_at) >= self.lifetime
            || s.current.len() >= self.per_shard_cap
        {
            // The previous generation is forgotten, and its table becomes the new current.
            let s = &mut *s;
            std::mem::swap(&mut s.current, &mut s.previous);
            s.current.clear();
            s.rotated_at = now;
        }
        f(&mut s)
    }

    /// Entries held (both generations).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
