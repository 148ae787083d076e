//! Key management without restart: the admin API creates, lists, rotates and revokes keys; with
//! Redis every node sees a change, without it a state file keeps them across restarts.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tollgate::key_hash::{format_hash, hash_key};

const CONFIG_KEY: &str = "tg-config-key-for-key-tests-01";
const ADMIN: &str = "Bearer admin-token-for-tests";

fn config(mock: &str, consumer: &str) -> String {
    format!(
        "[admin]\ntoken = \"env:TEST_ADMIN_TOKEN\"\n\n{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[consumers]]\nname = \"{consumer}\"\nkeys = [{{ id = \"{consumer}-cfg\", hash = \"{}\" }}]\n",
        provider("mock", mock),
        format_hash(&hash_key(CONFIG_KEY.as_bytes())),
    )
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> Resp {
    let headers = [("authorization", ADMIN), ("content-type", "application/json")];
    request(gw.admin, method, path, &headers, Bytes::from(body.to_string()))
        .await
        .unwrap()
}

async fn chat_with(gw: &Gateway, key: &str) -> u16 {
    let auth = format!("Bearer {key}");
    gw.post(
        "/v1/chat/completions",
        &[("authorization", &auth)],
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_rotated_and_revoked_without_redis_survive_a_restart() {
    let mock = start_mock("m").await;
    let consumer = "dept-k";
    let gw = Gateway::start(&config(&mock.base_url(), consumer)).await;
    let base = format!("/admin/consumers/{consumer}/keys");

    let r = request(gw.admin, "POST", &base, &[], Bytes::new()).await.unwrap();
    assert_eq!(r.status, 401, "the key API needs the admin token");

    let created = admin(&gw, "POST", &base, r#"{"id":"k-api-1"}"#).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let key1 = created.json()["key"].as_str().unwrap().to_string();
    assert_eq!(chat_with(&gw, &key1).await, 200, "a new key works at once");
    assert_eq!(admin(&gw, "POST", &base, r#"{"id":"k-api-1"}"#).await.status, 409);

    let listed = admin(&gw, "GET", &base, "").await;
    let text = listed.text();
    assert!(
        text.contains("k-api-1") && text.contains(&format!("{consumer}-cfg")),
        "{text}"
    );
    assert!(
        !text.contains(&key1) && !text.contains("sha256:"),
        "a listing showed key material: {text}"
    );

    let rotated = admin(&gw, "POST", &format!("{base}/k-api-1/rotate"), r#"{"id":"k-api-2"}"#).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let key2 = rotated.json()["key"].as_str().unwrap().to_string();
    assert_eq!(chat_with(&gw, &key2).await, 200);
    assert_eq!(chat_with(&gw, &key1).await, 401, "the rotated-out key is revoked");

    // A key written in the config file can be revoked too.
    assert_eq!(chat_with(&gw, CONFIG_KEY).await, 200);
    assert_eq!(
        admin(&gw, "DELETE", &format!("{base}/{consumer}-cfg"), "").await.status,
        200
    );
    assert_eq!(chat_with(&gw, CONFIG_KEY).await, 401);
    assert_eq!(
        admin(&gw, "DELETE", &format!("{base}/no-such-key"), "").await.status,
        404
    );
    assert_eq!(admin(&gw, "GET", "/admin/consumers/nobody/keys", "").await.status, 404);

    // Audit lines for every admin action, never a key.
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.log().matches("\"message\":\"admin_audit\"").count() >= 5
        })
        .await
    );
    let log = gw.log();
    assert!(log.contains("\"who\":\"admin\""));
    assert!(log.contains("\"action\":\"key.rotate\""));
    for secret in [key1.as_str(), key2.as_str(), CONFIG_KEY] {
        assert!(!log.contains(secret), "a key reached the log");
    }

    // Restart on the same config: the state file next to it keeps every change.
    let config_text = std::fs::read_to_string(&gw.config_path).unwrap();
    let state = std::path::PathBuf::from(format!("{}.keys.json", gw.config_path.display()));
    assert!(state.exists());
    drop(gw);
    let restarted = Gateway::start_with(&config_text, &["--key-store-file", state.to_str().unwrap()]).await;
    assert_eq!(chat_with(&restarted, &key2).await, 200);
    assert_eq!(chat_with(&restarted, &key1).await, 401);
    assert_eq!(chat_with(&restarted, CONFIG_KEY).await, 401);
    drop(restarted);

    // 40 days later (the revocations moved back in the file): with a 30-day retention the
    // rotated-out API key's record is purged at start, the config key's revocation is not.
    let mut records: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let forty_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 40 * 86_400_000;
    for r in records.as_array_mut().unwrap() {
        if r["revoked_ms"].is_u64() {
            r["revoked_ms"] = forty_days_ago.into();
        }
    }
    std::fs::write(&state, serde_json::to_vec(&records).unwrap()).unwrap();
    let later = Gateway::start_with(
        &config_text,
        &[
            "--key-store-file",
            state.to_str().unwrap(),
            "--key-retention-days",
            "30",
        ],
    )
    .await;
    let listed = admin(&later, "GET", &base, "").await.json();
    let ids = list_ids(&listed);
    assert_eq!(ids, ["dept-k-cfg", "k-api-2"], "{listed}");
    assert!(listed["data"][0]["revoked_at_ms"].is_u64(), "{listed}");
    assert_eq!(
        chat_with(&later, CONFIG_KEY).await,
        401,
        "a config key's revocation is kept"
    );
    assert_eq!(chat_with(&later, &key1).await, 401, "a purged key stays refused");
    assert_eq!(chat_with(&later, &key2).await, 200);
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(kept.as_array().unwrap().len(), 2, "purged from the file: {kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_key_change_on_one_node_reaches_the_other() {
    let mock = start_mock("m").await;
    let consumer = unique("dept-r");
    let cfg = config(&mock.base_url(), &consumer);
    let redis = ["--redis-url", "redis://127.0.0.1:6379"];
    let a = Gateway::start_with(&cfg, &redis).await;
    let b = Gateway::start_with(&cfg, &redis).await;
    let base = format!("/admin/consumers/{consumer}/keys");

    let id = unique("k");
    let created = admin(&a, "POST", &base, &format!(r#"{{"id":"{id}"}}"#)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let key = created.json()["key"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(2), || async { chat_with(&b, &key).await == 200 }).await,
        "node B never saw the new key"
    );
    // A cluster under another namespace in the same Redis does not share its keys.
    let ns = unique("other");
    let other = Gateway::start_with(&cfg, &[redis[0], redis[1], "--redis-namespace", &ns]).await;
    assert_eq!(chat_with(&other, &key).await, 401, "another namespace saw the key");
    assert_eq!(chat_with(&other, CONFIG_KEY).await, 200);
    drop(other);

    assert_eq!(admin(&a, "DELETE", &format!("{base}/{id}"), "").await.status, 200);
    assert!(
        eventually(Duration::from_secs(2), || async { chat_with(&b, &key).await == 401 }).await,
        "node B still accepts a revoked key"
    );
    assert_eq!(chat_with(&a, &key).await, 401);

    // A node started later loads the current state.
    let c = Gateway::start_with(&cfg, &redis).await;
    assert_eq!(chat_with(&c, &key).await, 401);
    assert_eq!(chat_with(&c, CONFIG_KEY).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_its_predecessors_expiry_and_names_it() {
    let mock = start_mock("m").await;
    let consumer = "dept-x";
    let gw = Gateway::start(&config(&mock.base_url(), consumer)).await;
    let base = format!("/admin/consumers/{consumer}/keys");

    let created = admin(&gw, "POST", &base, r#"{"id":"temp-1","expires_in_secs":3}"#).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let expires = created.json()["expires_at_ms"].as_u64().unwrap();

    let rotated = admin(&gw, "POST", &format!("{base}/temp-1/rotate"), "").await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let r = rotated.json();
    assert_eq!(r["expires_at_ms"].as_u64(), Some(expires), "the same instant: {r}");
    assert_eq!(r["rotated_from"], "temp-1", "{r}");
    let new_id = r["id"].as_str().unwrap().to_string();
    let key = r["key"].as_str().unwrap().to_string();
    assert_eq!(chat_with(&gw, &key).await, 200);

    let listed = admin(&gw, "GET", &base, "").await.json();
    let entry = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == new_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["rotated_from"], "temp-1", "{listed}");
    assert_eq!(entry["expires_at_ms"].as_u64(), Some(expires), "{listed}");

    // Rotation with its own lifetime sets a new expiry.
    let longer = admin(
        &gw,
        "POST",
        &format!("{base}/{new_id}/rotate"),
        r#"{"id":"temp-3","expires_in_secs":3600}"#,
    )
    .await;
    assert_eq!(longer.status, 201, "{}", longer.text());
    assert!(longer.json()["expires_at_ms"].as_u64().unwrap() > expires + 3_000_000);

    // The 3-second key does not outlive its expiry through a rotation.
    let short = admin(&gw, "POST", &base, r#"{"id":"temp-4","expires_in_secs":1}"#).await;
    let short_key = short.json()["key"].as_str().unwrap().to_string();
    let heir = admin(&gw, "POST", &format!("{base}/temp-4/rotate"), r#"{"id":"temp-5"}"#).await;
    let heir_key = heir.json()["key"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(5), || async {
            chat_with(&gw, &heir_key).await == 401
        })
        .await,
        "the rotated key outlived its predecessor's expiry"
    );
    assert_eq!(chat_with(&gw, &short_key).await, 401);
    // An expired key cannot be rotated into a live one without a new lifetime.
    let refused = admin(&gw, "POST", &format!("{base}/temp-5/rotate"), "").await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "key_expired");
}
