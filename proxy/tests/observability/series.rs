//! Series booked per consumer and model, bounded label sets, `promtool check metrics`.

use bytes::Bytes;

use crate::common::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_cost_refusals_and_overhead_are_booked_per_consumer_and_model() {
    let mock = start_mock("mock").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;

    let mut cost = 0.0;
    let mut tokens = [0u64; 2];
    for _ in 0..3 {
        let r = ask(&gw, KEY_A, "priced").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let u = &r.json()["usage"];
        let (p, c) = (
            u["prompt_tokens"].as_u64().unwrap(),
            u["completion_tokens"].as_u64().unwrap(),
        );
        tokens[0] += p;
        tokens[1] += c;
        cost += (p as f64 * 2.5 + c as f64 * 10.0) / 1e6;
        let line = gw.access_line(&r.request_id()).await;
        let booked = line["cost"].as_f64().unwrap();
        assert!(
            (booked - (p as f64 * 2.5 + c as f64 * 10.0) / 1e6).abs() < 1e-9,
            "{line}"
        );
        assert_eq!(line["currency"], "USD");
        let upstream = line["upstream_ms"].as_f64().unwrap();
        assert!(
            upstream > 0.0 && upstream <= line["latency_ms"].as_f64().unwrap(),
            "{line}"
        );
    }
    let r = ask(&gw, KEY_A, "free").await;
    assert_eq!(r.status, 200);
    assert!(gw.access_line(&r.request_id()).await.get("cost").is_none());

    let tokens_of =
        |kind: &str| format!(r#"tollgate_consumer_tokens_total{{consumer="team-a",kind="{kind}",model="priced"}}"#);
    assert_eq!(metric(&gw, &tokens_of("prompt")).await, Some(tokens[0] as f64));
    assert_eq!(metric(&gw, &tokens_of("completion")).await, Some(tokens[1] as f64));
    let booked = metric(
        &gw,
        r#"tollgate_cost_total{consumer="team-a",currency="USD",model="priced"}"#,
    )
    .await
    .unwrap();
    assert!((booked - cost).abs() < 1e-9, "{booked} vs {cost}");
    assert!(exposition(&gw)
        .await
        .lines()
        .all(|l| !l.starts_with("tollgate_cost_total{") || !l.contains("\"free\"")));
    assert!(
        metric(
            &gw,
            r#"tollgate_consumer_tokens_total{consumer="team-a",kind="prompt",model="free"}"#
        )
        .await
        .unwrap()
            > 0.0
    );

    // team-b's second request in the minute is refused by its rule.
    let answered = ask(&gw, KEY_B, "priced").await;
    assert_eq!(answered.status, 200);
    let second = ask(&gw, KEY_B, "priced").await;
    assert_eq!(second.status, 429);
    // Its series are booked when it ends, just after its answer: its access line says so.
    gw.access_line(&answered.request_id()).await;
    gw.access_line(&second.request_id()).await;
    let refused = r#"tollgate_limit_rejections_total{consumer="team-b",kind="requests",rule="b-per-minute"}"#;
    assert_eq!(metric(&gw, refused).await, Some(1.0));

    // Requests, errors and latency by consumer: who got what, answered by whom.
    for (consumer, model, class, source, n) in [
        ("team-a", "priced", "2xx", "provider", 3.0),
        ("team-a", "free", "2xx", "provider", 1.0),
        ("team-b", "priced", "2xx", "provider", 1.0),
        ("team-b", "priced", "4xx", "gateway", 1.0),
    ] {
        let series = format!(
            r#"tollgate_consumer_requests_total{{class="{class}",consumer="{consumer}",model="{model}",source="{source}"}}"#
        );
        assert_eq!(metric(&gw, &series).await, Some(n), "{series}");
    }
    let timed = |family: &str, consumer: &str| format!(r#"{family}_count{{consumer="{consumer}"}}"#);
    assert_eq!(
        metric(&gw, &timed("tollgate_consumer_request_duration_seconds", "team-a")).await,
        Some(4.0)
    );
    // A refusal has a latency, and no first token.
    assert_eq!(
        metric(&gw, &timed("tollgate_consumer_request_duration_seconds", "team-b")).await,
        Some(2.0)
    );
    assert_eq!(
        metric(&gw, &timed("tollgate_consumer_ttft_seconds", "team-b")).await,
        Some(1.0)
    );

    // By the target that answered: 3 of team-a and 1 of team-b on `priced` (the refusal never
    // reached one).
    let target = r#"tollgate_target_requests_total{provider="mock",status="200",target="priced"}"#;
    assert_eq!(metric(&gw, target).await, Some(4.0));
    let timed = r#"tollgate_target_request_duration_seconds_count{provider="mock",target="priced"}"#;
    assert_eq!(metric(&gw, timed).await, Some(4.0));
    // The overhead of every forwarded request (5 answered for team-a and team-b on `priced`).
    assert_eq!(
        metric(&gw, r#"tollgate_overhead_seconds_count{model="priced"}"#).await,
        Some(4.0)
    );
    let sum = metric(&gw, r#"tollgate_overhead_seconds_sum{model="priced"}"#)
        .await
        .unwrap();
    let total = metric(&gw, r#"tollgate_request_duration_seconds_sum{model="priced"}"#)
        .await
        .unwrap();
    assert!(sum > 0.0 && sum < total, "overhead {sum} of {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_stay_bounded_whatever_clients_send() {
    let mock = start_mock("mock").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let mut secrets = Vec::new();
    let mut send = |i: usize| {
        let model = format!("model-{i}-{}", unique("m"));
        // A third with a known key (so the random models reach routing), the rest unknown.
        let key = if i.is_multiple_of(3) {
            KEY_A.to_string()
        } else {
            format!("tg-random-key-{}", unique("k"))
        };
        let ip = format!("10.{}.{}.{}", i % 250, (i / 250) % 250, i % 7);
        secrets.push(model.clone());
        if key != KEY_A {
            secrets.push(key.clone());
        }
        secrets.push(ip.clone());
        let addr = gw.addr;
        async move {
            let key = key.as_str();
            let body = serde_json::json!({"model": if i.is_multiple_of(2) { model.as_str() } else { "priced" }, "messages": [{"role": "user", "content": "hi"}]});
            let headers = [
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {key}")),
                ("x-forwarded-for", ip.as_str()),
                ("x-user", key),
            ];
            request(
                addr,
                "POST",
                "/v1/chat/completions",
                &headers,
                Bytes::from(body.to_string()),
            )
            .await
            .unwrap()
            .status
        }
    };
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..20 {
        statuses.insert(send(i).await);
    }
    let after_20 = series(&exposition(&gw).await);
    for i in 20..200 {
        statuses.insert(send(i).await);
    }
    // Answered, refused for the key, and unknown models: each path labels what it records.
    assert!(statuses.is_superset(&[200, 401, 404].into()), "{statuses:?}");
    let text = exposition(&gw).await;
    assert_eq!(
        series(&text),
        after_20,
        "180 more requests with new models, keys and addresses added series"
    );
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s} became a label");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    let promtool = std::path::Path::new("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "promtool is missing: run scripts/setup.sh (Debian's prometheus package)"
    );
    let mock = start_mock("mock").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;
    for key in [KEY_A, KEY_B, KEY_B, "tg-unknown"] {
        ask(&gw, key, "priced").await;
    }
    ask(&gw, KEY_A, "no-such-model").await;
    let text = exposition(&gw).await;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{said}");
}
