//! Model auto-switch through the gateway, over HTTP, against mocks with error injection:
//! retried statuses, fallback chains across models (JSON and streams), `Retry-After`, time to
//! first byte and idle timeouts, context-length fallbacks, ejection and re-admission, the retry
//! budget, and the fast 503 when the whole chain is out.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::Duration;

use common::*;
use tollgate_loadtest::mock::{MockConfig, MockHandle};

async fn mock(name: &str, f: impl FnOnce(&mut MockConfig)) -> MockHandle {
    let mut c = MockConfig {
        name: name.into(),
        ..MockConfig::default()
    };
    f(&mut c);
    start_mock_with(c).await
}

fn failing(status: u16) -> impl FnOnce(&mut MockConfig) {
    move |c| {
        c.error_status = Some(status);
        c.error_rate = 1.0;
    }
}

fn ask(model: &str, stream: bool) -> String {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

fn providers(mocks: &[(&str, &MockHandle)]) -> String {
    mocks.iter().map(|(n, m)| provider(n, &m.base_url())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_whose_first_models_fail_answers_from_the_last_json_and_stream() {
    let a = mock("a", failing(500)).await;
    let b = mock("b", failing(503)).await;
    let c = mock("c", |_| {}).await;
    let config = format!(
        r#"{}
[[models]]
name = "assistant"
targets = [{{ provider = "a" }}]
fallbacks = ["assistant-backup", "assistant-last"]

[[models]]
name = "assistant-backup"
targets = [{{ provider = "b" }}]

[[models]]
name = "assistant-last"
targets = [{{ provider = "c", model = "last-real" }}]
"#,
        providers(&[("a", &a), ("b", &b), ("c", &c)])
    );
    let gw = Gateway::start(&config).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "req-chain")],
            &ask("assistant", false),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-model"), Some("assistant-last"));
    assert_eq!(r.header("x-tollgate-attempts"), Some("3"));
    assert_eq!(r.header("x-mock-upstream"), Some("c"));
    assert_eq!(
        c.requests().last().unwrap().json()["model"],
        "last-real",
        "the body is rewritten per target"
    );
    let line = gw.access_line("req-chain").await;
    assert_eq!(line["fallback_from"], "assistant");
    assert_eq!(line["model"], "assistant-last");
    let failed: Vec<(String, u64)> = line["failed_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["provider"].as_str().unwrap().to_string(),
                f["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(failed, [("a".to_string(), 500), ("b".to_string(), 503)]);

    let r = gw.post("/v1/chat/completions", &[], &ask("assistant", true)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(r.header("x-tollgate-model"), Some("assistant-last"));
    let counted = eventually(Duration::from_secs(5), || async {
        metric(
            &gw,
            "tollgate_fallbacks_total{from=\"assistant\",to=\"assistant-last\"}",
        )
        .await
            == Some(2.0)
    })
    .await;
    assert!(counted, "each fallback is counted per model pair");
    assert!(!gw.log().contains(PROVIDER_KEY), "no provider key in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_is_retried_on_the_same_target_after_a_backoff() {
    let mut mocks = Vec::new();
    for status in [500u16, 502, 503, 429] {
        mocks.push((
            status,
            mock("flaky", move |c| {
                c.error_status = Some(status);
                c.fail_first = 1;
            })
            .await,
        ));
    }
    let mut config = String::new();
    for (status, m) in &mocks {
        config.push_str(&provider(&format!("p{status}"), &m.base_url()));
        config.push_str(&format!(
            "\n[[models]]\nname = \"m{status}\"\ntargets = [{{ provider = \"p{status}\" }}]\nretry = {{ attempts = 2, backoff_ms = 10 }}\n"
        ));
    }
    let gw = Gateway::start(&config).await;
    for (status, m) in &mocks {
        let r = gw.chat(&ask(&format!("m{status}"), false)).await;
        assert_eq!(r.status, 200, "{status}: {}", r.text());
        assert_eq!(r.header("x-tollgate-attempts"), Some("2"), "{status}");
        assert_eq!(m.served(), 2, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_keeps_a_target_out_and_timeouts_fall_back() {
    let limited = mock("limited", |c| {
        c.error_status = Some(429);
        c.error_rate = 1.0;
        c.retry_after = Some(30);
    })
    .await;
    let stalled = mock("stalled", |c| c.stall = Duration::from_secs(3)).await;
    let fine = mock("fine", |_| {}).await;
    let config = format!(
        r#"{}
[[models]]
name = "m"
targets = [{{ provider = "limited" }}]
fallbacks = ["spare"]

[[models]]
name = "slow"
targets = [{{ provider = "stalled" }}]
fallbacks = ["spare"]
timeouts = {{ first_byte_ms = 300 }}

[[models]]
name = "spare"
targets = [{{ provider = "fine" }}]
"#,
        providers(&[("limited", &limited), ("stalled", &stalled), ("fine", &fine)])
    );
    let gw = Gateway::start(&config).await;
    let r = gw.chat(&ask("m", false)).await;
    assert_eq!((r.status, r.header("x-tollgate-model")), (200, Some("spare")));
    assert_eq!(limited.served(), 1);
    // The provider said "retry after 30 s": it is not asked again meanwhile.
    for _ in 0..3 {
        let r = gw.chat(&ask("m", true)).await;
        assert_eq!((r.status, r.header("x-tollgate-attempts")), (200, Some("1")));
    }
    assert_eq!(limited.served(), 1);

    let started = std::time::Instant::now();
    let r = gw.chat(&ask("slow", false)).await;
    assert_eq!(
        (r.status, r.header("x-tollgate-model")),
        (200, Some("spare")),
        "{}",
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fell back at the first-byte timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_or_breaks_after_its_first_bytes_ends_with_an_error_event_and_is_not_retried() {
    let stalls = mock("stalls", |c| {
        c.chunk_delay = Duration::from_millis(1500);
    })
    .await;
    let breaks = mock("breaks", |c| c.cut_after = Some(2)).await;
    let spare = mock("spare", |_| {}).await;
    let config = format!(
        r#"{}
[[models]]
name = "stalling"
targets = [{{ provider = "stalls" }}]
fallbacks = ["spare"]
timeouts = {{ idle_ms = 300 }}

[[models]]
name = "breaking"
targets = [{{ provider = "breaks" }}]
fallbacks = ["spare"]

[[models]]
name = "spare"
targets = [{{ provider = "spare" }}]
"#,
        providers(&[("stalls", &stalls), ("breaks", &breaks), ("spare", &spare)])
    );
    let gw = Gateway::start(&config).await;
    let base = format!("http://{}/v1", gw.addr);
    let stalled: serde_json::Value = serde_json::from_str(&openai_sdk(&["stream", &base, "stalling"])).unwrap();
    assert_eq!(stalled["error"], "APIError", "{stalled}");
    assert_eq!(stalled["code"], "upstream_timeout", "{stalled}");
    let broken: serde_json::Value = serde_json::from_str(&openai_sdk(&["stream", &base, "breaking"])).unwrap();
    assert!(
        broken["error"].is_string() && broken.get("finish").is_none(),
        "{broken}"
    );
    assert_eq!(broken["code"], "upstream_cut", "{broken}");
    assert_eq!(spare.served(), 0, "nothing is retried once bytes reached the client");
    let lines = gw.access_lines();
    assert!(
        lines.iter().filter(|l| l["outcome"] == "upstream_cut").count() >= 2,
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_length_error_falls_back_to_the_larger_model_other_400s_are_answers() {
    let small = mock("small", |c| {
        c.error_status = Some(400);
        c.error_rate = 1.0;
        c.error_code = Some("context_length_exceeded".into());
    })
    .await;
    let picky = mock("picky", |c| {
        c.error_status = Some(400);
        c.error_rate = 1.0;
        c.error_code = Some("invalid_request".into());
    })
    .await;
    let large = mock("large", |_| {}).await;
    let config = format!(
        r#"{}
[[models]]
name = "short"
targets = [{{ provider = "small" }}]
fallbacks = ["long"]
retry = {{ on = ["connect", "timeout", "429", "5xx", "context_length"] }}

[[models]]
name = "strict"
targets = [{{ provider = "picky" }}]
fallbacks = ["long"]
retry = {{ on = ["connect", "timeout", "429", "5xx", "context_length"] }}

[[models]]
name = "plain"
targets = [{{ provider = "small" }}]
fallbacks = ["long"]

[[models]]
name = "long"
targets = [{{ provider = "large" }}]
"#,
        providers(&[("small", &small), ("picky", &picky), ("large", &large)])
    );
    let gw = Gateway::start(&config).await;
    for stream in [false, true] {
        let r = gw.chat(&ask("short", stream)).await;
        assert_eq!(
            (r.status, r.header("x-tollgate-model")),
            (200, Some("long")),
            "{}",
            r.text()
        );
    }
    let served = large.served();
    let r = gw.chat(&ask("strict", false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["code"],
        "invalid_request",
        "the provider's own answer"
    );
    let r = gw.chat(&ask("plain", false)).await;
    assert_eq!(
        r.status, 400,
        "without context_length in retry.on the 400 is the answer"
    );
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(large.served(), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_ejected_probed_and_let_back_in() {
    // Fails its first three requests, then answers.
    let shaky = mock("shaky", |c| {
        c.error_status = Some(500);
        c.fail_first = 3;
    })
    .await;
    let steady = mock("steady", |_| {}).await;
    let config = format!(
        r#"[admin]
token = "env:TEST_ADMIN_TOKEN"

{}
[[models]]
name = "m"
targets = [{{ provider = "shaky", weight = 1 }}, {{ provider = "steady", weight = 0 }}]
health = {{ failures = 2, cooldown_ms = 300, max_cooldown_ms = 600 }}
"#,
        providers(&[("shaky", &shaky), ("steady", &steady)])
    );
    let gw = Gateway::start(&config).await;
    let served_by = |r: &Resp| r.header("x-mock-upstream").unwrap_or("").to_string();
    for _ in 0..2 {
        let r = gw.chat(&ask("m", false)).await;
        assert_eq!(served_by(&r), "steady");
    }
    assert_eq!(shaky.served(), 2);
    let r = gw.chat(&ask("m", false)).await;
    assert_eq!(
        (served_by(&r), r.header("x-tollgate-attempts")),
        ("steady".into(), Some("1")),
        "ejected: skipped"
    );
    assert_eq!(shaky.served(), 2);
    assert_eq!(
        metric(&gw, "tollgate_target_ejections_total{provider=\"shaky\",target=\"m\"}").await,
        Some(1.0)
    );
    let listed = gw.admin_json("/admin/upstreams").await;
    let shaky_row = listed["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["provider"] == "shaky")
        .unwrap()
        .clone();
    assert_eq!(shaky_row["state"], "ejected", "{listed}");
    assert_eq!(shaky_row["models"], serde_json::json!(["m"]));
    let refused = request(gw.admin, "GET", "/admin/upstreams", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    // After the cool-down one request probes it (and fails: ejected again, for longer), then a
    // probe succeeds and it serves again.
    let back = eventually(Duration::from_secs(5), || async {
        let r = gw.chat(&ask("m", false)).await;
        served_by(&r) == "shaky"
    })
    .await;
    assert!(back, "re-admitted after a successful probe");
    assert_eq!(shaky.served(), 4, "two probes: one failed, one answered");
    let r = gw.chat(&ask("m", false)).await;
    assert_eq!(served_by(&r), "shaky");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_when_a_target_always_fails() {
    let down = mock("down", failing(500)).await;
    let config = format!(
        r#"{}
[[models]]
name = "m"
targets = [{{ provider = "down" }}]
retry = {{ attempts = 3, backoff_ms = 0, budget_ratio = 0.1, budget_min_per_sec = 0.5 }}
health = {{ failures = 0, error_rate = 1.0 }}
"#,
        providers(&[("down", &down)])
    );
    let gw = Gateway::start(&config).await;
    for _ in 0..40 {
        let r = gw.chat(&ask("m", false)).await;
        assert_eq!(r.status, 500, "the last upstream error is the answer");
    }
    let served = down.served();
    // 40 first attempts; retries at most 0.1 × 40 + 0.5/s × 10 s = 9 (not 80).
    assert!(
        (41..=49).contains(&served),
        "{served} requests reached the failing target"
    );
    assert!(
        metric(&gw, "tollgate_retry_budget_exhausted_total{model=\"m\"}")
            .await
            .unwrap_or(0.0)
            >= 30.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_pushes_at_most_its_own_budget_onto_the_others() {
    let down = mock("down", failing(503)).await;
    let up = mock("up", |_| {}).await;
    // The model's budget has room for nearly every retry; the failing target's own does not.
    let config = format!(
        r#"{}
[[models]]
name = "m"
targets = [{{ provider = "down", weight = 1 }}, {{ provider = "up", weight = 0 }}]
retry = {{ budget_ratio = 0.9, target_budget_ratio = 0.1, budget_min_per_sec = 0.5 }}
health = {{ failures = 0, error_rate = 1.0 }}
"#,
        providers(&[("down", &down), ("up", &up)])
    );
    let gw = Gateway::start(&config).await;
    let mut answered = 0;
    for _ in 0..40 {
        let r = gw.chat(&ask("m", false)).await;
        match r.status {
            200 => answered += 1,
            503 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(
        down.served(),
        40,
        "weight 0 is never first: every request starts on `down`"
    );
    // Retries after `down`'s failures: at most 0.1 × its 40 requests + 0.5/s × 10 s = 9.
    assert_eq!(up.served(), answered);
    assert!(
        (1..=9).contains(&answered),
        "{answered} retries reached the healthy target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_of_the_chain_is_out_the_answer_is_a_503_at_once() {
    let down = mock("down", failing(502)).await;
    let also = mock("also", failing(500)).await;
    let config = format!(
        r#"{}
[[models]]
name = "m"
targets = [{{ provider = "down" }}]
fallbacks = ["n"]
health = {{ failures = 1, cooldown_ms = 60000 }}

[[models]]
name = "n"
targets = [{{ provider = "also" }}]
health = {{ failures = 1, cooldown_ms = 60000 }}
"#,
        providers(&[("down", &down), ("also", &also)])
    );
    let gw = Gateway::start(&config).await;
    let r = gw.chat(&ask("m", false)).await;
    assert_eq!(r.status, 500, "the last provider's answer");
    let r = gw.chat(&ask("m", false)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstreams_unavailable");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!((down.served(), also.served()), (1, 1), "no upstream was asked");
}

/// `examples/fallback.toml` with its three mocks as README.md starts them (the first two
/// failing every request; port 0 here): the client never notices, the headers say what the
/// README shows, and the official SDK reads a complete answer, JSON and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_falls_back_as_the_readme_shows() {
    let primary = mock("primary", failing(503)).await;
    let backup = mock("backup", failing(500)).await;
    let last = mock("last-resort", |_| {}).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = std::fs::read_to_string(root.join("examples/fallback.toml"))
        .unwrap()
        .replace("http://127.0.0.1:9101/v1", &primary.base_url())
        .replace("http://127.0.0.1:9102/v1", &backup.base_url())
        .replace("http://127.0.0.1:9103/v1", &last.base_url());
    let gw = Gateway::start(&config).await;
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let r = gw.chat(&ask("assistant", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = format!(
        "x-tollgate-model: {}\nx-tollgate-attempts: {}\n",
        r.header("x-tollgate-model").unwrap(),
        r.header("x-tollgate-attempts").unwrap()
    );
    assert!(readme.contains(&shown), "README shows:\n{shown}");
    assert_eq!(last.requests().last().unwrap().json()["model"], "last-model");
    let base = format!("http://{}/v1", gw.addr);
    let streamed: serde_json::Value = serde_json::from_str(&openai_sdk(&["stream", &base, "assistant"])).unwrap();
    assert_eq!(streamed["finish"], "stop", "{streamed}");
    assert!(!streamed["text"].as_str().unwrap().is_empty());
    // Five failures in a row: the first two are ejected, requests go straight to the last.
    for _ in 0..4 {
        assert_eq!(gw.chat(&ask("assistant", false)).await.status, 200);
    }
    let r = gw.chat(&ask("assistant", false)).await;
    assert_eq!(
        (r.status, r.header("x-tollgate-attempts")),
        (200, Some("1")),
        "README: ejected providers are skipped"
    );
}

/// A consumer's request that falls back is rewritten with the consumer's parameter rules of the
/// fallback model, and never goes to a fallback model the consumer may not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_follows_the_callers_rules_for_the_model_that_serves() {
    use tollgate::key_hash::{format_hash, hash_key};
    const KEY: &str = "tg-test-key-of-the-fallback-test-01";
    let down = mock("down", failing(503)).await;
    let cheap = mock("cheap", |_| {}).await;
    let premium = mock("premium", |_| {}).await;
    let config = format!(
        r#"{}
[[models]]
name = "main"
targets = [{{ provider = "down" }}]
fallbacks = ["premium", "cheap"]

[[models]]
name = "premium"
targets = [{{ provider = "premium" }}]

[[models]]
name = "cheap"
targets = [{{ provider = "cheap" }}]

[[consumers]]
name = "team"
keys = [{{ id = "t-1", hash = "{}" }}]
models = ["main", "cheap"]

[consumers.params]
mode = "clamp"
bounds = {{ max_tokens = [1, 4096] }}

[[consumers.params.models]]
model = "cheap"
bounds = {{ max_tokens = [1, 100] }}
"#,
        providers(&[("down", &down), ("cheap", &cheap), ("premium", &premium)]),
        format_hash(&hash_key(KEY.as_bytes()))
    );
    let gw = Gateway::start(&config).await;
    let auth = format!("Bearer {KEY}");
    let body =
        serde_json::json!({"model": "main", "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw
        .post("/v1/chat/completions", &[("authorization", &auth)], &body.to_string())
        .await;
    assert_eq!(
        (r.status, r.header("x-tollgate-model")),
        (200, Some("cheap")),
        "{}",
        r.text()
    );
    assert_eq!(premium.served(), 0, "the consumer may not use `premium`");
    assert_eq!(down.requests().last().unwrap().json()["max_tokens"], 2000);
    assert_eq!(
        cheap.requests().last().unwrap().json()["max_tokens"],
        100,
        "clamped by the rules of the model that served"
    );
}

/// With `health.probe_interval_ms`, the gateway checks targets itself: a failing target is
/// ejected and let back in with no client request meeting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_eject_and_readmit_a_target_without_client_traffic() {
    // Its first two requests (the first two checks) fail.
    let flaky = mock("flaky", |c| {
        c.error_status = Some(500);
        c.fail_first = 2;
    })
    .await;
    let config = format!(
        r#"[admin]
token = "env:TEST_ADMIN_TOKEN"

{}
[[models]]
name = "m"
targets = [{{ provider = "flaky" }}]
health = {{ failures = 2, cooldown_ms = 600000, probe_interval_ms = 150 }}
"#,
        providers(&[("flaky", &flaky)])
    );
    let gw = Gateway::start(&config).await;
    let state = || async {
        let listed = gw.admin_json("/admin/upstreams").await;
        listed["upstreams"][0]["state"].as_str().unwrap_or("").to_string()
    };
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let s = state().await;
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        if seen.ends_with(&["ejected".to_string(), "ok".to_string()]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.ends_with(&["ejected".to_string(), "ok".to_string()]),
        "states seen: {seen:?}"
    );
    let probes = flaky.requests();
    assert!(probes.len() >= 3 && probes.iter().all(|r| r.method == "GET" && r.path == "/v1/models"));
    assert_eq!(
        probes[0].header("authorization").map(|a| a.starts_with("Bearer ")),
        Some(true),
        "checks carry the provider's key"
    );
    assert_eq!(gw.chat(&ask("m", false)).await.status, 200);
}
