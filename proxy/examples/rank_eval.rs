//! How search ranks passages, by BM25 alone and blended with the semantic embedder, on a
//! labelled set (see `tollgate::search::eval`).
//!
//! `cargo run --release -p tollgate --example rank_eval [-- CASES.jsonl] [--embedder NAME|DIR]
//! [--models-dir DIR] [--top N] [--wrong]` (defaults: `docs/eval/search-rank.jsonl`, the
//! embedder `use-multilingual-v3` under `.models/`, 16 passages read by the embedder). `--wrong`
//! lists the cases whose first passage is not relevant, at the default weight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tollgate::search::eval::{blended, lexical, parse_cases, Case, Score};
use tollgate_semantic::{cosine, load_runtime, Embedder, ModelFiles};

/// The weights compared; the first is the gateway's default.
const WEIGHTS: [f32; 6] = [0.7, 0.3, 0.5, 0.6, 0.8, 1.0];

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = std::env::args().skip(1);
    let (mut cases_path, mut embedder, mut models, mut top, mut wrong) = (
        root.join("docs/eval/search-rank.jsonl"),
        "use-multilingual-v3".to_string(),
        root.join(".models"),
        16usize,
        false,
    );
    while let Some(a) = args.next() {
        match a.as_str() {
            "--embedder" => embedder = args.next().unwrap_or_default(),
            "--models-dir" => models = PathBuf::from(args.next().unwrap_or_default()),
            "--top" => top = args.next().and_then(|n| n.parse().ok()).unwrap_or(top),
            "--wrong" => wrong = true,
            path => cases_path = PathBuf::from(path),
        }
    }
    let cases = parse_cases(&std::fs::read_to_string(&cases_path)?).map_err(anyhow::Error::msg)?;
    load_runtime(&models.join("onnxruntime/libonnxruntime.so"))?;
    let dir = if Path::new(&embedder).is_dir() {
        PathBuf::from(&embedder)
    } else {
        models.join("embedders").join(&embedder)
    };
    let mut model = Embedder::open(&ModelFiles::in_dir(&dir), 1)?;
    // Each case's similarities, question to passage, embedded once.
    let started = std::time::Instant::now();
    let mut texts = 0usize;
    let mut sims: Vec<Vec<f32>> = Vec::with_capacity(cases.len());
    for case in &cases {
        let mut batch = vec![case.question.as_str()];
        batch.extend(case.passages.iter().map(|p| p.text.as_str()));
        texts += batch.len();
        let vectors = model.embed(&batch)?;
        let (q, ps) = vectors.split_first().ok_or_else(|| anyhow::anyhow!("no vectors"))?;
        sims.push(ps.iter().map(|p| cosine(q, p)).collect());
    }
    let per_text = started.elapsed().as_secs_f64() * 1e3 / texts.max(1) as f64;
    println!(
        "{} cases from {}; embedder {} ({per_text:.2} ms per text, batches of one case)",
        cases.len(),
        cases_path.display(),
        dir.display()
    );
    let groups = |case: &Case| ["all".to_string(), case.lang.clone(), case.note.clone()];
    let mut table: BTreeMap<(String, String), Score> = BTreeMap::new();
    for (case, sims) in cases.iter().zip(&sims) {
        let mut row = vec![("bm25".to_string(), lexical(case))];
        for w in WEIGHTS {
            let o = blended(case, w, top, &mut |i| sims[i]);
            row.push((format!("blend {w:.1}"), o));
        }
        for g in groups(case).into_iter().filter(|g| !g.is_empty()) {
            for (method, o) in &row {
                table.entry((g.clone(), method.clone())).or_default().add(o);
            }
        }
    }
    println!(
        "{:<28} {:<10} {:>5} {:>6} {:>6} {:>7} {:>6}",
        "cases", "ranking", "n", "hit@1", "MRR", "recall", "noise"
    );
    let order = |(g, _): &(String, String)| (g != "all", g.clone());
    let mut keys: Vec<&(String, String)> = table.keys().collect();
    keys.sort_by_key(|k| (order(k), k.1.starts_with("blend"), k.1.clone()));
    for key in keys {
        let s = &table[key];
        println!(
            "{:<28} {:<10} {:>5} {:>6.3} {:>6.3} {:>7.3} {:>6.2}",
            key.0,
            key.1,
            s.cases,
            s.hit_at_1(),
            s.mrr(),
            s.recall(),
            s.noise as f64 / s.cases.max(1) as f64
        );
    }
    if wrong {
        for (case, sims) in cases.iter().zip(&sims) {
            let o = blended(case, WEIGHTS[0], top, &mut |i| sims[i]);
            if o.first_relevant != Some(1) {
                let sims: Vec<String> = sims.iter().map(|s| format!("{s:.2}")).collect();
                println!(
                    "  first relevant at {:?} ({}): {} {sims:?}",
                    o.first_relevant, case.note, case.question
                );
            }
        }
    }
    Ok(())
}
