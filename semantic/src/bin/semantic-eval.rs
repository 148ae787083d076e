//! `semantic-eval`: precision and recall of the cache's hit decision on the labelled pairs, with
//! a real embedding model, beside the naive threshold-only decision.
//!
//! `cargo run --release -p tollgate-semantic --bin semantic-eval -- [--model NAME|DIR]
//!  [--threshold X] [--strict Y] [--pairs FILE.tsv]... [--show]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tollgate_semantic::eval::{self, Scored};
use tollgate_semantic::{load_runtime, Embedder, HitPolicy, ModelFiles, DEFAULT_POLICY};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("semantic-eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut model = "use-multilingual-v3".to_string();
    let mut policy = DEFAULT_POLICY;
    let mut extra: Vec<PathBuf> = Vec::new();
    let mut show = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = value()?,
            "--threshold" => policy.threshold = value()?.parse().map_err(|e| format!("--threshold: {e}"))?,
            "--strict" => policy.strict = value()?.parse().map_err(|e| format!("--strict: {e}"))?,
            "--pairs" => extra.push(PathBuf::from(value()?)),
            "--show" => show = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models");
    let dir = if Path::new(&model).is_dir() {
        PathBuf::from(&model)
    } else {
        models.join("embedders").join(&model)
    };
    load_runtime(&models.join("onnxruntime/libonnxruntime.so")).map_err(|e| e.to_string())?;
    let mut embedder = Embedder::open(&ModelFiles::in_dir(&dir), 1).map_err(|e| e.to_string())?;
    let mut pairs = eval::shipped();
    for path in &extra {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lang = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        pairs.extend(eval::parse(&lang, &text));
    }
    let scored = eval::score(&mut embedder, &pairs).map_err(|e| e.to_string())?;
    report(&model, &policy, &scored, show);
    Ok(())
}

fn report(model: &str, policy: &HitPolicy, scored: &[Scored], show: bool) {
    println!(
        "model {model}: {} pairs; guarded at threshold {} / strict {}",
        scored.len(),
        policy.threshold,
        policy.strict
    );
    println!(
        "{:<10} {:>5} {:>10} {:>8}   {:>10} {:>8}",
        "set", "pairs", "precision", "recall", "naive prec", "recall"
    );
    let mut langs: Vec<&str> = scored.iter().map(|s| s.pair.lang.as_str()).collect();
    langs.sort_unstable();
    langs.dedup();
    let mut sets: Vec<(String, Vec<Scored>)> = vec![("all".to_string(), scored.to_vec())];
    for lang in langs {
        sets.push((
            lang.to_string(),
            scored.iter().filter(|s| s.pair.lang == lang).cloned().collect(),
        ));
    }
    for (name, set) in &sets {
        let g = eval::tally(set, eval::guarded(policy));
        let n = eval::tally(set, eval::naive(policy.threshold));
        println!(
            "{name:<10} {:>5} {:>10.3} {:>8.3}   {:>10.3} {:>8.3}",
            set.len(),
            g.precision(),
            g.recall(),
            n.precision(),
            n.recall()
        );
    }
    let (t, best) = eval::best_naive(scored, 0.5);
    println!(
        "naive threshold-only at its best for recall >= 0.5: threshold {t:.3}, precision {:.3}, recall {:.3}",
        best.precision(),
        best.recall()
    );
    let mut categories: Vec<(bool, &str)> = scored
        .iter()
        .map(|s| (s.pair.should_hit, s.pair.category.as_str()))
        .collect();
    categories.sort_unstable();
    categories.dedup();
    println!("by category (guarded): hits given / pairs");
    for (should, cat) in categories {
        let set: Vec<&Scored> = scored
            .iter()
            .filter(|s| s.pair.should_hit == should && s.pair.category == cat)
            .collect();
        let hits = set.iter().filter(|s| policy.allows(s.similarity, s.verdict)).count();
        println!(
            "  {:<5} {cat:<11} {hits:>3} / {}",
            if should { "hit" } else { "miss" },
            set.len()
        );
    }
    if show {
        for verdict in ["Same", "ContentChanged"] {
            for should in [true, false] {
                let mut sims: Vec<f32> = scored
                    .iter()
                    .filter(|s| s.pair.should_hit == should && format!("{:?}", s.verdict) == verdict)
                    .map(|s| s.similarity)
                    .collect();
                sims.sort_by(|a, b| b.total_cmp(a));
                let text: Vec<String> = sims.iter().map(|s| format!("{s:.2}")).collect();
                println!(
                    "{verdict} {}: {}",
                    if should { "should hit" } else { "must miss" },
                    text.join(" ")
                );
            }
        }
        for s in scored {
            let hit = policy.allows(s.similarity, s.verdict);
            if hit != s.pair.should_hit {
                println!(
                    "{} {:.3} {:?} [{}] {} | {}",
                    if hit { "FALSE HIT " } else { "missed    " },
                    s.similarity,
                    s.verdict,
                    s.pair.category,
                    s.pair.cached,
                    s.pair.query
                );
            }
        }
    }
}
