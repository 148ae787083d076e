//! Token counting speed, single thread, MB/s: Tollgate's own counter (with and without its
//! per-thread piece cache) beside the `tokenizers` 1.0 pipeline on the same ranks, bpe-openai
//! (GitHub's linear-time BPE) and tiktoken-rs (the usual Rust reference), for o200k and cl100k, on
//! English, Chinese and code from the tokenize test corpus repeated to about 10 MB, and on the
//! worst case for BPE (1 MB of one repeated character). Counts are checked equal before timing. Hugging Face files (Qwen3) are timed when `scripts/setup.sh` fetched them,
//! beside the stable `tokenizers` 0.23 release on the same file.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate_tokenize::Tokenizer;

fn corpus(name: &str, size: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tokenize/tests/corpus")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| "hello world ".into());
    let mut out = String::with_capacity(size + text.len());
    while out.len() < size {
        out.push_str(&text);
    }
    out
}

#[expect(clippy::expect_used, reason = "a bench with a broken fixture must stop")]
fn bench(c: &mut Criterion) {
    let inputs = [
        ("english", corpus("english.txt", 10 << 20)),
        ("chinese", corpus("chinese.txt", 10 << 20)),
        ("code", corpus("code.txt", 10 << 20)),
        ("one_char_1MB", "a".repeat(1 << 20)),
    ];
    for (group, ours, pipeline, bpe_openai, reference) in [
        (
            "count_o200k",
            Tokenizer::o200k(),
            Tokenizer::o200k_pipeline(),
            Tokenizer::o200k_bpe_openai(),
            tiktoken_rs::o200k_base().expect("tiktoken o200k"),
        ),
        (
            "count_cl100k",
            Tokenizer::cl100k(),
            Tokenizer::cl100k_pipeline(),
            Tokenizer::cl100k_bpe_openai(),
            tiktoken_rs::cl100k_base().expect("tiktoken cl100k"),
        ),
    ] {
        assert!(
            matches!(ours, Tokenizer::Native { .. }),
            "Tollgate's own counter did not build"
        );
        assert!(
            matches!(pipeline, Tokenizer::Pipeline { .. }),
            "the tokenizers pipeline did not build"
        );
        let mut g = c.benchmark_group(group);
        g.sample_size(10);
        for (name, text) in &inputs {
            // tiktoken is quadratic on long runs of one character: time it on a slice of that input.
            let reference_text: &str = if name.starts_with("one_char") {
                &text[..1 << 14]
            } else {
                text
            };
            assert_eq!(
                ours.count(reference_text),
                reference.encode_ordinary(reference_text).len()
            );
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new("tollgate", name), text, |b, t| {
                b.iter(|| black_box(ours.count(t)))
            });
            if let Tokenizer::Native { inner, .. } = &ours {
                assert_eq!(inner.count_uncached(text), ours.count(text));
                g.bench_with_input(BenchmarkId::new("tollgate-uncached", name), text, |b, t| {
                    b.iter(|| black_box(inner.count_uncached(t)))
                });
            }
            assert_eq!(ours.count(text), pipeline.count(text));
            g.bench_with_input(BenchmarkId::new("tokenizers-1.0-pipeline", name), text, |b, t| {
                b.iter(|| black_box(pipeline.count(t)))
            });
            assert_eq!(ours.count(text), bpe_openai.count(text));
            g.bench_with_input(BenchmarkId::new("bpe-openai", name), text, |b, t| {
                b.iter(|| black_box(bpe_openai.count(t)))
            });
            g.throughput(Throughput::Bytes(reference_text.len() as u64));
            g.bench_with_input(BenchmarkId::new("tiktoken-rs", name), reference_text, |b, t| {
                b.iter(|| black_box(reference.encode_ordinary(t).len()))
            });
        }
        g.finish();
    }
    // One request's prompt: the per-request cost the gateway pays before forwarding.
    let ours = Tokenizer::o200k();
    let pipeline = Tokenizer::o200k_pipeline();
    let bpe_openai = Tokenizer::o200k_bpe_openai();
    let english = &inputs[0].1;
    let mut cut = 2048;
    while !english.is_char_boundary(cut) {
        cut -= 1;
    }
    let prompts = [
        ("short_26B", "Say hello in three words."),
        ("english_2KiB", &english[..cut]),
    ];
    let mut g = c.benchmark_group("count_prompt_o200k");
    for (name, prompt) in prompts {
        assert_eq!(ours.count(prompt), bpe_openai.count(prompt));
        assert_eq!(ours.count(prompt), pipeline.count(prompt));
        g.throughput(Throughput::Bytes(prompt.len() as u64));
        for (who, tokenizer) in [
            ("tollgate", &ours),
            ("tokenizers-1.0-pipeline", &pipeline),
            ("bpe-openai", &bpe_openai),
        ] {
            g.bench_with_input(BenchmarkId::new(who, name), prompt, |b, t| {
                b.iter(|| black_box(tokenizer.count(t)))
            });
        }
    }
    g.finish();

    let gpt4o_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models/tokenizers/gpt4o.json");
    if let Ok(file_based) = Tokenizer::from_tokenizer_json("gpt4o", &gpt4o_file) {
        let mut g = c.benchmark_group("count_o200k_tokenizer_json");
        g.sample_size(10);
        for (name, text) in &inputs {
            assert_eq!(file_based.count(text), ours.count(text));
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new("tollgate", name), text, |b, t| {
                b.iter(|| black_box(file_based.count(t)))
            });
        }
        g.finish();
    }

    let qwen_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models/tokenizers/qwen3.json");
    if let Ok(qwen) = Tokenizer::from_tokenizer_json("qwen3", &qwen_file) {
        let mut g = c.benchmark_group("count_qwen3");
        g.sample_size(10);
        // The stable tokenizers release, on a 256 KiB slice of each input (it is far slower).
        let stable = tokenizers_stable::Tokenizer::from_file(&qwen_file).ok();
        for (name, text) in &inputs[..3] {
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new("tollgate", name), text, |b, t| {
                b.iter(|| black_box(qwen.count(t)))
            });
            if let Some(stable) = &stable {
                let mut cut = 256 << 10;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let slice = &text[..cut];
                let reference = stable
                    .encode_fast(slice, false)
                    .expect("stable tokenizers encodes")
                    .len();
                assert_eq!(qwen.count(slice), reference, "counts equal the stable release's");
                g.throughput(Throughput::Bytes(slice.len() as u64));
                g.bench_with_input(BenchmarkId::new("tokenizers-0.23", name), slice, |b, t| {
                    b.iter(|| black_box(stable.encode_fast(t, false).map(|e| e.len()).unwrap_or(0)))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
