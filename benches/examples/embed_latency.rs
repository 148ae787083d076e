//! Latency percentiles of embedding one 20-word query on one core, and batched throughput, for
//! each shipped model: `cargo run --release -p tollgate-benches --example embed_latency`
//! (needs `scripts/setup.sh`). One intra-op thread, 2,000 single queries after 100 unmeasured,
//! then 200 batches of 16.

use std::path::PathBuf;
use std::time::Instant;

use tollgate_semantic::{load_runtime, Embedder, ModelFiles};

const QUERY: &str =
    "Could you tell me how long it takes for a refund to reach my credit card after I return the shoes?";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models");
    load_runtime(&models.join("onnxruntime/libonnxruntime.so"))?;
    println!("| model | one query p50 | p99 | max | batch of 16: queries/s |");
    println!("|---|---|---|---|---|");
    for model in ["use-multilingual-v3", "all-minilm-l6-v2"] {
        let mut e = Embedder::open(&ModelFiles::in_dir(&models.join("embedders").join(model)), 1)?;
        for _ in 0..100 {
            e.embed(&[QUERY])?;
        }
        let mut ms: Vec<f64> = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            let t = Instant::now();
            std::hint::black_box(e.embed(&[QUERY])?);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let batch: Vec<String> = (0..16).map(|i| format!("{QUERY} ({i})")).collect();
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        let t = Instant::now();
        for _ in 0..200 {
            std::hint::black_box(e.embed(&texts)?);
        }
        let per_sec = 200.0 * 16.0 / t.elapsed().as_secs_f64();
        println!(
            "| {model} | {:.2} ms | {:.2} ms | {:.2} ms | {per_sec:.0} |",
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            percentile(&ms, 1.0)
        );
    }
    Ok(())
}
