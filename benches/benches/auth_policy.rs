//! Cost of the consumer checks on one request: read the key from the headers, hash it, find its
//! consumer (run-time registry, then config), check endpoint and model allow-lists, and turn the
//! consumer's parameter rules into body splices. Beside it, the naive way: scan every key, and
//! apply the rules on a `serde_json::Value` tree.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::api_keys::{KeyBackend, KeyRegistry};
use tollgate::config::{load_str, Snapshot};
use tollgate::key_hash::{format_hash, hash_key};
use tollgate::pipeline::body::RequestView;
use tollgate::pipeline::endpoint::Endpoint;
use tollgate::pipeline::{auth, body, params};
use tollgate_benches::chat_body;

const CONSUMERS: usize = 200;
const KEYS_PER_CONSUMER: usize = 5;

fn key(c: usize, k: usize) -> String {
    format!("tg-bench-{c:04}-{k:02}-xxxxxxxxxxxxxxxxxxxxxxxxxxxx")
}

#[expect(clippy::expect_used, reason = "a bench with a broken fixture must stop")]
fn setup() -> (Snapshot, KeyRegistry) {
    let mut text =
        String::from("[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n");
    text.push_str("[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"p\" }]\n\n");
    for c in 0..CONSUMERS {
        let keys: Vec<String> = (0..KEYS_PER_CONSUMER)
            .map(|k| {
                format!(
                    "{{ id = \"c{c}-k{k}\", hash = \"{}\" }}",
                    format_hash(&hash_key(key(c, k).as_bytes()))
                )
            })
            .collect();
        text.push_str(&format!(
            "[[consumers]]\nname = \"c{c}\"\nkeys = [{}]\nmodels = [\"gpt-4o*\", \"qwen-*\"]\nendpoints = [\"chat\", \"embeddings\"]\n\
             [consumers.params]\nmode = \"clamp\"\ndefaults = {{ top_p = 0.9 }}\noverrides = {{ user = \"c{c}\" }}\n\
             bounds = {{ temperature = [0, 1], max_tokens = [1, 4096] }}\nforbidden = [\"logit_bias\"]\n\n",
            keys.join(", ")
        ));
    }
    let snapshot = load_str(&text, "bench", None, 1).expect("bench config is valid");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let registry = rt
        .block_on(KeyRegistry::open(
            KeyBackend::File(dir.join("keys.json")),
            Arc::new(tollgate_limits::SystemClock),
            None,
        ))
        .expect("registry");
    (snapshot, registry)
}

/// The body arrives parsed (the gateway parses it once, before any consumer check), so its
/// top-level members are known.
fn tollgate_path(
    snapshot: &Snapshot,
    registry: &KeyRegistry,
    headers: &http::HeaderMap,
    raw: &[u8],
    view: &RequestView,
) -> usize {
    let Ok(Some(id)) = auth::authenticate(snapshot.consumers.as_ref(), registry, headers) else {
        return 0;
    };
    // The gateway finds the route before the allow-list check, which is then a table read.
    let Some(route) = snapshot.route("gpt-4o-mini") else {
        return 0;
    };
    if auth::authorize_endpoint(&id, Endpoint::ChatCompletions).is_err() || auth::authorize_route(&id, route).is_err() {
        return 0;
    }
    params::apply(raw, &view.members, &id.consumer.params.for_model("gpt-4o-mini"))
        .map(|e| e.len())
        .unwrap_or(0)
}

fn naive_path(snapshot: &Snapshot, headers: &http::HeaderMap, raw: &[u8]) -> usize {
    let Some(presented) = auth::presented_key(headers) else {
        return 0;
    };
    let hash = hash_key(presented);
    let Some(consumers) = &snapshot.consumers else { return 0 };
    let Some(entry) = consumers
        .by_hash
        .values()
        .find(|e| tollgate::secret::constant_time_eq(&e.hash, &hash))
    else {
        return 0;
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return 0;
    };
    let Some(obj) = v.as_object_mut() else { return 0 };
    if obj.contains_key("logit_bias") {
        return 0;
    }
    obj.entry("top_p").or_insert(serde_json::json!(0.9));
    obj.insert("user".into(), serde_json::Value::String(entry.consumer.name.clone()));
    if let Some(t) = obj.get("temperature").and_then(|t| t.as_f64()) {
        obj.insert("temperature".into(), serde_json::json!(t.clamp(0.0, 1.0)));
    }
    obj.len()
}

#[expect(clippy::expect_used, reason = "a bench with a broken fixture must stop")]
fn bench(c: &mut Criterion) {
    let (snapshot, registry) = setup();
    let mut headers = http::HeaderMap::new();
    let auth_value = format!("Bearer {}", key(CONSUMERS - 1, KEYS_PER_CONSUMER - 1));
    headers.insert(
        http::header::AUTHORIZATION,
        auth_value.parse().unwrap_or(http::HeaderValue::from_static("x")),
    );
    let mut raw = chat_body(4, 500);
    // a temperature to clamp
    raw.splice(1..1, br#""temperature":1.7,"#.iter().copied());
    let view = body::parse(&raw, Endpoint::ChatCompletions).expect("a valid body");
    assert!(tollgate_path(&snapshot, &registry, &headers, &raw, &view) > 0);
    assert!(naive_path(&snapshot, &headers, &raw) > 0);

    let mut g = c.benchmark_group("auth_policy_per_request");
    g.bench_function(format!("tollgate/{}_keys", CONSUMERS * KEYS_PER_CONSUMER), |b| {
        b.iter(|| black_box(tollgate_path(&snapshot, &registry, &headers, &raw, &view)))
    });
    g.bench_function(
        format!("naive_scan_and_value_tree/{}_keys", CONSUMERS * KEYS_PER_CONSUMER),
        |b| b.iter(|| black_box(naive_path(&snapshot, &headers, &raw))),
    );
    g.bench_function("sha256_of_the_key_alone", |b| {
        b.iter(|| black_box(hash_key(auth_value.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
