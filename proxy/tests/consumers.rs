//! Consumers over real sockets: keys, model and endpoint allow-lists, parameter policy, audit.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use bytes::Bytes;
use common::*;
use tollgate::key_hash::{format_hash, hash_key};

const KEY_A: &str = "tg-test-key-of-department-a-0001";
const KEY_A2: &str = "tg-test-key-of-department-a-0002";
const KEY_B: &str = "tg-test-key-of-department-b-0001";

fn config(mock: &str, with_a2: bool) -> String {
    let mut c = provider("mock", mock);
    for m in ["model-a", "model-a-mini", "model-b"] {
        c.push_str(&format!(
            "[[models]]\nname = \"{m}\"\ntargets = [{{ provider = \"mock\", model = \"{m}-upstream\" }}]\n\n"
        ));
    }
    let a2 = if with_a2 {
        format!(
            ", {{ id = \"a-2\", hash = \"{}\" }}",
            format_hash(&hash_key(KEY_A2.as_bytes()))
        )
    } else {
        String::new()
    };
    c.push_str(&format!(
        r#"[[consumers]]
name = "dept-a"
keys = [{{ id = "a-1", hash = "{}" }}{a2}]
models = ["model-a*"]
metadata = {{ team = "search", cost_center = "cc-7" }}

[consumers.params]
mode = "clamp"
defaults = {{ temperature = 0.3 }}
overrides = {{ presence_penalty = 0 }}
bounds = {{ temperature = [0, 1], max_tokens = [1, 4096] }}
forbidden = ["logit_bias"]

[[consumers.params.models]]
model = "model-a-mini"
mode = "reject"
bounds = {{ max_tokens = [1, 256] }}

[[consumers]]
name = "dept-b"
keys = [{{ id = "b-1", hash = "{}" }}]
endpoints = ["embeddings", "models"]
log_prompts = true
"#,
        format_hash(&hash_key(KEY_A.as_bytes())),
        format_hash(&hash_key(KEY_B.as_bytes())),
    ));
    c
}

async fn call(gw: &Gateway, key_header: Option<(&str, String)>, path: &str, body: &str) -> Resp {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    let held;
    if let Some((name, value)) = key_header {
        held = value;
        headers.push((name, held.as_str()));
    }
    gw.post(path, &headers, body).await
}

