//! The cache's entries in memory: found by exact key or by a guarded nearest question in their
//! namespace, each with an expiry, within a byte budget.
//!
//! - **Exact**: the caller's hash of the normalised effective request → entry.
//! - **Semantic**: the nearest cached questions of the request's namespace ([`Index`]), tried in
//!   order of similarity until one passes the guards ([`compare`]) at the [`HitPolicy`].
//! - **Expiry**: an entry past its time is never returned and is dropped by
//!   [`Store::remove_expired`]; times are wall-clock milliseconds passed in by the caller, so
//!   tests control them and entries read from Redis keep their absolute expiry.
//! - **Budget**: when a new entry would pass `max_bytes`, entries are evicted in least-recently-
//!   used order, approximated by CLOCK (a hit sets a bit under the read lock; eviction walks the
//!   insertion queue, giving a marked entry a second chance), so lookups never take the write lock.
//!
//! The answer is opaque (`A`): the proxy stores what it replays.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::guard::{compare, HitPolicy, Question};
use crate::index::{Index, IndexTuning};

/// The namespace a question is answered in (model, instructions, history, maybe consumer), as
/// the caller's hash of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(pub u64);

/// The caller's hash of the normalised effective request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExactKey(pub [u8; 32]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of all entries (answers, questions, vectors, bookkeeping).
    pub max_bytes: usize,
    /// Bytes of one entry: a larger answer is not cached.
    pub max_entry_bytes: usize,
    /// Nearest cached questions tried per semantic lookup.
    pub candidates: usize,
    pub index: IndexTuning,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits {
            max_bytes: 256 << 20,
            max_entry_bytes: 1 << 20,
            candidates: 8,
            index: IndexTuning::default(),
        }
    }
}

/// An entry to cache.
pub struct NewEntry<A> {
    pub namespace: Namespace,
    /// The public model, for flushing one model's entries.
    pub model: String,
    pub exact: ExactKey,
    /// The question's text and its unit vector, when it can be found semantically.
    pub question: Option<(String, Vec<f32>)>,
    pub answer: Arc<A>,
    /// The answer's size, counted against the budget.
    pub answer_bytes: usize,
    pub expires_at_ms: u64,
}

/// A cached answer found by a lookup.
#[derive(Debug)]
pub struct Hit<A> {
    pub id: u64,
    pub answer: Arc<A>,
    /// The cosine to the cached question, for a semantic hit.
    pub similarity: Option<f32>,
    pub expires_at_ms: u64,
}

impl<A> Clone for Hit<A> {
    fn clone(&self) -> Self {
        Hit {
            id: self.id,
            answer: Arc::clone(&self.answer),
            similarity: self.similarity,
            expires_at_ms: self.expires_at_ms,
        }
    }
}

/// Which entries a flush removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flush {
    All,
    Namespace(Namespace),
    Model(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: usize,
    pub bytes: usize,
    pub evictions: u64,
}

struct Stored<A> {
    namespace: Namespace,
    model: String,
    exact: ExactKey,
    question: Option<Question>,
    answer: Arc<A>,
    bytes: usize,
    expires_at_ms: u64,
    referenced: AtomicBool,
}

struct Inner<A> {
    entries: HashMap<u64, Stored<A>>,
    exact: HashMap<ExactKey, u64>,
    namespaces: HashMap<Namespace, Index>,
    /// Insertion order for CLOCK eviction; ids no longer in `entries` are skipped.
    queue: VecDeque<u64>,
    bytes: usize,
    next_id: u64,
    evictions: u64,
}

pub struct Store<A> {
    limits: StoreLimits,
    inner: RwLock<Inner<A>>,
}

/// Bookkeeping counted per entry beside its answer, question and vector.
const ENTRY_OVERHEAD: usize = 160;

