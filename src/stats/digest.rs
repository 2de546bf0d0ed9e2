//! Per-digest statistics for the most frequent statements, in bounded memory.
//!
//! The store keeps at most `capacity` digests (`stats.digests`), split over up to 16 shards so
//! that sessions rarely contend for a lock. Each shard runs the space-saving algorithm: a digest
//! not yet kept replaces the one with the smallest estimated count when the shard is full, and
//! inherits that count as its starting estimate (kept apart from what it really counted). So a
//! statement that is frequent stays, one-off statements churn through the tail, and memory never
//! grows with the number of distinct statements. The normalized text is computed only when a
//! digest enters the store and is cut to [`TEXT_LIMIT`] bytes.
//!
//! A hit costs one uncontended lock, one hash lookup and a few adds.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::classify::Identity;

/// Upper bounds (seconds) of the per-digest latency buckets; coarser than the global histogram
/// to keep `/metrics` small (12 lines per digest).
pub const DIGEST_BUCKETS: [f64; 9] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Longest normalized text kept per digest, in bytes.
pub const TEXT_LIMIT: usize = 1024;

/// Most shards; a store smaller than this has one shard per digest.
const SHARDS: usize = 16;

/// Statistics of one digest.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestStats {
    /// The digest (`classify::Classified::digest`).
    pub digest: u64,
    /// Normalized statement text, at most [`TEXT_LIMIT`] bytes.
    pub text: Arc<str>,
    /// Statements counted since the digest entered the store.
    pub count: u64,
    /// Of those, how many ended with an error or failed.
    pub errors: u64,
    /// Rows returned, summed.
    pub rows: u64,
    /// Latency summed, in seconds.
    pub seconds: f64,
    /// Count per latency bucket (not cumulative), plus one for slower than the last bound.
    pub buckets: [u64; DIGEST_BUCKETS.len() + 1],
    /// Estimated count inherited from the digest it evicted (space-saving's error bound).
    pub inherited: u64,
}

impl DigestStats {
    /// The digest as 16 hex digits (metric label and admin column).
    pub fn id(&self) -> String {
        format!("{:016x}", self.digest)
    }

    /// Mean latency, when anything was counted.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_secs_f64(self.seconds / self.count as f64))
    }

    /// Latency at quantile `q` (0..=1), as the upper bound of the bucket holding it (`None` when
    /// nothing was counted or it is slower than the last bound).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bound, n) in DIGEST_BUCKETS.iter().zip(self.buckets) {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_secs_f64(*bound));
            }
        }
        None
    }

    fn rank(&self) -> u64 {
        self.count.saturating_add(self.inherited)
    }

    fn add(&mut self, elapsed: Duration, rows: u64, error: bool) {
        self.count += 1;
        self.errors += u64::from(error);
        self.rows = self.rows.saturating_add(rows);
        let seconds = elapsed.as_secs_f64();
        self.seconds += seconds;
        let bucket = DIGEST_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(DIGEST_BUCKETS.len());
        if let Some(n) = self.buckets.get_mut(bucket) {
            *n += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<u64, DigestStats, BuildHasherDefault<Identity>>,
}

/// The top-N digest store. `Send + Sync`; share it through an `Arc`.
#[derive(Debug)]
pub struct Digests {
    shards: Vec<Mutex<Shard>>,
    capacity: AtomicUsize,
}

impl Digests {
    /// A store keeping at most `capacity` digests (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        Self { shards, capacity: AtomicUsize::new(capacity) }
    }

    /// Shards in use and the capacity of shard `i`: the capacity is spread so that the total is
    /// exactly the configured one.
    fn shard_capacity(&self, i: usize) -> usize {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let used = capacity.clamp(1, SHARDS);
        if i >= used {
            return 0;
        }
        capacity / used + usize::from(i < capacity % used)
    }

    fn shard_of(&self, digest: u64) -> usize {
        let used = self.capacity.load(Ordering::Relaxed).clamp(1, SHARDS);
        // The digest is already a hash; fold its high bits in for shards of small capacities.
        ((digest ^ (digest >> 32)) % used as u64) as usize
    }

    /// Records one statement. `text` is called only when the digest enters the store.
    pub fn record(&self, digest: u64, text: impl FnOnce() -> String, elapsed: Duration, rows: u64, error: bool) {
        let index = self.shard_of(digest);
        let capacity = self.shard_capacity(index);
        if capacity == 0 {
            return;
        }
        let Some(shard) = self.shards.get(index) else { return };
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = shard.entries.get_mut(&digest) {
            entry.add(elapsed, rows, error);
            return;
        }
        let mut inherited = 0;
        while shard.entries.len() >= capacity {
            let Some((&victim, stats)) = shard.entries.iter().min_by_key(|(_, s)| s.rank()) else { break };
            inherited = stats.rank();
            shard.entries.remove(&victim);
        }
        let mut text = text();
        truncate(&mut text, TEXT_LIMIT);
        let mut entry = DigestStats {
            digest,
            text: text.into(),
            count: 0,
            errors: 0,
            rows: 0,
            seconds: 0.0,
            buckets: [0; DIGEST_BUCKETS.len() + 1],
            inherited,
        };
        entry.add(elapsed, rows, error);
        shard.entries.insert(digest, entry);
    }

    /// Changes the capacity; shrinking evicts the least frequent digests at once. Digests whose
    /// shard changes with the new capacity are forgotten.
    pub fn set_capacity(&self, capacity: usize) {
        let before = self.capacity.swap(capacity, Ordering::Relaxed);
        if before == capacity {
            return;
        }
        let kept = self.top(usize::MAX);
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|p| p.into_inner()).entries.clear();
        }
        // Re-insert the most frequent first, so that what does not fit is the least frequent.
        for stats in kept {
            let index = self.shard_of(stats.digest);
            let capacity = self.shard_capacity(index);
            let Some(shard) = self.shards.get(index) else { continue };
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            if shard.entries.len() < capacity {
                shard.entries.insert(stats.digest, stats);
            }
        }
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Digests kept now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len()).sum()
    }

    /// True when no digest is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of normalized text held, for memory checks.
    pub fn text_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.values().map(|e| e.text.len()).sum::<usize>())
            .sum()
    }

    /// Up to `limit` digests, most frequent first (ties by digest, for stable output).
    pub fn top(&self, limit: usize) -> Vec<DigestStats> {
        let mut all: Vec<DigestStats> = Vec::new();
        for shard in &self.shards {
            all.extend(shard.lock().unwrap_or_else(|p| p.into_inner()).entries.values().cloned());
        }
        all.sort_by(|a, b| b.count.cmp(&a.count).then(a.digest.cmp(&b.digest)));
        all.truncate(limit);
        all
    }
}

/// Cuts `text` to at most `limit` bytes on a character boundary, marking the cut with `…`.
pub fn truncate(text: &mut String, limit: usize) {
    if text.len() <= limit {
        return;
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}
