//! Cost of routing one request: parse the body, look up the route, order the targets and build
//! the upstream body — beside the common approach (serde_json value tree, edit, re-serialise).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::api::Endpoint;
use tollgate::config::{load_str, Snapshot};
use tollgate::pipeline::{attempts, body};
use tollgate_benches::chat_body;

#[expect(clippy::expect_used, reason = "a bench with a broken fixture must stop")]
fn snapshot() -> Snapshot {
    let mut text = String::new();
    for p in 0..4 {
        text.push_str(&format!(
            "[[providers]]\nname = \"p{p}\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n\n",
            9000 + p
        ));
    }
    for m in 0..50 {
        let name = if m == 0 {
            "gpt-4o-mini".to_string()
        } else {
            format!("model-{m}")
        };
        text.push_str(&format!(
            "[[models]]\nname = \"{name}\"\ntargets = [{{ provider = \"p{}\", model = \"real-{m}\", weight = 3 }}, {{ provider = \"p{}\", weight = 1 }}]\n\n",
            m % 4,
            (m + 1) % 4
        ));
    }
    load_str(&text, "bench", None, 1).expect("bench config is valid")
}

fn tollgate_route(snapshot: &Snapshot, raw: &[u8], seed: u64) -> usize {
    let Ok(view) = body::parse(raw, Endpoint::ChatCompletions) else {
        return 0;
    };
    let Some(r) = snapshot.route(&view.model) else { return 0 };
    let order = attempts::attempt_order(r, seed);
    let target = &r.targets[order[0]];
    body::rewrite(raw, &view, &target.model_json, body::needs_forced_usage(&view), &[]).len()
}

fn serde_route(snapshot: &Snapshot, raw: &[u8]) -> usize {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return 0;
    };
    let Some(model) = v.get("model").and_then(|m| m.as_str()) else {
        return 0;
    };
    let Some(r) = snapshot.route(model) else { return 0 };
    v["model"] = serde_json::Value::String(r.targets[0].model.clone());
    v["stream_options"] = serde_json::json!({"include_usage": true});
    serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let snapshot = snapshot();
    let mut g = c.benchmark_group("route_request");
    for (name, raw) in [
        ("2KiB", chat_body(4, 500)),
        ("100KiB", chat_body(40, 2500)),
        ("1MiB", chat_body(100, 10_000)),
    ] {
        assert!(tollgate_route(&snapshot, &raw, 1) > raw.len());
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(BenchmarkId::new("tollgate", name), &raw, |b, raw| {
            let mut seed = 0u64;
            b.iter(|| {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                black_box(tollgate_route(&snapshot, raw, seed))
            })
        });
        g.bench_with_input(BenchmarkId::new("serde_json_value", name), &raw, |b, raw| {
            b.iter(|| black_box(serde_route(&snapshot, raw)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