impl<A> Store<A> {
    pub fn new(limits: StoreLimits) -> Store<A> {
        Store {
            limits,
            inner: RwLock::new(Inner {
                entries: HashMap::new(),
                exact: HashMap::new(),
                namespaces: HashMap::new(),
                queue: VecDeque::new(),
                bytes: 0,
                next_id: 1,
                evictions: 0,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<A>> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<A>> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live entry stored under `key`.
    pub fn exact(&self, key: &ExactKey, now_ms: u64) -> Option<Hit<A>> {
        let inner = self.read();
        let id = *inner.exact.get(key)?;
        let stored = inner.entries.get(&id).filter(|s| s.expires_at_ms > now_ms)?;
        stored.referenced.store(true, Ordering::Relaxed);
        Some(hit(id, stored, None))
    }

    /// When the entry under `key` expires, if there is one (live or not yet removed).
    pub fn expiry_of(&self, key: &ExactKey) -> Option<u64> {
        let inner = self.read();
        let id = inner.exact.get(key)?;
        inner.entries.get(id).map(|s| s.expires_at_ms)
    }

    /// The most similar live question of `namespace` that the guards let `question` reuse.
    pub fn semantic(
        &self,
        namespace: Namespace,
        vector: &[f32],
        question: &Question,
        policy: &HitPolicy,
        now_ms: u64,
    ) -> Option<Hit<A>> {
        let inner = self.read();
        let index = inner.namespaces.get(&namespace)?;
        for (id, similarity) in index.nearest(vector, self.limits.candidates) {
            if similarity < policy.threshold.min(policy.strict) {
                break;
            }
            let Some(stored) = inner.entries.get(&id).filter(|s| s.expires_at_ms > now_ms) else {
                continue;
            };
            let Some(cached) = &stored.question else { continue };
            if policy.allows(similarity, compare(question, cached)) {
                stored.referenced.store(true, Ordering::Relaxed);
                return Some(hit(id, stored, Some(similarity)));
            }
        }
        None
    }

    /// Caches `entry`, replacing any entry under the same exact key and evicting others to stay
    /// within the budget. `None` when the entry alone is over `max_entry_bytes`.
    pub fn insert(&self, entry: NewEntry<A>) -> Option<u64> {
        let question_bytes = entry.question.as_ref().map_or(0, |(q, v)| q.len() * 3 + v.len() * 4);
        let bytes = entry.answer_bytes + question_bytes + entry.model.len() + ENTRY_OVERHEAD;
        if bytes > self.limits.max_entry_bytes || bytes > self.limits.max_bytes {
            return None;
        }
        let question = entry.question.as_ref().map(|(text, _)| Question::read(text));
        let mut inner = self.write();
        if let Some(old) = inner.exact.get(&entry.exact).copied() {
            inner.remove(old);
        }
        while inner.bytes + bytes > self.limits.max_bytes && inner.evict_one() {}
        let id = inner.next_id;
        inner.next_id += 1;
        if let Some((_, vector)) = &entry.question {
            let dims = vector.len();
            let tuning = self.limits.index;
            inner
                .namespaces
                .entry(entry.namespace)
                .or_insert_with(|| Index::new(dims, tuning))
                .insert(id, vector);
        }
        inner.exact.insert(entry.exact, id);
        inner.queue.push_back(id);
        inner.bytes += bytes;
        inner.entries.insert(
            id,
            Stored {
                namespace: entry.namespace,
                model: entry.model,
                exact: entry.exact,
                question,
                answer: entry.answer,
                bytes,
                expires_at_ms: entry.expires_at_ms,
                referenced: AtomicBool::new(false),
            },
        );
        Some(id)
    }

    /// Drops every entry past its time; returns how many.
    pub fn remove_expired(&self, now_ms: u64) -> usize {
        let mut inner = self.write();
        let expired: Vec<u64> = inner
            .entries
            .iter()
            .filter(|(_, s)| s.expires_at_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            inner.remove(*id);
        }
        expired.len()
    }

    /// Removes the entries `scope` names; returns how many.
    pub fn flush(&self, scope: &Flush) -> usize {
        let mut inner = self.write();
        let doomed: Vec<u64> = inner
            .entries
            .iter()
            .filter(|(_, s)| match scope {
                Flush::All => true,
                Flush::Namespace(ns) => s.namespace == *ns,
                Flush::Model(model) => s.model == *model,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &doomed {
            inner.remove(*id);
        }
        doomed.len()
    }

    pub fn stats(&self) -> StoreStats {
        let inner = self.read();
        StoreStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            evictions: inner.evictions,
        }
    }
}

fn hit<A>(id: u64, stored: &Stored<A>, similarity: Option<f32>) -> Hit<A> {
    Hit {
        id,
        answer: Arc::clone(&stored.answer),
        similarity,
        expires_at_ms: stored.expires_at_ms,
    }
}

impl<A> Inner<A> {
    fn remove(&mut self, id: u64) {
        let Some(stored) = self.entries.remove(&id) else { return };
        self.bytes -= stored.bytes;
        if self.exact.get(&stored.exact) == Some(&id) {
            self.exact.remove(&stored.exact);
        }
        if let Some(index) = self.namespaces.get_mut(&stored.namespace) {
            index.remove(id);
            if index.is_empty() {
                self.namespaces.remove(&stored.namespace);
            }
        }
    }

    /// Evicts the least recently used entry by CLOCK; false when nothing is left to evict.
    fn evict_one(&mut self) -> bool {
        while let Some(id) = self.queue.pop_front() {
            let Some(stored) = self.entries.get(&id) else { continue };
            if stored.referenced.swap(false, Ordering::Relaxed) {
                self.queue.push_back(id);
                continue;
            }
            self.remove(id);
            self.evictions += 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Question;
    use crate::DEFAULT_POLICY;

    fn key(n: u8) -> ExactKey {
        ExactKey([n; 32])
    }

    fn entry(n: u8, question: Option<(&str, Vec<f32>)>, expires: u64) -> NewEntry<String> {
        NewEntry {
            namespace: Namespace(7),
            model: "m".to_string(),
            exact: key(n),
            question: question.map(|(q, v)| (q.to_string(), v)),
            answer: Arc::new(format!("answer {n}")),
            answer_bytes: 1000,
            expires_at_ms: expires,
        }
    }

    #[test]
    fn an_entry_is_found_until_it_expires() {
        let store = Store::new(StoreLimits::default());
        store.insert(entry(1, None, 1_000));
        assert_eq!(*store.exact(&key(1), 999).unwrap().answer, "answer 1");
        assert!(store.exact(&key(1), 1_000).is_none());
        assert_eq!(store.remove_expired(1_000), 1);
        assert_eq!(store.stats().entries, 0);
        assert_eq!(store.stats().bytes, 0);
    }

    #[test]
    fn a_semantic_hit_passes_the_guards_and_stays_in_its_namespace() {
        let store = Store::new(StoreLimits::default());
        let v = vec![1.0, 0.0, 0.0];
        store.insert(entry(1, Some(("How do I turn on dark mode?", v.clone())), 10_000));
        let same = Question::read("How do I enable dark mode?");
        let hit = store.semantic(Namespace(7), &v, &same, &DEFAULT_POLICY, 0).unwrap();
        assert_eq!(hit.similarity, Some(1.0));
        let opposite = Question::read("How do I turn off dark mode?");
        assert!(
            store
                .semantic(Namespace(7), &v, &opposite, &DEFAULT_POLICY, 0)
                .is_none(),
            "guard blocks"
        );
        assert!(
            store.semantic(Namespace(8), &v, &same, &DEFAULT_POLICY, 0).is_none(),
            "other namespace"
        );
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used_first() {
        let store: Store<String> = Store::new(StoreLimits {
            max_bytes: 3 * (1000 + 1 + ENTRY_OVERHEAD),
            ..StoreLimits::default()
        });
        for n in 1..=3 {
            store.insert(entry(n, None, u64::MAX));
        }
        assert!(store.exact(&key(1), 0).is_some(), "1 is used again");
        store.insert(entry(4, None, u64::MAX));
        assert!(store.exact(&key(1), 0).is_some());
        assert!(store.exact(&key(2), 0).is_none(), "2 was the least recently used");
        assert!(store.exact(&key(3), 0).is_some() && store.exact(&key(4), 0).is_some());
        assert_eq!(store.stats().evictions, 1);
    }

    #[test]
    fn flushing_a_model_or_everything_removes_exact_and_semantic_entries() {
        let store = Store::new(StoreLimits::default());
        let mut other = entry(2, Some(("b", vec![0.0, 1.0])), u64::MAX);
        other.model = "other".to_string();
        store.insert(entry(1, Some(("a", vec![1.0, 0.0])), u64::MAX));
        store.insert(other);
        assert_eq!(store.flush(&Flush::Model("m".to_string())), 1);
        assert!(store.exact(&key(1), 0).is_none() && store.exact(&key(2), 0).is_some());
        assert_eq!(store.flush(&Flush::All), 1);
        assert_eq!(
            store.stats(),
            StoreStats {
                entries: 0,
                bytes: 0,
                evictions: 0
            }
        );
    }

    #[test]
    fn a_refreshed_entry_replaces_the_old_one() {
        let store = Store::new(StoreLimits::default());
        store.insert(entry(1, Some(("q", vec![1.0, 0.0])), u64::MAX));
        let mut fresh = entry(1, Some(("q", vec![1.0, 0.0])), u64::MAX);
        fresh.answer = Arc::new("new".to_string());
        store.insert(fresh);
        assert_eq!(store.stats().entries, 1);
        assert_eq!(*store.exact(&key(1), 0).unwrap().answer, "new");
    }
}
