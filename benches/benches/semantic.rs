//! The semantic cache's costs: embedding one 20-word query on one core (the multilingual default
//! beside all-MiniLM-L6-v2) and a batch of 16; nearest-neighbour search in one namespace of 10k
//! and 100k entries through the HNSW graph beside an exact scan; and reading plus comparing two
//! questions in the guards. Needs `scripts/setup.sh` (the models in `.models/`).
//!
//! The index holds synthetic embedding-like vectors (512 dims, 2,000 clusters with noise), so it
//! can grow to any size without embedding that many questions; the memory per entry it prints is
//! the process's resident growth over the build.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tollgate_semantic::index::{Index, IndexTuning};
use tollgate_semantic::{compare, load_runtime, normalise, Embedder, ModelFiles, Question};

const QUERY: &str =
    "Could you tell me how long it takes for a refund to reach my credit card after I return the shoes?";

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models")
}

fn embed(c: &mut Criterion) {
    if load_runtime(&models().join("onnxruntime/libonnxruntime.so")).is_err() {
        eprintln!("semantic bench: run scripts/setup.sh first");
        return;
    }
    let mut group = c.benchmark_group("embed_query");
    for model in ["use-multilingual-v3", "all-minilm-l6-v2"] {
        let Ok(mut e) = Embedder::open(&ModelFiles::in_dir(&models().join("embedders").join(model)), 1) else {
            continue;
        };
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new(model, "one"), |b| {
            b.iter(|| black_box(e.embed(&[QUERY])))
        });
        let batch: Vec<String> = (0..16).map(|i| format!("{QUERY} ({i})")).collect();
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        group.throughput(Throughput::Elements(16));
        group.bench_function(BenchmarkId::new(model, "batch16"), |b| {
            b.iter(|| black_box(e.embed(&texts)))
        });
    }
    group.finish();
}

/// Unit vectors around `clusters` random centres: near-duplicates exist, as with real questions.
fn vectors(n: usize, dims: usize, clusters: usize, rng: &mut SmallRng) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dims).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.gen_range(0..clusters)];
            let mut v: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-0.6f32..0.6)).collect();
            normalise(&mut v);
            v
        })
        .collect()
}

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn search(c: &mut Criterion) {
    let dims = 512;
    let mut rng = SmallRng::seed_from_u64(7);
    let mut group = c.benchmark_group("index_search");
    for n in [10_000usize, 100_000] {
        let data = vectors(n, dims, 2_000, &mut rng);
        let queries = vectors(1_000, dims, 2_000, &mut rng);
        let before = resident_bytes();
        let mut graph = Index::new(dims, IndexTuning::default());
        for (id, v) in data.iter().enumerate() {
            graph.insert(id as u64, v);
        }
        let per_entry = resident_bytes().saturating_sub(before) / n;
        eprintln!(
            "index_search: {n} entries, graph {}, ~{per_entry} resident bytes per entry",
            graph.has_graph()
        );
        let mut scan = Index::new(
            dims,
            IndexTuning {
                graph_from: usize::MAX,
                ..IndexTuning::default()
            },
        );
        for (id, v) in data.iter().enumerate() {
            scan.insert(id as u64, v);
        }
        let mut agree = 0;
        for q in queries.iter().take(200) {
            agree += usize::from(graph.nearest(q, 1).first().map(|x| x.0) == scan.nearest(q, 1).first().map(|x| x.0));
        }
        eprintln!("index_search: {n} entries, graph recall@1 against the scan {agree}/200");
        let mut i = 0;
        group.bench_function(BenchmarkId::new("hnsw", n), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(graph.nearest(&queries[i], 8))
            })
        });
        group.bench_function(BenchmarkId::new("exact_scan", n), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(scan.nearest(&queries[i], 8))
            })
        });
    }
    group.finish();
}

fn guards(c: &mut Criterion) {
    let cached = Question::read("How long does a refund take to reach my credit card after a return?");
    c.bench_function("guard_read_and_compare", |b| {
        b.iter(|| black_box(compare(&Question::read(black_box(QUERY)), &cached)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = embed, search, guards
}
criterion_main!(benches);
