//! Nearest cached questions of one namespace.
//!
//! Most namespaces are small (one conversation's history, one bot's few hundred FAQs), and for
//! them a scan of the vectors is exact and faster than any graph. A namespace that grows past
//! [`IndexTuning::graph_from`] live vectors (1024 by default, where a scan costs about what a graph search does) gets an HNSW graph (`hnsw_rs`, dot product on unit
//! vectors) for sub-millisecond search at a million entries. `hnsw_rs` cannot delete, so a removed
//! entry is a tombstone, skipped by searches, and the graph is rebuilt from the live vectors when
//! tombstones pass a quarter of it.

use std::collections::{HashMap, HashSet};

use hnsw_rs::prelude::{DistDot, Hnsw};

use crate::cosine;

/// How the graph is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTuning {
    /// Live vectors from which a namespace gets a graph instead of a scan.
    pub graph_from: usize,
    /// Links per node (HNSW `M`).
    pub links: usize,
    /// Candidates kept while inserting (`ef_construction`).
    pub ef_construction: usize,
    /// Candidates kept while searching (`ef`).
    pub ef_search: usize,
}

impl Default for IndexTuning {
    fn default() -> IndexTuning {
        IndexTuning {
            graph_from: 1024,
            links: 16,
            ef_construction: 64,
            ef_search: 64,
        }
    }
}

/// The vectors of one namespace, by entry id.
pub struct Index {
    tuning: IndexTuning,
    dims: usize,
    /// Slot → entry id; the vector of slot `s` is `vectors[s * dims..]`.
    ids: Vec<u64>,
    slots: HashMap<u64, usize>,
    vectors: Vec<f32>,
    removed: HashSet<usize>,
    graph: Option<Hnsw<'static, f32, DistDot>>,
}

impl Index {
    pub fn new(dims: usize, tuning: IndexTuning) -> Index {
        Index {
            tuning,
            dims,
            ids: Vec::new(),
            slots: HashMap::new(),
            vectors: Vec::new(),
            removed: HashSet::new(),
            graph: None,
        }
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.ids.len() - self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether searches go through a graph (for tests and metrics).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Adds `vector` (unit length, `dims` long) for entry `id`.
    pub fn insert(&mut self, id: u64, vector: &[f32]) {
        if vector.len() != self.dims || self.slots.contains_key(&id) {
            return;
        }
        let slot = self.ids.len();
        self.ids.push(id);
        self.slots.insert(id, slot);
        self.vectors.extend_from_slice(vector);
        match &self.graph {
            Some(graph) => graph.insert_slice((vector, slot)),
            None if self.len() >= self.tuning.graph_from => self.rebuild(),
            None => {}
        }
    }

    /// Marks entry `id` removed; rebuilds (or drops to a scan) when tombstones pile up.
    pub fn remove(&mut self, id: u64) {
        if let Some(slot) = self.slots.remove(&id) {
            self.removed.insert(slot);
        }
        if self.removed.len() * 4 > self.ids.len() {
            self.compact();
        }
    }

    /// Up to `k` live entries nearest to `query`, most similar first, as (id, cosine).
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dims || k == 0 {
            return Vec::new();
        }
        let mut out: Vec<(u64, f32)> = match &self.graph {
            Some(graph) => graph
                .search(query, k + self.removed.len().min(k), self.tuning.ef_search.max(k))
                .into_iter()
                .filter(|n| !self.removed.contains(&n.d_id))
                .map(|n| (self.ids[n.d_id], cosine(query, self.vector(n.d_id))))
                .collect(),
            None => {
                let mut all: Vec<(u64, f32)> = (0..self.ids.len())
                    .filter(|s| !self.removed.contains(s))
                    .map(|s| (self.ids[s], cosine(query, self.vector(s))))
                    .collect();
                // Only the best k need ordering: select them first, sort those below.
                if all.len() > k {
                    all.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
                    all.truncate(k);
                }
                all
            }
        };
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(k);
        out
    }

    fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dims..(slot + 1) * self.dims]
    }

    /// Drops tombstoned slots and rebuilds the graph from what is left.
    fn compact(&mut self) {
        let mut ids = Vec::with_capacity(self.len());
        let mut vectors = Vec::with_capacity(self.len() * self.dims);
        for slot in 0..self.ids.len() {
            if !self.removed.contains(&slot) {
                ids.push(self.ids[slot]);
                vectors.extend_from_slice(self.vector(slot));
            }
        }
        self.slots = ids.iter().enumerate().map(|(slot, id)| (*id, slot)).collect();
        self.ids = ids;
        self.vectors = vectors;
        self.removed.clear();
        self.graph = None;
        if self.len() >= self.tuning.graph_from {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let live = self.ids.len();
        let graph = Hnsw::new(
            self.tuning.links,
            (live * 2).max(1024),
            16,
            self.tuning.ef_construction,
            DistDot {},
        );
        let data: Vec<(&[f32], usize)> = (0..live)
            .filter(|s| !self.removed.contains(s))
            .map(|s| (self.vector(s), s))
            .collect();
        graph.parallel_insert_slice(&data);
        self.graph = Some(graph);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise;

    fn vector(seed: u64, dims: usize) -> Vec<f32> {
        // A small xorshift: deterministic pseudo-random unit vectors.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        normalise(&mut v);
        v
    }

    #[test]
    fn scan_and_graph_find_the_same_nearest_entry() {
        let tuning = IndexTuning {
            graph_from: 300,
            ..IndexTuning::default()
        };
        let mut small = Index::new(
            32,
            IndexTuning {
                graph_from: usize::MAX,
                ..tuning
            },
        );
        let mut big = Index::new(32, tuning);
        for id in 0..600 {
            small.insert(id, &vector(id, 32));
            big.insert(id, &vector(id, 32));
        }
        assert!(!small.has_graph() && big.has_graph());
        let mut agree = 0;
        for id in 0..100 {
            let q = vector(id, 32);
            assert_eq!(small.nearest(&q, 1)[0].0, id, "a stored vector is its own nearest");
            agree += usize::from(big.nearest(&q, 1)[0].0 == id);
        }
        assert!(agree >= 98, "graph recall@1 {agree}/100");
    }

    #[test]
    fn removed_entries_are_never_returned_and_compaction_keeps_the_rest() {
        let mut index = Index::new(
            16,
            IndexTuning {
                graph_from: 50,
                ..IndexTuning::default()
            },
        );
        for id in 0..100 {
            index.insert(id, &vector(id, 16));
        }
        for id in 0..40 {
            index.remove(id);
        }
        assert_eq!(index.len(), 60);
        for id in 0..100 {
            let found = index.nearest(&vector(id, 16), 3);
            assert!(
                found.iter().all(|(x, _)| *x >= 40),
                "tombstoned entry {id} returned: {found:?}"
            );
            if id >= 40 {
                assert_eq!(found[0].0, id);
            }
        }
    }
}
