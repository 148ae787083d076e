//! The gateway every test starts (consumers, a price, a limit), and how they ask it.

use bytes::Bytes;
use tollgate::key_hash::{format_hash, hash_key};

use crate::common::*;

pub const KEY_A: &str = "tg-observability-key-of-team-a-0001";
pub const KEY_B: &str = "tg-observability-key-of-team-b-0001";

/// Model `priced` (input 2.5, output 10, cached 1.25 per million, USD) and `free` (no price);
/// consumers `team-a` and `team-b`; `team-b` may send one request a minute.
pub fn config(mock: &str) -> String {
    format!(
        r#"[admin]
token = "env:TEST_ADMIN_TOKEN"

{}[[models]]
name = "priced"
targets = [{{ provider = "mock" }}]
price = {{ input = 2.5, output = 10, cached = 1.25 }}

[[models]]
name = "free"
targets = [{{ provider = "mock" }}]

[[consumers]]
name = "team-a"
keys = [{{ id = "a-1", hash = "{}" }}]

[[consumers]]
name = "team-b"
keys = [{{ id = "b-1", hash = "{}" }}]

[[limits]]
name = "b-per-minute"
requests = 1
per = "minute"
consumers = ["team-b"]
"#,
        provider("mock", mock),
        format_hash(&hash_key(KEY_A.as_bytes())),
        format_hash(&hash_key(KEY_B.as_bytes())),
    )
}

pub async fn ask(gw: &Gateway, key: &str, model: &str) -> Resp {
    let body =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "How are the tides made?"}]});
    gw.post(
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {key}"))],
        &body.to_string(),
    )
    .await
}

/// Team A asks `model` under the client's `traceparent`.
pub async fn ask_under(gw: &Gateway, model: &str, traceparent: &str) -> Resp {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    gw.post(
        "/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {KEY_A}")),
            ("traceparent", traceparent),
        ],
        &body.to_string(),
    )
    .await
}

pub async fn exposition(gw: &Gateway) -> String {
    request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text()
}

pub async fn admin_get(gw: &Gateway, path: &str, token: bool) -> Resp {
    let auth = [("authorization", "Bearer admin-token-for-tests")];
    request(gw.admin, "GET", path, if token { &auth[..] } else { &[] }, Bytes::new())
        .await
        .unwrap()
}
