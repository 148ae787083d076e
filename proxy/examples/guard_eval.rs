//! Precision and recall of the built-in content safety detectors on a labelled case set.
//!
//! `cargo run --release -p tollgate --example guard_eval [-- CASES.jsonl [DENY_LIST.txt] [--wrong]]`
//! (defaults: `docs/eval/guard-cases.jsonl`, `examples/deny-list.txt`). `--wrong` lists the
//! cases a detector got wrong.

use std::path::Path;

use tollgate::guard::deny::DenyList;
use tollgate::guard::eval::{evaluate, parse_cases};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let show_wrong = args.iter().any(|a| a == "--wrong");
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let cases_path = files
        .first()
        .map_or(root.join("docs/eval/guard-cases.jsonl"), |p| p.into());
    let deny_path = files.get(1).map_or(root.join("examples/deny-list.txt"), |p| p.into());
    let cases = parse_cases(&std::fs::read_to_string(&cases_path)?).map_err(anyhow::Error::msg)?;
    let deny = DenyList::new(&DenyList::parse_file(&std::fs::read_to_string(&deny_path)?))?;
    let started = std::time::Instant::now();
    let report = evaluate(&cases, &deny);
    let elapsed = started.elapsed();
    let langs: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.lang.as_str()).collect();
    println!(
        "{} cases ({}) from {}",
        cases.len(),
        langs
            .iter()
            .map(|l| format!("{l}: {}", cases.iter().filter(|c| c.lang == *l).count()))
            .collect::<Vec<_>>()
            .join(", "),
        cases_path.display()
    );
    println!(
        "{:<10} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "detector", "tp", "fp", "fn", "precision", "recall"
    );
    for (kind, c) in &report.by_kind {
        println!(
            "{kind:<10} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
        for ((k, lang), c) in report.by_lang.iter().filter(|((k, _), _)| k == kind) {
            if c.tp + c.fp + c.fn_ > 0 {
                println!(
                    "  {lang:<8} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
                    c.tp,
                    c.fp,
                    c.fn_,
                    c.precision(),
                    c.recall()
                );
                let _ = k;
            }
        }
    }
    println!(
        "{} cases wrong; {:.1} µs per case",
        report.wrong.len(),
        elapsed.as_secs_f64() * 1e6 / cases.len().max(1) as f64
    );
    if show_wrong {
        for (case, found) in &report.wrong {
            println!("  expected {:?}, found {found:?}: {:?}", case.expect, case.text);
        }
    }
    Ok(())
}
