//! Window counters in memory: a sharded table (no global lock), entries dropped once their
//! window has ended, so memory is bounded by the keys active in current windows.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 64;

/// One node's counters.
pub struct LocalCounters {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::quality::RandomState,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, (u64, u64), foldhash::quality::RandomState>,
    /// Increments since the last sweep of ended windows.
    since_sweep: usize,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalCounters {
    pub fn new() -> Self {
        LocalCounters {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            // Seeded per process: keys carry client-chosen identities.
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    /// Add one to `key` for the window ending at `end_ms`; returns the new count.
    pub fn incr(&self, key: &str, end_ms: u64, now_ms: u64) -> u64 {
        let mut shard = self.shard(key);
        shard.since_sweep += 1;
        if shard.since_sweep >= 256 {
            shard.since_sweep = 0;
            shard.map.retain(|_, (end, _)| *end > now_ms);
        }
        // Look up by `&str` first: the key is only allocated when it is new.
        if let Some(entry) = shard.map.get_mut(key) {
            if entry.0 <= now_ms || entry.0 != end_ms {
                *entry = (end_ms, 0);
            }
            entry.1 += 1;
            return entry.1;
        }
        shard.map.insert(key.to_string(), (end_ms, 1));
        1
    }

    /// Take back one increment of `key` in the window ending at `end_ms` (a request that was
    /// counted but not served). Nothing happens once that window is over.
    pub fn decr(&self, key: &str, end_ms: u64, now_ms: u64) {
        if let Some(entry) = self.shard(key).map.get_mut(key) {
            if entry.0 == end_ms && end_ms > now_ms {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    /// The locked shard that holds `key`.
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_restarts_with_a_new_window() {
        let c = LocalCounters::new();
        assert_eq!(c.incr("a", 1000, 10), 1);
        assert_eq!(c.incr("a", 1000, 20), 2);
        assert_eq!(c.incr("b", 1000, 20), 1);
        assert_eq!(c.incr("a", 2000, 1000), 1, "next window starts at zero");
    }

    #[test]
    fn a_refund_gives_back_one_count_of_the_same_window_only() {
        let c = LocalCounters::new();
        c.incr("a", 1000, 10);
        c.incr("a", 1000, 10);
        c.decr("a", 1000, 20);
        assert_eq!(c.incr("a", 1000, 30), 2, "one of two given back");
        c.decr("a", 900, 30); // an earlier window's refund
        c.decr("a", 1000, 1000); // after the window ended
        c.decr("missing", 1000, 30);
        assert_eq!(c.incr("a", 1000, 40), 3);
        for _ in 0..5 {
            c.decr("b", 1000, 10);
        }
        assert_eq!(c.incr("b", 1000, 10), 1, "never below zero");
    }

    #[test]
    fn ended_windows_are_swept() {
        let c = LocalCounters::new();
        for i in 0..20_000 {
            c.incr(&format!("old{i}"), 100, 0);
        }
        for i in 0..40_000 {
            c.incr(&format!("new{i}"), 300, 200);
        }
        assert!(c.len() < 41_000, "ended windows were kept: {}", c.len());
    }

    #[test]
    fn concurrent_increments_are_all_counted() {
        let c = std::sync::Arc::new(LocalCounters::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.incr("shared", 10_000, 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.incr("shared", 10_000, 1), 4001);
    }
}
