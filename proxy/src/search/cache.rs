//! What engines answered and what pages said, kept for a while on this node: the same query to
//! the same engine, or the same page, within the TTL is served from memory (results change
//! slowly next to the seconds a search costs). Bounded by entries; the oldest entry goes first.
//! Failures are never kept. The cache outlives config reloads; the TTL is the config's.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use super::engines::Hit;
use super::fetch::Page;

/// One bounded map with expiry, oldest-first eviction.
struct Store<K, V> {
    map: HashMap<K, (u64, V)>,
    order: VecDeque<K>,
    max: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Store<K, V> {
    fn new(max: usize) -> Self {
        Store {
            map: HashMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    /// The value of `key` while fresh. (An expired entry stays until it is written again or
    /// evicted: keys leave the map only in insertion order, so the map and the order agree.)
    fn get(&self, key: &K, now_ms: u64) -> Option<V> {
        self.map
            .get(key)
            .filter(|(expires, _)| *expires > now_ms)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: K, value: V, expires_ms: u64) {
        if self.max == 0 {
            return;
        }
        if self.map.insert(key.clone(), (expires_ms, value)).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > self.max {
            let Some(old) = self.order.pop_front() else { break };
            self.map.remove(&old);
        }
    }
}

/// An engine's answer is kept per (engine, query, results asked for).
type ResultKey = (String, String, usize);

/// The search cache of a node.
pub struct SearchCache {
    results: Mutex<Store<ResultKey, Arc<Vec<Hit>>>>,
    pages: Mutex<Store<String, Arc<Page>>>,
}

impl SearchCache {
    /// A cache of at most `entries` engine answers and `entries / 4` pages (0: off).
    pub fn new(entries: usize) -> Self {
        SearchCache {
            results: Mutex::new(Store::new(entries)),
            pages: Mutex::new(Store::new(entries / 4)),
        }
    }

    /// `engine`'s answer to `query` (asking for `n` results), if still fresh.
    pub fn results(&self, engine: &str, query: &str, n: usize, now_ms: u64) -> Option<Arc<Vec<Hit>>> {
        let key = (engine.to_string(), query.to_string(), n);
        self.results.lock().ok()?.get(&key, now_ms)
    }

    pub fn keep_results(&self, engine: &str, query: &str, n: usize, hits: Arc<Vec<Hit>>, expires_ms: u64) {
        if let Ok(mut s) = self.results.lock() {
            s.put((engine.to_string(), query.to_string(), n), hits, expires_ms);
        }
    }

    /// The page at `url`, if still fresh.
    pub fn page(&self, url: &str, now_ms: u64) -> Option<Arc<Page>> {
        self.pages.lock().ok()?.get(&url.to_string(), now_ms)
    }

    pub fn keep_page(&self, url: &str, page: Arc<Page>, expires_ms: u64) {
        if let Ok(mut s) = self.pages.lock() {
            s.put(url.to_string(), page, expires_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(n: usize) -> Arc<Vec<Hit>> {
        Arc::new(
            (0..n)
                .map(|i| Hit {
                    title: format!("t{i}"),
                    url: format!("https://x.example/{i}"),
                    text: String::new(),
                })
                .collect(),
        )
    }

    #[test]
    fn entries_are_served_until_they_expire_and_the_oldest_leave_first() {
        let c = SearchCache::new(2);
        c.keep_results("web", "q1", 5, hits(1), 1_000);
        assert_eq!(c.results("web", "q1", 5, 999).map(|h| h.len()), Some(1));
        assert!(c.results("web", "q1", 5, 1_000).is_none(), "expired");
        assert!(
            c.results("web", "q1", 3, 10).is_none(),
            "another result count is another query"
        );
        c.keep_results("web", "a", 5, hits(1), 5_000);
        c.keep_results("web", "b", 5, hits(2), 5_000);
        c.keep_results("web", "c", 5, hits(3), 5_000);
        assert!(c.results("web", "a", 5, 10).is_none(), "evicted");
        assert_eq!(c.results("web", "c", 5, 10).map(|h| h.len()), Some(3));
        let off = SearchCache::new(0);
        off.keep_results("web", "a", 5, hits(1), 5_000);
        assert!(off.results("web", "a", 5, 10).is_none());
    }

    #[test]
    fn rewriting_an_entry_many_times_keeps_the_bound() {
        let c = SearchCache::new(3);
        for i in 0..100u64 {
            c.keep_results("web", "same", 5, hits(1), 10_000 + i);
            c.keep_results("web", &format!("q{i}"), 5, hits(1), 10_000);
        }
        let s = c.results.lock().unwrap();
        assert_eq!((s.map.len(), s.order.len()), (3, 3));
    }
}
