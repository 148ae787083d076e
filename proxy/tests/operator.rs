//! What an operator reads: refusals logged and counted under the model they were for, the client
//! address in access and audit lines, one log format for every line, no Redis series without
//! Redis, refusal messages that do not contradict themselves, flag help that says what a flag does.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tollgate::key_hash::{format_hash, hash_key};

const KEY: &str = "tg-operator-test-key-000000001";

fn config(mock: &str) -> String {
    format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[models]]\nname = \"other-model\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[consumers]]\nname = \"team-a\"\nkeys = [{{ id = \"team-a-1\", hash = \"{}\" }}]\nmodels = [\"m\"]\n\n\
         [[limits]]\nname = \"two-a-minute\"\nby = [\"consumer\"]\nrequests = 2\nper = \"minute\"\nmode = \"local\"\n",
        provider("mock", mock),
        format_hash(&hash_key(KEY.as_bytes())),
    )
}

async fn chat(gw: &Gateway, model: &str) -> Resp {
    let auth = format!("Bearer {KEY}");
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    gw.post("/v1/chat/completions", &[("authorization", &auth)], &body)
        .await
}

async fn metrics(gw: &Gateway) -> String {
    request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_model_and_lines_their_client_address() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;

    for _ in 0..2 {
        assert_eq!(chat(&gw, "m").await.status, 200);
    }
    let limited = chat(&gw, "m").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    let message = limited.json()["error"]["message"].as_str().unwrap().to_string();
    let remain: u64 = message
        .split_whitespace()
        .zip(message.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("remain"))
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        remain < 1,
        "a refusal of a 1-request need says {remain} remain: {message}"
    );
    let forbidden = chat(&gw, "other-model").await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());

    for (resp, model) in [(&limited, "m"), (&forbidden, "other-model")] {
        let access = gw.access_line(&resp.request_id()).await;
        assert_eq!(access["model"], model, "{access}");
        assert_eq!(access["client_ip"], "127.0.0.1", "{access}");
        let audit = gw.log_line("audit", &resp.request_id()).await;
        assert_eq!(audit["model"], model, "{audit}");
        assert_eq!(audit["decision"], "denied", "{audit}");
        assert_eq!(audit["client_ip"], "127.0.0.1", "{audit}");
    }
    let text = metrics(&gw).await;
    for series in [
        r#"tollgate_requests_total{model="m",status="429"} 1"#,
        r#"tollgate_requests_total{model="other-model",status="403"} 1"#,
        "tollgate_limit_keys ",
    ] {
        assert!(text.contains(series), "no `{series}` in:\n{text}");
    }
    // No Redis configured: no series that would read as a Redis outage.
    for absent in [
        "tollgate_limit_sync_up",
        "tollgate_limit_redis_scripts_ok",
        "tollgate_limit_sync_nodes",
    ] {
        assert!(!text.contains(absent), "`{absent}` without Redis:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_text_logs_every_line_is_text() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config(&mock.base_url()), &["--log-format", "text"]).await;
    let ok = chat(&gw, "m").await;
    assert_eq!(ok.status, 200);
    let id = ok.request_id();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.log().contains("tollgate::audit: audit") && gw.log().contains("tollgate::access: access")
        })
        .await,
        "{}",
        gw.log()
    );
    let log = gw.log();
    for line in log.lines().filter(|l| l.contains(&id)) {
        assert!(
            !line.trim_start().starts_with('{'),
            "a JSON line among text lines: {line}"
        );
        assert!(line.contains("client_ip=127.0.0.1"), "{line}");
    }
    let audit = log.lines().find(|l| l.contains("tollgate::audit: audit")).unwrap();
    assert!(
        audit.contains("consumer=\"team-a\"") && audit.contains("decision=\"allowed\""),
        "{audit}"
    );
}

#[test]
fn the_redis_flag_says_everything_it_shares() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let section: String = help
        .split("--redis-url")
        .nth(1)
        .unwrap()
        .lines()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    for what in ["quota", "rate limits", "keys"] {
        assert!(
            section.contains(what),
            "--redis-url help does not mention {what}: {section}"
        );
    }
}
