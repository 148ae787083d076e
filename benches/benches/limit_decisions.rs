//! In-process rate limit decisions: one token-bucket reservation on this node's sharded table,
//! on 1 and 2 threads, with 1, 1k and 1M distinct keys (a key per user, say). Beside it, the
//! naive way: the same bucket arithmetic in one `Mutex<HashMap>` for all keys.
//!
//! Redis never appears here: `sync` limits decide on this table too (Redis only sees the
//! background reports), so this is the per-request cost of a limit in either mode but `exact`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate_limits::{Bucket, BucketTable, Limit, TableOptions};

/// A limit that never refuses in the bench: the cost measured is the decision itself.
const LIMIT: Limit = Limit {
    capacity: u64::MAX / 4,
    period_ms: 60_000,
};

fn keys(n: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..n)
            .map(|i| format!("tollgate:limit:{{tpm/user-{i:07}}}:t"))
            .collect(),
    )
}

/// One decision: a key and a clock reading in, admitted or not out.
type Decide = Arc<dyn Fn(&str, u64) -> bool + Send + Sync>;

/// The naive table: one lock for everything.
#[derive(Default)]
struct Naive(Mutex<HashMap<String, Bucket>>);

impl Naive {
    fn reserve(&self, key: &str, cost: u64, now: u64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let b = map
            .entry(key.to_string())
            .or_insert_with(|| Bucket::full(LIMIT.capacity_f(), now));
        b.take(&LIMIT, cost, now).admitted()
    }
}

/// Run `iters` decisions split over `threads` threads; the wall time.
fn run_threads(threads: usize, iters: u64, keys: &Arc<Vec<String>>, decide: Decide) -> Duration {
    let per = iters / threads as u64 + 1;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (keys, decide) = (keys.clone(), decide.clone());
            std::thread::spawn(move || {
                let mut i = t * 7919;
                let mut admitted = 0u64;
                for n in 0..per {
                    i = (i + 104_729) % keys.len();
                    admitted += decide(&keys[i], n) as u64;
                }
                admitted
            })
        })
        .collect();
    for h in handles {
        black_box(h.join().unwrap_or(0));
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("limit_decision");
    g.throughput(Throughput::Elements(1));
    for n_keys in [1usize, 1_000, 1_000_000] {
        let keys = keys(n_keys);
        for threads in [1usize, 2] {
            let table = Arc::new(BucketTable::new(TableOptions {
                max_keys: 2_000_000,
                ..TableOptions::default()
            }));
            let t = table.clone();
            let ours: Decide = Arc::new(move |k, n| t.reserve(k, LIMIT, 100, n / 1_000, false, false).admitted());
            // Fill the table first: the steady state has every key present.
            run_threads(1, n_keys as u64 * 2, &keys, ours.clone());
            let id = format!("{threads}_threads/{n_keys}_keys");
            g.bench_function(BenchmarkId::new("tollgate", &id), |b| {
                b.iter_custom(|iters| run_threads(threads, iters, &keys, ours.clone()))
            });
            let naive = Arc::new(Naive::default());
            let nv = naive.clone();
            let theirs: Decide = Arc::new(move |k, n| nv.reserve(k, 100, n / 1_000));
            run_threads(1, n_keys as u64 * 2, &keys, theirs.clone());
            g.bench_function(BenchmarkId::new("naive_one_mutex", &id), |b| {
                b.iter_custom(|iters| run_threads(threads, iters, &keys, theirs.clone()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
