//! [`DigestCache`]: a bounded, thread-safe map from statement digest to a small value.
//!
//! One cache is shared by all connections (`Arc<Classifier>`): fallback verdicts are the same
//! for everyone, and a per-connection cache would re-parse the same statements per client.
//! It is split into 16 shards, each a `std::sync::Mutex` over a `HashMap` keyed by the digest
//! itself (already a hash, so the map hashes by identity) plus a slot array evicted by CLOCK
//! (second chance). A hit costs a shard lock, one probe and a clone: tens of nanoseconds.
//! Locks are held for a few instructions and never across `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 16;

/// Hashes a `u64` digest to itself (a digest is already a hash; SipHash on it is wasted work).
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Slot<V> {
    key: u64,
    value: V,
    referenced: bool,
}

struct Shard<V> {
    index: HashMap<u64, usize, BuildHasherDefault<Identity>>,
    slots: Vec<Slot<V>>,
    hand: usize,
    capacity: usize,
}

impl<V: Clone> Shard<V> {
    fn get(&mut self, key: u64) -> Option<V> {
        let i = *self.index.get(&key)?;
        let slot = self.slots.get_mut(i)?;
        slot.referenced = true;
        Some(slot.value.clone())
    }

    fn insert(&mut self, key: u64, value: V) {
        if let Some(slot) = self.index.get(&key).and_then(|&i| self.slots.get_mut(i)) {
            slot.value = value;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(Slot { key, value, referenced: false });
            return;
        }
        // CLOCK: clear reference bits until an unreferenced slot comes round (at most two laps).
        for _ in 0..2 * self.slots.len() {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len().max(1);
            let Some(slot) = self.slots.get_mut(i) else { return };
            if std::mem::take(&mut slot.referenced) {
                continue;
            }
            let old = std::mem::replace(slot, Slot { key, value, referenced: false });
            self.index.remove(&old.key);
            self.index.insert(key, i);
            return;
        }
    }
}

/// A bounded map from digest to `V`, safe to share between threads.
///
/// Invariant: holds at most [`DigestCache::capacity`] entries; inserting into a full shard
/// evicts one entry not read since the clock hand last passed it.
pub struct DigestCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
}

impl<V: Clone> DigestCache<V> {
    /// A cache for about `capacity` entries (rounded up to a multiple of 16, at least 16).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    index: HashMap::with_capacity_and_hasher(per_shard, BuildHasherDefault::default()),
                    slots: Vec::with_capacity(per_shard),
                    hand: 0,
                    capacity: per_shard,
                })
            })
            .collect();
        Self { shards }
    }

    fn shard(&self, digest: u64) -> Option<std::sync::MutexGuard<'_, Shard<V>>> {
        // The top bits pick the shard; the map uses the low bits.
        let i = usize::try_from(digest >> 60).unwrap_or(0) % SHARDS;
        let shard = self.shards.get(i)?;
        Some(shard.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The value cached for `digest`, marking it recently used.
    pub fn get(&self, digest: u64) -> Option<V> {
        self.shard(digest)?.get(digest)
    }

    /// Caches `value` for `digest`, evicting an old entry when the shard is full.
    pub fn insert(&self, digest: u64, value: V) {
        if let Some(mut shard) = self.shard(digest) {
            shard.insert(digest, value);
        }
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).slots.len()).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).capacity).sum()
    }
}

impl<V> std::fmt::Debug for DigestCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCache").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}
