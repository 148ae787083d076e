//! Content safety's cost: the input guard over a request body with every detector on (deny list
//! from `examples/deny-list.txt`, sensitive data of all kinds, injection rules, one masking
//! rule), on realistic prompts of 1 KB and 32 KB in English and Chinese, in MB/s; beside it a
//! naive scanner (lowercase, `contains` per phrase, one bare regex per kind, no validation and
//! no normalisation). And the output guard over the same text streamed as 4-character deltas.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::api::Endpoint;
use tollgate::pipeline::body;
use tollgate::pipeline::safety::{inspect_input, output::OutputGuard};

const EN: &str = "Hi team, following up on yesterday's call about the Q3 migration. We moved the billing \
service to the new cluster on Tuesday and latency dropped from 180 ms to 95 ms at the 99th \
percentile. Two things are still open: the retry policy for the payment provider, which sometimes \
answers 503 during their maintenance window, and the dashboard for per-tenant usage. Could you \
draft a short plan for both, with owners and dates? Please keep it under two hundred words and \
write it as a bulleted list. If anything is unclear, ask me at ops-lead@example.com. ";

const ZH: &str = "大家好，跟进一下昨天关于第三季度迁移的会议。我们周二把计费服务迁到了新集群，\
第九十九百分位延迟从一百八十毫秒降到了九十五毫秒。还有两件事没有完成：支付服务商的重试策略，\
他们维护窗口期间有时返回五零三；以及按租户统计用量的看板。请为这两件事写一个简短的计划，\
包括负责人和日期，控制在两百字以内，用列表的形式。有不清楚的地方请联系我。";

fn config() -> tollgate::config::Snapshot {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let text = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "m"
targets = [{ provider = "p" }]

[[guardrails]]
name = "pii"
detect = "pii"
action = "mask"
on = ["input", "output"]

[[guardrails]]
name = "deny"
detect = "deny_list"
file = "deny-list.txt"
on = ["input", "output"]
action = "block"

[[guardrails]]
name = "injection"
detect = "injection"
action = "block"
"#;
    match tollgate::config::load_str(text, "bench.toml", Some(&dir), 1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

/// `base` repeated to about `size` bytes.
fn text_of(base: &str, size: usize) -> String {
    let mut s = String::with_capacity(size + base.len());
    while s.len() < size {
        s.push_str(base);
    }
    s
}

fn chat_body(prompt: &str) -> Vec<u8> {
    serde_json::json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for the operations team."},
            {"role": "user", "content": prompt},
        ],
    })
    .to_string()
    .into_bytes()
}

/// The naive scanner: what a plugin without normalisation or validation does.
struct Naive {
    phrases: Vec<String>,
    patterns: Vec<regex::Regex>,
}

impl Naive {
    fn new() -> Self {
        let list =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deny-list.txt"))
                .unwrap_or_default();
        let patterns = [
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
            r"\+?[0-9][0-9 -]{7,}[0-9]",
            r"[0-9]{13,19}",
            r"[0-9]{17}[0-9Xx]",
            r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}",
            r"sk-[A-Za-z0-9_-]{20,}|AKIA[A-Z0-9]{16}",
            r"(?i)ignore (all )?previous instructions",
        ];
        Naive {
            phrases: list
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(str::to_lowercase)
                .collect(),
            patterns: patterns.iter().filter_map(|p| regex::Regex::new(p).ok()).collect(),
        }
    }

    fn hits(&self, text: &str) -> usize {
        let lower = text.to_lowercase();
        self.phrases.iter().filter(|p| lower.contains(p.as_str())).count()
            + self.patterns.iter().map(|r| r.find_iter(text).count()).sum::<usize>()
    }
}

fn input(c: &mut Criterion) {
    let snapshot = config();
    let Some(route) = snapshot.route("m") else { return };
    let Some(guards) = snapshot.guards_of(route) else {
        return;
    };
    let naive = Naive::new();
    let mut group = c.benchmark_group("guard_input");
    for (lang, base) in [("en", EN), ("zh", ZH)] {
        for size in [1024usize, 32 * 1024] {
            let prompt = text_of(base, size);
            let body = chat_body(&prompt);
            let Ok(view) = body::parse(&body, Endpoint::ChatCompletions) else {
                return;
            };
            let name = format!("{lang}-{}k", size / 1024);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(BenchmarkId::new("tollgate", &name), |b| {
                b.iter(|| {
                    let mut events = Vec::new();
                    black_box(inspect_input(guards, None, black_box(&body), &view, &mut events).is_ok())
                })
            });
            group.bench_function(BenchmarkId::new("naive", &name), |b| {
                b.iter(|| black_box(naive.hits(black_box(&prompt))))
            });
        }
    }
    group.finish();
}

/// `text` as chat completion chunks of 4 characters each.
fn stream_events(text: &str) -> Vec<Bytes> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(4)
        .map(|c| {
            let piece: String = c.iter().collect();
            let data = serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}],
            });
            Bytes::from(format!("data: {data}\n\n"))
        })
        .collect()
}

fn output(c: &mut Criterion) {
    let snapshot = config();
    let Some(route) = snapshot.route("m") else { return };
    let Some(guards) = snapshot.guards_of(route) else {
        return;
    };
    let mut group = c.benchmark_group("guard_output_stream");
    for (lang, base) in [("en", EN), ("zh", ZH)] {
        let text = text_of(base, 1024);
        let events = stream_events(&text);
        let bytes: usize = events.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(
            BenchmarkId::new("tollgate", format!("{lang}-1k-{}-events", events.len())),
            |b| {
                b.iter(|| {
                    let Some(mut g) = OutputGuard::new(guards, None) else {
                        return 0;
                    };
                    let mut out = Vec::with_capacity(events.len());
                    for e in &events {
                        g.on_event(e.clone(), &mut out);
                    }
                    g.finish(&mut out);
                    black_box(out.len())
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("pass-through", format!("{lang}-1k-{bytes}-bytes")),
            |b| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(events.len());
                    for e in &events {
                        out.push(e.clone());
                    }
                    black_box(out.len())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, input, output);
criterion_main!(benches);
