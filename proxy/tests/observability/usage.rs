//! The usage API against the access logs of two nodes sharing Redis.

use crate::common::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_api_agrees_with_the_access_log_on_two_nodes_sharing_redis() {
    let mock = start_mock("mock").await;
    let ns = unique("usage");
    let flags = [
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-namespace",
        ns.as_str(),
    ];
    // team-b's one request a minute would be shared between the two nodes: lifted here.
    let cfg = config(&mock.base_url()).replace("requests = 1\n", "requests = 1000\n");
    let a = Gateway::start_with(&cfg, &flags).await;
    let b = Gateway::start_with(&cfg, &flags).await;
    let mut ids = Vec::new();
    for (gw, key, model, n) in [
        (&a, KEY_A, "priced", 5),
        (&b, KEY_A, "priced", 4),
        (&b, KEY_A, "free", 3),
        (&a, KEY_B, "free", 1),
    ] {
        for _ in 0..n {
            let r = ask(gw, key, model).await;
            assert_eq!(r.status, 200, "{key} {model}: {}", r.text());
            ids.push((gw, r.request_id()));
        }
    }
    // What the access lines of both nodes say, per consumer and model.
    let mut expected: std::collections::BTreeMap<(String, String), (u64, u64, u64, f64)> = Default::default();
    for (gw, id) in &ids {
        let line = gw.access_line(id).await;
        let e = expected
            .entry((
                line["consumer"].as_str().unwrap().to_string(),
                line["model"].as_str().unwrap().to_string(),
            ))
            .or_default();
        e.0 += 1;
        e.1 += line["prompt_tokens"].as_u64().unwrap();
        e.2 += line["completion_tokens"].as_u64().unwrap();
        e.3 += line["cost"].as_f64().unwrap_or(0.0);
    }
    let usage_of = |v: &serde_json::Value| {
        let mut got: std::collections::BTreeMap<(String, String), (u64, u64, u64, f64)> = Default::default();
        for r in v["rows"].as_array().unwrap() {
            got.insert(
                (
                    r["consumer"].as_str().unwrap().to_string(),
                    r["model"].as_str().unwrap().to_string(),
                ),
                (
                    r["requests"].as_u64().unwrap(),
                    r["prompt_tokens"].as_u64().unwrap(),
                    r["completion_tokens"].as_u64().unwrap(),
                    r["cost"]["USD"].as_f64().unwrap_or(0.0),
                ),
            );
        }
        got
    };
    // Both nodes flush within a second or two; then both answer the same, as the logs say.
    let agree = eventually(std::time::Duration::from_secs(10), || async {
        let (ua, ub) = (
            admin_get(&a, "/admin/usage", true).await.json(),
            admin_get(&b, "/admin/usage", true).await.json(),
        );
        let (ga, gb) = (usage_of(&ua), usage_of(&ub));
        ga.len() == expected.len() && ga.keys().eq(gb.keys()) && ga.iter().all(|(k, v)| v.0 == expected[k].0)
    })
    .await;
    assert!(agree, "usage: {}", admin_get(&a, "/admin/usage", true).await.text());
    for gw in [&a, &b] {
        let v = admin_get(gw, "/admin/usage", true).await.json();
        assert_eq!(v["source"], "redis");
        for (k, (n, p, c, cost)) in usage_of(&v) {
            let (en, ep, ec, ecost) = expected[&k];
            assert_eq!((n, p, c), (en, ep, ec), "{k:?}");
            assert!((cost - ecost).abs() < 1e-9, "{k:?}: {cost} vs {ecost}");
        }
    }
    // Grouping, filters and CSV.
    let by_day = admin_get(&a, "/admin/usage?group=day&consumer=team-a", true)
        .await
        .json();
    let rows = by_day["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{by_day}");
    assert_eq!(rows[0]["requests"], 12);
    assert!(rows[0]["day"].as_str().unwrap().len() == 10 && rows[0].get("consumer").is_none());
    let csv = admin_get(&b, "/admin/usage?group=model&format=csv", true).await;
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "consumer,model,day,hour,requests,prompt_tokens,completion_tokens,cached_tokens,cost_USD"
    );
    let priced: Vec<&str> = lines.find(|l| l.contains(",priced,")).unwrap().split(',').collect();
    assert_eq!(priced[4], "9");
    // Bad parameters and a missing token are refused plainly.
    let bad = admin_get(&a, "/admin/usage?from=2026-02-30", true).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "invalid_value");
    assert_eq!(admin_get(&a, "/admin/usage?group=tenant", true).await.status, 400);
    assert_eq!(admin_get(&a, "/admin/usage", false).await.status, 401);
}
