//! The search stage's CPU work, beside naive baselines:
//! - `kb_index_10k`: building the embedded knowledge base's index of 10,000 Markdown documents
//!   (~250 words each), beside only reading the same files (the I/O floor);
//! - `kb_query_10k`: one query (5 results) on that index, beside a naive scan of the same
//!   documents held in memory (lowercase, count each query word, keep the best 5);
//! - `rank_fit`: ranking 60 passages against the question (BM25), dropping near-copies and
//!   fitting the best into a 3,000-token budget counted with o200k, beside only counting the
//!   passages' tokens.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::kb::KnowledgeBase;
use tollgate::search::context::{fit, Source};
use tollgate::search::rank::{dedupe, rank, Passage};
use tollgate_tokenize::Tokenizer;

const DOCS: usize = 10_000;
const SYLLABLES: [&str; 12] = [
    "ka", "lo", "mi", "ra", "te", "zu", "no", "shi", "va", "pe", "dor", "glin",
];
const ENGLISH: [&str; 16] = [
    "policy",
    "release",
    "garbage",
    "collector",
    "leave",
    "expenses",
    "travel",
    "hotel",
    "rota",
    "incident",
    "deploy",
    "gateway",
    "quota",
    "budget",
    "review",
    "team",
];

fn word(n: usize) -> String {
    if n.is_multiple_of(10) {
        return ENGLISH[(n / 10) % ENGLISH.len()].to_string();
    }
    format!(
        "{}{}{}",
        SYLLABLES[n % 12],
        SYLLABLES[(n / 12) % 12],
        SYLLABLES[(n / 144) % 12]
    )
}

/// The value, or the error printed and the bench stopped.
fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1728) as usize
    }
}

fn corpus(dir: &Path) -> Vec<String> {
    ok(std::fs::create_dir_all(dir));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut texts = Vec::with_capacity(DOCS);
    for i in 0..DOCS {
        let words: Vec<String> = (0..250).map(|_| word(rng.next())).collect();
        let text = format!("# {} {}\n\n{}.\n", words[0], words[1], words.join(" "));
        ok(std::fs::write(dir.join(format!("doc-{i:05}.md")), &text));
        texts.push(text);
    }
    texts
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-kb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn knowledge_base(c: &mut Criterion) {
    let dir = scratch();
    let docs = dir.join("docs");
    let texts = corpus(&docs);
    let bytes: usize = texts.iter().map(String::len).sum();

    let mut g = c.benchmark_group("kb_index_10k");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut n = 0;
    g.bench_function("tollgate_tantivy", |b| {
        b.iter(|| {
            n += 1;
            let kb = ok(KnowledgeBase::open(&docs, &dir.join(format!("index-{n}")), "kb", true));
            black_box(kb.documents)
        })
    });
    g.bench_function("baseline_read_files_only", |b| {
        b.iter(|| {
            let mut total = 0;
            for entry in ok(std::fs::read_dir(&docs)).flatten() {
                total += ok(std::fs::read_to_string(entry.path())).len();
            }
            black_box(total)
        })
    });
    g.finish();

    let kb = ok(KnowledgeBase::open(&docs, &dir.join("index-query"), "kb", true));
    let queries = [
        "garbage collector release",
        "hotel travel expenses policy",
        "kalomi rateshi incident review",
    ];
    let lowered: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
    let mut g = c.benchmark_group("kb_query_10k");
    g.bench_function("tollgate_tantivy", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(ok(kb.search(queries[i % queries.len()], 5)).len())
        })
    });
    g.bench_function("baseline_scan_in_memory", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let terms: Vec<&str> = queries[i % queries.len()].split(' ').collect();
            let mut scored: Vec<(usize, usize)> = lowered
                .iter()
                .enumerate()
                .map(|(d, t)| (terms.iter().map(|w| t.matches(w).count()).sum(), d))
                .collect();
            scored.sort_unstable_by(|a, b| b.cmp(a));
            black_box(scored[..5].to_vec())
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn ranking(c: &mut Criterion) {
    let mut rng = Rng(42);
    let sources: Vec<Source> = (0..20)
        .map(|i| Source {
            title: format!("Result {i}"),
            url: format!("https://r{i}.example/page"),
            engine: "web".into(),
        })
        .collect();
    let passages: Vec<Passage> = (0..60)
        .map(|i| Passage {
            source: i % 20,
            text: (0..110).map(|_| word(rng.next())).collect::<Vec<_>>().join(" ") + ".",
            rank: i / 20,
            score: 0.0,
        })
        .collect();
    let question = "What changed in the garbage collector release, and what is the travel policy?";
    let tok = Tokenizer::o200k();
    let count = |s: &str| tok.count(s);
    let mut g = c.benchmark_group("rank_fit");
    g.bench_function("tollgate_rank_dedupe_fit_60_passages", |b| {
        b.iter(|| {
            let mut ps = passages.clone();
            rank(question, &mut ps);
            dedupe(&mut ps);
            black_box(fit(&ps, &sources, 3000, &count).tokens)
        })
    });
    g.bench_function("baseline_count_tokens_only", |b| {
        b.iter(|| black_box(passages.iter().map(|p| tok.count(&p.text)).sum::<usize>()))
    });
    g.finish();
}

criterion_group!(benches, knowledge_base, ranking);
criterion_main!(benches);