fn bearer(key: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {key}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_checked_and_accepted_in_every_header() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), false)).await;
    let chat = r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#;

    let r = call(&gw, None, "/v1/chat/completions", chat).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let r = call(&gw, bearer("tg-wrong-key"), "/v1/chat/completions", chat).await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("tg-wrong-key"), "the error echoed the key");
    assert_eq!(call(&gw, bearer(KEY_A), "/v1/chat/completions", chat).await.status, 200);
    assert_eq!(
        call(
            &gw,
            Some(("x-api-key", KEY_A.to_string())),
            "/v1/chat/completions",
            chat
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(&gw, Some(("api-key", KEY_A.to_string())), "/v1/chat/completions", chat)
            .await
            .status,
        200
    );
    // Health stays open; models needs a key.
    assert_eq!(
        request(gw.addr, "GET", "/healthz", &[], Bytes::new())
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        request(gw.addr, "GET", "/v1/models", &[], Bytes::new())
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(mock.requests().len(), 3, "refused requests must not reach the provider");
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {PROVIDER_KEY}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_endpoint_allow_lists_are_403_and_models_lists_only_allowed_ones() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), false)).await;

    let r = call(
        &gw,
        bearer(KEY_A),
        "/v1/chat/completions",
        r#"{"model":"model-b","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "model_not_allowed");
    assert_eq!(
        call(
            &gw,
            bearer(KEY_A),
            "/v1/chat/completions",
            r#"{"model":"model-a-mini","messages":[{"role":"user","content":"hi"}]}"#
        )
        .await
        .status,
        200
    );
    let r = call(
        &gw,
        bearer(KEY_B),
        "/v1/chat/completions",
        r#"{"model":"model-b","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "endpoint_not_allowed");
    assert_eq!(
        call(
            &gw,
            bearer(KEY_B),
            "/v1/embeddings",
            r#"{"model":"model-b","input":"x"}"#
        )
        .await
        .status,
        200
    );

    let auth = format!("Bearer {KEY_A}");
    let models = request(gw.addr, "GET", "/v1/models", &[("authorization", &auth)], Bytes::new())
        .await
        .unwrap()
        .json();
    let ids = list_ids(&models);
    assert_eq!(ids, ["model-a", "model-a-mini"]);
    let auth = format!("Bearer {KEY_B}");
    let models = request(gw.addr, "GET", "/v1/models", &[("authorization", &auth)], Bytes::new())
        .await
        .unwrap()
        .json();
    assert_eq!(models["data"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_policy_defaults_overrides_clamps_rejects_and_forbids() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), false)).await;
    let sent = |mock: &tollgate_loadtest::mock::MockHandle| mock.requests().last().unwrap().json();

    // default filled in, override forced
    let r = call(
        &gw,
        bearer(KEY_A),
        "/v1/chat/completions",
        r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}],"presence_penalty":1.5}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let body = sent(&mock);
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["presence_penalty"], 0);
    assert_eq!(body["model"], "model-a-upstream");
    // clamp
    call(
        &gw,
        bearer(KEY_A),
        "/v1/chat/completions",
        r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}],"temperature":1.9,"max_tokens":100000}"#,
    )
    .await;
    let body = sent(&mock);
    assert_eq!(body["temperature"], 1);
    assert_eq!(body["max_tokens"], 4096);
    // reject (per-model rules for model-a-mini)
    let before = mock.requests().len();
    let r = call(
        &gw,
        bearer(KEY_A),
        "/v1/chat/completions",
        r#"{"model":"model-a-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "parameter_out_of_range");
    // forbidden
    let r = call(
        &gw,
        bearer(KEY_A),
        "/v1/chat/completions",
        r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "parameter_forbidden");
    assert_eq!(
        mock.requests().len(),
        before,
        "refused requests must not reach the provider"
    );
    // a consumer without rules passes parameters through untouched
    call(
        &gw,
        bearer(KEY_B),
        "/v1/embeddings",
        r#"{"model":"model-b","input":"x","temperature":7}"#,
    )
    .await;
    assert_eq!(sent(&mock)["temperature"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_carry_identity_and_decision_and_never_a_key() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), false)).await;
    gw.post(
        "/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {KEY_A}")),
            ("x-request-id", "req-audit-ok"),
        ],
        r#"{"model":"model-a","messages":[{"role":"user","content":"secret prompt text"}],"user":"alice"}"#,
    )
    .await;
    gw.post(
        "/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {KEY_A}")),
            ("x-request-id", "req-audit-denied"),
        ],
        r#"{"model":"model-b","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    gw.post(
        "/v1/chat/completions",
        &[("authorization", "Bearer tg-nope"), ("x-request-id", "req-audit-401")],
        "{}",
    )
    .await;
    gw.post(
        "/v1/embeddings",
        &[
            ("authorization", &format!("Bearer {KEY_B}")),
            ("x-request-id", "req-audit-prompt"),
        ],
        r#"{"model":"model-b","input":"logged on purpose"}"#,
    )
    .await;

    let ok = gw.log_line("audit", "req-audit-ok").await;
    assert_eq!(ok["consumer"], "dept-a");
    assert_eq!(ok["key_id"], "a-1");
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["metadata"]["cost_center"], "cc-7");
    assert_eq!(ok["decision"], "allowed");
    assert!(ok["total_tokens"].as_u64().unwrap() > 0);
    assert!(ok.get("request_body").is_none());
    let denied = gw.log_line("audit", "req-audit-denied").await;
    assert_eq!(denied["decision"], "denied");
    assert_eq!(denied["reason"], "model_not_allowed");
    let unknown = gw.log_line("audit", "req-audit-401").await;
    assert_eq!(unknown["consumer"], serde_json::Value::Null);
    assert_eq!(unknown["reason"], "invalid_api_key");
    let logged = gw.log_line("audit", "req-audit-prompt").await;
    assert!(logged["request_body"].as_str().unwrap().contains("logged on purpose"));

    let log = gw.log();
    for secret in [KEY_A, KEY_B, "tg-nope", PROVIDER_KEY] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
    assert!(
        !log.contains("secret prompt text"),
        "a prompt was logged without the consumer's consent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_config_is_refused_after_reload() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), true)).await;
    let chat = r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        call(&gw, bearer(KEY_A2), "/v1/chat/completions", chat).await.status,
        200
    );
    std::fs::write(&gw.config_path, config(&mock.base_url(), false)).unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            call(&gw, bearer(KEY_A2), "/v1/chat/completions", chat).await.status == 401
        })
        .await
    );
    assert_eq!(call(&gw, bearer(KEY_A), "/v1/chat/completions", chat).await.status, 200);
}
