//! A real Prometheus (Debian's package, installed by `scripts/setup.sh`) scrapes a running
//! gateway that has served every kind of event, and each PromQL query of the Grafana dashboard
//! (`deploy/grafana/dashboards/tollgate.json`) returns data from it.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::Duration;

use common::*;
use tollgate::key_hash::{format_hash, hash_key};

const KEY_A: &str = "tg-prometheus-key-of-team-a-0001";
const KEY_B: &str = "tg-prometheus-key-of-team-b-0001";
const KEY_C: &str = "tg-prometheus-key-of-team-c-0001";

/// Every feature a dashboard panel reads: priced models, a model whose only target is down and
/// falls back, the exact-answer cache, a deny list, a rate limit (team-b) and a quota (team-c).
fn config(mock: &str) -> String {
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    format!(
        r#"{}{}[[models]]
name = "priced"
targets = [{{ provider = "mock" }}]
price = {{ input = 2.5, output = 10 }}

[[models]]
name = "flaky"
targets = [{{ provider = "dead" }}]
fallbacks = ["priced"]

[cache]
models = ["priced"]
semantic = false

[[guardrails]]
name = "deny"
detect = "deny_list"
phrases = ["launch codes"]
action = "block"

[[consumers]]
name = "team-a"
keys = [{{ id = "a", hash = "{}" }}]

[[consumers]]
name = "team-b"
keys = [{{ id = "b", hash = "{}" }}]

[[consumers]]
name = "team-c"
keys = [{{ id = "c", hash = "{}" }}]

[[consumers.quotas]]
name = "one-a-day"
limit = 1
per = "day"
by = "key"

[[limits]]
name = "b-per-minute"
requests = 1
per = "minute"
consumers = ["team-b"]
"#,
        provider("mock", mock),
        provider("dead", &dead),
        format_hash(&hash_key(KEY_A.as_bytes())),
        format_hash(&hash_key(KEY_B.as_bytes())),
        format_hash(&hash_key(KEY_C.as_bytes())),
    )
}

async fn ask(gw: &Gateway, key: &str, model: &str, content: &str) -> u16 {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]});
    gw.post(
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {key}"))],
        &body.to_string(),
    )
    .await
    .status
}

/// Every `expr` of the dashboard's panels, with Grafana's `$__rate_interval` as a minute.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards/tollgate.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_every_dashboard_query_returns_data() {
    let prometheus = std::path::Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "prometheus is missing: run scripts/setup.sh (Debian's prometheus package)"
    );
    let mock = start_mock("mock").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;

    // Prometheus scraping the admin listener every second, from before the traffic.
    let dir = temp_dir();
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tollgate\n    static_configs:\n      - targets: [\"{}\"]\n",
            gw.admin
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut server = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = eventually(Duration::from_secs(20), || async {
        request(api, "GET", "/-/ready", &[], bytes::Bytes::new())
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(
        up,
        "prometheus did not start: {}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap()
    );
    let query = |expr: &str| {
        let path = format!("/api/v1/query?query={}", urlencode(expr));
        async move {
            request(api, "GET", &path, &[], bytes::Bytes::new())
                .await
                .unwrap()
                .json()
        }
    };
    // Scraping has begun (its first scrape comes up to an interval after start).
    let scraped = eventually(Duration::from_secs(20), || async {
        query("up{job=\"tollgate\"}").await["data"]["result"][0]["value"][1] == "1"
    })
    .await;
    assert!(scraped, "prometheus never scraped the gateway");

    // Traffic for every panel, over a few seconds so rates have samples on both sides.
    for round in 0..4 {
        for i in 0..3 {
            assert_eq!(ask(&gw, KEY_A, "priced", &format!("question {round} {i}")).await, 200);
        }
        assert_eq!(ask(&gw, KEY_A, "priced", "the same question").await, 200); // cached after the first
        assert_eq!(ask(&gw, KEY_A, "flaky", &format!("falls back {round}")).await, 200);
        assert_eq!(ask(&gw, KEY_A, "priced", "what are the launch codes").await, 400);
        ask(&gw, KEY_B, "priced", &format!("b {round}")).await; // one a minute
        ask(&gw, KEY_C, "priced", &format!("c {round}")).await; // one a day
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        let r = query(&expr).await;
        assert_eq!(r["status"], "success", "{title}: {expr}: {r}");
        let results = r["data"]["result"].as_array().unwrap();
        // Every panel's events happened: a value above zero, not merely a series.
        let has_data = results.iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        });
        if !has_data {
            empty.push(format!("{title}: {expr}: {r}"));
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(empty.is_empty(), "queries without data:\n{}", empty.join("\n"));
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
