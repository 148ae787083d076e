//! Config reload by file change, by SIGHUP and by the admin API: a bad file is refused and the
//! old config keeps serving; a stream in flight across a reload completes.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

fn config_with(mock: &str, models: &[&str]) -> String {
    let mut c = String::from("[admin]\ntoken = \"env:TEST_ADMIN_TOKEN\"\n\n");
    c.push_str(&provider("mock", mock));
    for m in models {
        c.push_str(&format!(
            "[[models]]\nname = \"{m}\"\ntargets = [{{ provider = \"mock\" }}]\n\n"
        ));
    }
    c
}

async fn status_of(gw: &Gateway, model: &str) -> u16 {
    gw.chat(&format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
    ))
    .await
    .status
}

async fn admin_reload(gw: &Gateway, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    request(
        gw.admin,
        "POST",
        "/admin/reload",
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_on_file_change_and_a_bad_file_is_refused() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config_with(&mock.base_url(), &["one"])).await;
    assert_eq!(status_of(&gw, "two").await, 404);

    std::fs::write(&gw.config_path, config_with(&mock.base_url(), &["one", "two"])).unwrap();
    assert!(eventually(Duration::from_secs(10), || async { status_of(&gw, "two").await == 200 }).await);

    std::fs::write(
        &gw.config_path,
        "[[models]]\nname = \"three\"\ntargets = [{ provider = \"missing\" }]\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            gw.log().contains("config reload refused")
        })
        .await
    );
    assert_eq!(status_of(&gw, "two").await, 200, "the old config must keep serving");
    assert_eq!(status_of(&gw, "three").await, 404);
    let metrics = request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("tollgate_config_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_on_sighup() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config_with(&mock.base_url(), &["one"]), &["--config-poll-ms", "0"]).await;
    std::fs::write(&gw.config_path, config_with(&mock.base_url(), &["one", "two"])).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_of(&gw, "two").await,
        404,
        "with polling off only the signal reloads"
    );
    signal(gw.pid(), "HUP");
    assert!(eventually(Duration::from_secs(10), || async { status_of(&gw, "two").await == 200 }).await);
    assert!(gw.log().contains("\"trigger\":\"sighup\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_admin_call_needs_the_token_and_reports_a_bad_file() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config_with(&mock.base_url(), &["one"]), &["--config-poll-ms", "0"]).await;
    std::fs::write(&gw.config_path, config_with(&mock.base_url(), &["one", "two"])).unwrap();

    let r = admin_reload(&gw, "wrong-token").await;
    assert_eq!(r.status, 401);
    assert_eq!(status_of(&gw, "two").await, 404);
    let r = admin_reload(&gw, "admin-token-for-tests").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["config_version"], 2);
    assert_eq!(status_of(&gw, "two").await, 200);

    std::fs::write(&gw.config_path, "[[models]\nbroken").unwrap();
    let r = admin_reload(&gw, "admin-token-for-tests").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("line 1"),
        "{}",
        r.text()
    );
    assert_eq!(status_of(&gw, "two").await, 200);
    assert!(!gw.log().contains("admin-token-for-tests"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_across_a_reload_completes() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config_with(&mock.base_url(), &["one"]), &["--config-poll-ms", "0"]).await;
    let resp = open(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunks", "10"), ("x-mock-chunk-delay-ms", "100")],
        Bytes::from_static(br#"{"model":"one","stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    // Reload to a config without the model while the stream runs.
    std::fs::write(&gw.config_path, config_with(&mock.base_url(), &["other"])).unwrap();
    assert_eq!(admin_reload(&gw, "admin-token-for-tests").await.status, 200);
    assert_eq!(status_of(&gw, "one").await, 404, "new requests see the new config");
    let (done, body, _) = read_body(resp).await;
    assert!(done.is_ok());
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("\"delta\"").count(), 10);
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_audited_with_the_holder_of_the_token_and_refusals_too() {
    let mock = start_mock("m").await;
    let dir = temp_dir();
    let bob_token = dir.join("bob.token");
    std::fs::write(&bob_token, "bob-admin-token-0123").unwrap();
    let holders = format!(
        "[[admin.tokens]]\nname = \"ops-bob\"\ntoken = \"file:{}\"\n\n",
        bob_token.display()
    );
    let cfg = config_with(&mock.base_url(), &["one"]).replacen("\n\n", &format!("\n\n{holders}"), 1);
    let gw = Gateway::start_with(&cfg, &["--config-poll-ms", "0"]).await;

    assert_eq!(admin_reload(&gw, "bob-admin-token-0123").await.status, 200);
    assert_eq!(admin_reload(&gw, "admin-token-for-tests").await.status, 200);
    assert_eq!(admin_reload(&gw, "not-a-token").await.status, 401);
    let audit_lines = || {
        gw.log()
            .lines()
            .filter(|l| l.contains("\"message\":\"admin_audit\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(5), || async { audit_lines().len() >= 3 }).await);
    let lines = audit_lines();
    let who: Vec<Option<&str>> = lines.iter().map(|l| l["who"].as_str()).collect();
    assert_eq!(who, [Some("ops-bob"), Some("admin"), None]);
    assert!(lines[2]["who"].is_null());
    for l in &lines {
        assert_eq!(l["action"], "reload");
        assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert_eq!(lines[0]["result"], "ok: config version 2");
    assert!(lines[2]["result"].as_str().unwrap().starts_with("refused: "));
    let log = gw.log();
    for token in ["bob-admin-token-0123", "admin-token-for-tests", "not-a-token"] {
        assert!(!log.contains(token), "a token reached the log");
    }

    // Two holders with one token, or one name twice, cannot say who acted: config errors.
    let same = dir.join("same-token.toml");
    let twice = holders.replace("ops-bob", "admin");
    let clash = format!(
        "{holders}[[admin.tokens]]\nname = \"ops-carol\"\ntoken = \"file:{}\"\n\n",
        bob_token.display()
    );
    for (extra, expected) in [(clash, "admin.tokens[1].token"), (twice, "admin.tokens[0].name")] {
        std::fs::write(
            &same,
            config_with(&mock.base_url(), &["one"]).replacen("\n\n", &format!("\n\n{extra}"), 1),
        )
        .unwrap();
        let (passed, err) = check_config(&same);
        assert!(!passed);
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("bob-admin-token-0123"));
    }
}
