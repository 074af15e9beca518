//! A bounded map of byte values that forgets by generations: the transaction cache's.
//!
//! Keys are spread over shards, each behind its own lock. A shard holds two generations and
//! rotates (the current becomes the previous, the previous is forgotten) once a lifetime has
//! passed since its last rotation, or early when the current generation is full. An entry
//! therefore lives at least one lifetime after it was last stored, unless the map is at
//! capacity, and the map never holds more than about twice its capacity.
//!
//! A generation keeps its values end to end in one buffer, and its table only where each
//! lies: storing a value appends it, and forgetting a generation clears a table of plain
//! numbers and the buffer, with nothing to free per entry. A heap block per value (as
//! before) was freed at a rotation long after it was written, one cold block (and its shared
//! header) at a time, and the allocator then handed those cold blocks out again.
//!
//! It sits on the path of every request, so it hashes with foldhash (randomly seeded, so keys
//! a client picks cannot be aimed at one bucket) rather than SipHash, and a rotation reuses
//! the forgotten generation's table and buffer for the new one: under steady load the map
//! stops allocating once it has grown to its size.

use foldhash::fast::RandomState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Shards per map.
pub const SHARDS: usize = 16;

/// Where an entry's value lies in its generation's buffer.
#[derive(Clone, Copy)]
struct Slot {
    at: u32,
    /// [`NO_VALUE`]: the entry has none (stored with `None`).
    len: u32,
}

const NO_VALUE: u32 = u32::MAX;

/// One generation: where each entry's value lies, and the values.
struct Generation<K> {
    table: HashMap<K, Slot, RandomState>,
    bytes: Vec<u8>,
}

impl<K: Hash + Eq> Generation<K> {
    fn value(&self, slot: Slot) -> Option<&[u8]> {
        let at = slot.at as usize;
        (slot.len != NO_VALUE).then(|| &self.bytes[at..at + slot.len as usize])
    }

    /// Appends `value`; `None` when the buffer cannot address it (the shard then rotates).
    fn append(&mut self, value: Option<&[u8]>) -> Option<Slot> {
        let Some(v) = value else {
            return Some(Slot {
                at: 0,
                len: NO_VALUE,
            });
        };
        let at = u32::try_from(self.bytes.len()).ok()?;
        let len = u32::try_from(v.len()).ok().filter(|&l| l != NO_VALUE)?;
        at.checked_add(len)?;
        self.bytes.extend_from_slice(v);
        Some(Slot { at, len })
    }

    fn clear(&mut self) {
        self.table.clear();
        self.bytes.clear();
    }
}

impl<K> Default for Generation<K> {
    fn default() -> Self {
        Generation {
            table: HashMap::default(),
            bytes: Vec::new(),
        }
    }
}

/// One shard's two generations.
pub struct Generations<K> {
    current: Generation<K>,
    previous: Generation<K>,
    rotated_at: u64,
}

impl<K: Hash + Eq + Clone> Generations<K> {
    /// The entry for `key`, from either generation: `Some(None)` if it was stored without a
    /// value.
    pub fn get(&self, key: &K) -> Option<Option<&[u8]>> {
        [&self.current, &self.previous]
            .into_iter()
            .find_map(|g| g.table.get(key).map(|&slot| g.value(slot)))
    }

    /// Stores an entry in the current generation (with a copy of `value`, if any), dropping
    /// an older one.
    pub fn insert(&mut self, key: &K, value: Option<&[u8]>) {
        let slot = match self.current.append(value) {
            Some(slot) => slot,
            None => {
                // The buffer is at the 4 GiB its offsets reach: start a new generation.
                self.rotate();
                self.current
                    .append(value)
                    .expect("an empty buffer holds a value")
            }
        };
        // An entry in `current` is never also in `previous`.
        if let Some(s) = self.current.table.get_mut(key) {
            *s = slot;
            return;
        }
        self.previous.table.remove(key);
        self.current.table.insert(key.clone(), slot);
    }

    /// Forgets an entry.
    pub fn remove(&mut self, key: &K) {
        self.current.table.remove(key);
        self.previous.table.remove(key);
    }

    /// The previous generation is forgotten, and its table and buffer become the new
    /// current's.
    fn rotate(&mut self) {
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.clear();
    }

    fn len(&self) -> usize {
        self.current.table.len() + self.previous.table.len()
    }
}

/// A sharded two-generation map. Time is a plain counter (seconds, milliseconds…) in the unit
/// of `lifetime`, passed in by the caller so tests control it.
pub struct GenerationalMap<K> {
    shards: Vec<Mutex<Generations<K>>>,
    /// Picks the shard; seeded apart from the shards' own maps.
    hasher: RandomState,
    lifetime: u64,
    per_shard_cap: usize,
}

impl<K: Hash + Eq + Clone> GenerationalMap<K> {
    /// A map keeping entries at least `lifetime` after their last store, holding about
    /// `capacity` entries per generation.
    pub fn new(lifetime: u64, capacity: usize) -> GenerationalMap<K> {
        GenerationalMap {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        current: Generation::default(),
                        previous: Generation::default(),
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
    pub fn with<R>(&self, key: &K, now: u64, f: impl FnOnce(&mut Generations<K>) -> R) -> R {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut s = self.shards[i].lock();
        if now.saturating_sub(s.rotated_at) >= self.lifetime
            || s.current.table.len() >= self.per_shard_cap
        {
            s.rotate();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_live_two_generations_and_keep_their_bytes() {
        let m: GenerationalMap<u32> = GenerationalMap::new(10, 1000);
        m.with(&1, 0, |g| g.insert(&1, None));
        m.with(&1, 0, |g| assert_eq!(g.get(&1), Some(None)));
        m.with(&1, 1, |g| g.insert(&1, Some(b"first")));
        m.with(&2, 1, |g| g.insert(&2, Some(b"second")));
        // One rotation later both are still there, from the previous generation.
        m.with(&1, 12, |g| assert_eq!(g.get(&1), Some(Some(&b"first"[..]))));
        m.with(&2, 12, |g| {
            assert_eq!(g.get(&2), Some(Some(&b"second"[..])))
        });
        // Stored again: the newer value, once.
        m.with(&1, 12, |g| g.insert(&1, Some(b"again")));
        m.with(&1, 12, |g| assert_eq!(g.get(&1), Some(Some(&b"again"[..]))));
        // Two rotations after its last store an entry is gone.
        m.with(&1, 24, |g| assert!(g.get(&1).is_some()));
        m.with(&1, 36, |g| assert_eq!(g.get(&1), None));
        m.with(&1, 36, |g| g.remove(&1));
        assert!(m.len() <= 1, "{}", m.len());
    }

    #[test]
    fn a_full_shard_rotates_early_and_reuses_its_buffers() {
        let m: GenerationalMap<u32> = GenerationalMap::new(u64::MAX, 16 * SHARDS);
        for k in 0..10_000u32 {
            m.with(&k, 0, |g| g.insert(&k, Some(&k.to_be_bytes())));
        }
        assert!(m.len() <= 2 * 16 * SHARDS, "{}", m.len());
        let last = 9_999u32;
        m.with(&last, 0, |g| {
            assert_eq!(g.get(&last), Some(Some(&last.to_be_bytes()[..])))
        });
    }
}
