//! The gateway's series as an operator reads them, driven over HTTP: tokens and cost by
//! consumer and model, limit refusals by rule and consumer, the gateway's own overhead; label
//! sets that stay bounded whatever clients send; and an exposition that `promtool check metrics`
//! accepts.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly on setup errors")]

mod common;

use bytes::Bytes;
use common::*;
use tollgate::key_hash::{format_hash, hash_key};

const KEY_A: &str = "tg-observability-key-of-team-a-0001";
const KEY_B: &str = "tg-observability-key-of-team-b-0001";

/// Model `priced` (input 2.5, output 10, cached 1.25 per million, USD) and `free` (no price);
/// consumers `team-a` and `team-b`; `team-b` may send one request a minute.
fn config(mock: &str) -> String {
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

async fn ask(gw: &Gateway, key: &str, model: &str) -> Resp {
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
async fn ask_under(gw: &Gateway, model: &str, traceparent: &str) -> Resp {
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

async fn exposition(gw: &Gateway) -> String {
    request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text()
}

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

/// An OTLP/HTTP receiver on loopback: every JSON body posted to it, in order.
struct Collector {
    addr: std::net::SocketAddr,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// Posts answered 503 (`Retry-After: 0`) so far.
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Collector {
    async fn start() -> Collector {
        Collector::refusing(0).await
    }

    /// A collector that answers its first `refuse` posts 503, as an overloaded one does.
    async fn refusing(refuse: usize) -> Collector {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, counted) = (bodies.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (kept, counted) = (kept.clone(), counted.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            if counted.fetch_add(1, Ordering::SeqCst) < refuse {
                                let busy =
                                    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n";
                                let _ = s.write_all(busy).await;
                                return;
                            }
                            counted.fetch_sub(1, Ordering::SeqCst);
                            let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                            kept.lock().unwrap().push(body);
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
                            return;
                        }
                    }
                });
            }
        });
        Collector { addr, bodies, refused }
    }

    /// The spans of trace `trace_id` received so far.
    fn spans(&self, trace_id: &str) -> Vec<serde_json::Value> {
        let bodies = self.bodies.lock().unwrap();
        let mut out = Vec::new();
        for b in bodies.iter() {
            for rs in b["resourceSpans"].as_array().into_iter().flatten() {
                assert_eq!(
                    rs["resource"]["attributes"][0]["value"]["stringValue"],
                    "gateway-under-test"
                );
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        if span["traceId"] == trace_id {
                            out.push(span.clone());
                        }
                    }
                }
            }
        }
        out
    }
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let found = span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key);
    found.map_or(&serde_json::Value::Null, |a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_the_collector_with_genai_attributes_under_the_clients_parent() {
    let mock = start_mock("mock").await;
    let collector = Collector::start().await;
    let endpoint = format!("http://{}", collector.addr);
    let flags = [
        "--otlp-endpoint",
        endpoint.as_str(),
        "--otel-service-name",
        "gateway-under-test",
        "--trace-sample",
        "0",
    ];
    let gw = Gateway::start_with(&config(&mock.base_url()), &flags).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = ask_under(&gw, "priced", &format!("00-{trace_id}-{parent}-01")).await;
    assert_eq!(r.status, 200);
    let usage = r.json()["usage"].clone();

    // The provider's parent is the attempt's span, in the same trace.
    let sent = mock
        .requests()
        .last()
        .unwrap()
        .header("traceparent")
        .unwrap()
        .to_string();
    assert!(
        sent.starts_with(&format!("00-{trace_id}-")) && sent.ends_with("-01"),
        "{sent}"
    );
    let attempt_id = &sent[36..52];
    assert_ne!(attempt_id, parent);

    let arrived = eventually(std::time::Duration::from_secs(5), || async {
        collector.spans(trace_id).len() >= 4
    })
    .await;
    assert!(arrived, "spans: {:?}", collector.bodies.lock().unwrap());
    let spans = collector.spans(trace_id);
    let root = spans.iter().find(|s| s["parentSpanId"] == parent).unwrap();
    assert_eq!(root["name"], "chat priced");
    assert_eq!(root["kind"], 2);
    assert_eq!(attr(root, "gen_ai.operation.name")["stringValue"], "chat");
    assert_eq!(attr(root, "gen_ai.request.model")["stringValue"], "priced");
    assert_eq!(attr(root, "gen_ai.response.model")["stringValue"], "priced");
    assert_eq!(attr(root, "tollgate.consumer")["stringValue"], "team-a");
    assert_eq!(attr(root, "tollgate.request_id")["stringValue"], r.request_id());
    assert_eq!(attr(root, "http.response.status_code")["intValue"], "200");
    let input = usage["prompt_tokens"].as_u64().unwrap().to_string();
    let output = usage["completion_tokens"].as_u64().unwrap().to_string();
    assert_eq!(attr(root, "gen_ai.usage.input_tokens")["intValue"], input.as_str());
    assert_eq!(attr(root, "gen_ai.usage.output_tokens")["intValue"], output.as_str());
    let root_id = root["spanId"].as_str().unwrap();
    let attempt = spans.iter().find(|s| s["spanId"] == attempt_id).unwrap();
    assert_eq!(attempt["parentSpanId"], root_id);
    assert_eq!(attempt["kind"], 3);
    assert_eq!(attr(attempt, "gen_ai.provider.name")["stringValue"], "mock");
    for stage in ["authenticate", "read_body", "admission", "guardrails"] {
        let s = spans
            .iter()
            .find(|s| s["name"] == stage)
            .unwrap_or_else(|| panic!("no {stage} span: {spans:?}"));
        assert_eq!(s["parentSpanId"], root_id);
    }
    // Every child lies within the root.
    let ns = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap().parse::<u128>().unwrap();
    for s in &spans {
        assert!(ns(s, "startTimeUnixNano") >= ns(root, "startTimeUnixNano"), "{s}");
        assert!(ns(s, "endTimeUnixNano") <= ns(root, "endTimeUnixNano"), "{s}");
    }

    // Sampling 0 and no traceparent: nothing exported. A client's unsampled traceparent
    // passes through to the provider untouched.
    let before = collector.bodies.lock().unwrap().len();
    assert_eq!(ask(&gw, KEY_A, "priced").await.status, 200);
    let unsampled = format!("00-{trace_id}-{parent}-00");
    let r = ask_under(&gw, "priced", &unsampled).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        mock.requests().last().unwrap().header("traceparent"),
        Some(unsampled.as_str())
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(collector.bodies.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_collector_refuses_for_a_while_is_posted_again() {
    let mock = start_mock("mock").await;
    let collector = Collector::refusing(2).await;
    let endpoint = format!("http://{}", collector.addr);
    let flags = [
        "--otlp-endpoint",
        endpoint.as_str(),
        "--otel-service-name",
        "gateway-under-test",
    ];
    let gw = Gateway::start_with(&config(&mock.base_url()), &flags).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let r = ask_under(&gw, "free", &format!("00-{trace_id}-b7ad6b7169203331-01")).await;
    assert_eq!(r.status, 200);
    let arrived = eventually(std::time::Duration::from_secs(10), || async {
        !collector.spans(trace_id).is_empty()
    })
    .await;
    assert!(arrived, "the batch was not posted again after two 503s");
    assert_eq!(collector.refused.load(std::sync::atomic::Ordering::SeqCst), 2);
    let retried = metric(&gw, r#"tollgate_trace_exports_total{result="retried"}"#).await;
    assert_eq!(retried, Some(2.0));
    assert_eq!(
        metric(&gw, r#"tollgate_trace_exports_total{result="failed"}"#).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_changes_nothing_for_clients() {
    let mock = start_mock("mock").await;
    // A port nothing listens on.
    let dead = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let flags = ["--otlp-traces-endpoint", dead.as_str(), "--trace-queue", "8"];
    let gw = Gateway::start_with(&config(&mock.base_url()), &flags).await;
    for _ in 0..40 {
        let r = ask(&gw, KEY_A, "priced").await;
        assert_eq!(r.status, 200);
        assert!(r.json()["choices"][0]["message"]["content"].as_str().is_some());
    }
    let failed = eventually(std::time::Duration::from_secs(5), || async {
        metric(&gw, r#"tollgate_trace_exports_total{result="failed"}"#)
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert!(failed, "the failed posts are counted");
    drop(gw);

    // A collector that takes the connection and never answers: posts wait out their timeout,
    // the queue fills, spans are dropped (counted), and clients see nothing of it.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}/v1/traces", hole.local_addr().unwrap());
    let flags = [
        "--otlp-traces-endpoint",
        silent.as_str(),
        "--trace-queue",
        "8",
        "--trace-batch",
        "8",
    ];
    let gw = Gateway::start_with(&config(&mock.base_url()), &flags).await;
    for _ in 0..60 {
        assert_eq!(ask(&gw, KEY_A, "priced").await.status, 200);
    }
    let dropped = metric(&gw, "tollgate_trace_spans_dropped_total").await.unwrap();
    assert!(dropped > 0.0, "spans beyond the queue are dropped and counted");
    drop(hole);
}

/// The JSON lines of `name` and its rotated files (`name.1`, `name.2`, ...) in `dir`; every
/// line must parse (no line split by a rotation).
fn lines_of(dir: &std::path::Path, name: &str) -> (Vec<serde_json::Value>, usize) {
    let mut out = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if file != name && !file.starts_with(&format!("{name}.")) {
            continue;
        }
        files += 1;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: {e}: {line}")));
        }
    }
    (out, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_audit_lines_go_to_their_own_files_and_rotation_loses_no_line() {
    let mock = start_mock("mock").await;
    let dir = temp_dir();
    let (access, audit) = (dir.join("access.log"), dir.join("audit.log"));
    let (access_s, audit_s) = (access.display().to_string(), audit.display().to_string());
    let flags = [
        "--access-log",
        access_s.as_str(),
        "--audit-log",
        audit_s.as_str(),
        "--log-rotate-kb",
        "4",
        "--log-keep",
        "10000",
    ];
    let gw = Gateway::start_with(&config(&mock.base_url()), &flags).await;
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let r = ask(&gw, KEY_A, "priced").await;
        assert_eq!(r.status, 200);
        ids.insert(r.request_id());
    }
    let all_written = eventually(std::time::Duration::from_secs(10), || async {
        lines_of(&dir, "access.log").0.len() >= 200 && lines_of(&dir, "audit.log").0.len() >= 200
    })
    .await;
    assert!(all_written);
    let (access_lines, access_files) = lines_of(&dir, "access.log");
    let (audit_lines, audit_files) = lines_of(&dir, "audit.log");
    assert!(
        access_files > 2 && audit_files > 2,
        "rotated: {access_files} and {audit_files} files"
    );
    let of = |lines: &[serde_json::Value], message: &str| -> Vec<String> {
        let mut v: Vec<String> = lines
            .iter()
            .filter(|l| l["message"] == message && l["model"] == "priced")
            .map(|l| l["request_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let expected: Vec<String> = ids.iter().cloned().collect();
    assert_eq!(
        of(&access_lines, "access"),
        expected,
        "each access line once, none lost"
    );
    assert_eq!(of(&audit_lines, "audit"), expected, "each audit line once, none lost");
    assert!(access_lines.iter().all(|l| l["message"] == "access"));
    assert!(audit_lines.iter().all(|l| l["message"] == "audit"));
    assert!(!gw.log().contains("\"message\":\"access\""), "no access line on stdout");
}

async fn admin_get(gw: &Gateway, path: &str, token: bool) -> Resp {
    let auth = [("authorization", "Bearer admin-token-for-tests")];
    request(gw.admin, "GET", path, if token { &auth[..] } else { &[] }, Bytes::new())
        .await
        .unwrap()
}

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

/// Debian's Chromium, headless (`scripts/setup.sh` installs it): `args` then `url`; stdout.
fn chromium(args: &[&str], url: &str) -> String {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "chromium is missing: run scripts/setup.sh (Debian's chromium package)"
    );
    let profile = temp_dir();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in `dom`.
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\">")).unwrap_or_else(|| panic!("no #{id}")) + id.len() + 6;
    &dom[start..start + dom[start..].find('<').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_figures_in_a_headless_browser() {
    let mock = start_mock("mock").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;
    for (key, model) in [
        (KEY_A, "priced"),
        (KEY_A, "priced"),
        (KEY_A, "free"),
        (KEY_B, "priced"),
        (KEY_B, "priced"),
    ] {
        ask(&gw, key, model).await;
    }
    // The data needs the admin token; the page itself holds none.
    assert_eq!(admin_get(&gw, "/admin/dashboard.json", false).await.status, 401);
    assert_eq!(admin_get(&gw, "/dashboard", false).await.status, 200);

    // What /metrics says was answered (the 5 requests, and the harness's readiness probe).
    let requests: f64 = exposition(&gw)
        .await
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(requests >= 5.0);
    let url = format!("http://{}/dashboard#token=admin-token-for-tests", gw.admin);
    let dom = tokio::task::spawn_blocking(move || chromium(&["--virtual-time-budget=4000", "--dump-dom"], &url))
        .await
        .unwrap();
    assert_eq!(element_text(&dom, "requests-total"), requests.to_string(), "{dom}");
    assert_eq!(element_text(&dom, "rejections-total"), "1");
    assert_eq!(element_text(&dom, "errors-total"), "1");
    assert_ne!(element_text(&dom, "tokens-total"), "0");
    assert!(element_text(&dom, "cost-total").ends_with("USD"), "{dom}");
    assert!(element_text(&dom, "latency").ends_with(" ms"), "{dom}");
    // The page's first read has no earlier one to take a window from.
    assert!(dom.contains("<span class=\"window\">since start</span>"), "{dom}");
    let consumers = &dom[dom.find("id=\"consumers\"").unwrap()..dom.find("id=\"usage\"").unwrap()];
    assert!(
        consumers.contains("<td class=\"\">team-a</td><td class=\"n\">3</td>"),
        "{consumers}"
    );
    let usage = &dom[dom.find("id=\"usage\"").unwrap()..];
    assert!(
        usage.contains("team-a") && usage.contains("priced") && usage.contains("team-b"),
        "{usage}"
    );
    let upstreams = &dom[dom.find("id=\"upstreams\"").unwrap()..];
    assert!(upstreams.contains("<td class=\"\">mock</td>"), "{upstreams}");

    // A screenshot renders (docs/dashboard.png is one).
    let shot = temp_dir().join("dashboard.png");
    let arg = format!("--screenshot={}", shot.display());
    let url = format!("http://{}/dashboard#token=admin-token-for-tests", gw.admin);
    tokio::task::spawn_blocking(move || {
        chromium(&["--virtual-time-budget=4000", "--window-size=1280,1500", &arg], &url)
    })
    .await
    .unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}

/// `team-b` logs its conversations (and may send 100 requests a minute); `mask-email` masks
/// e-mail addresses in prompts, `no-cards` blocks prompts with card numbers; answers are cached.
fn conversation_config(mock: &str) -> String {
    let cfg = config(mock)
        .replace(
            "[[consumers]]\nname = \"team-b\"",
            "[[guardrails]]\nname = \"mask-email\"\ndetect = \"pii\"\nkinds = [\"email\"]\naction = \"mask\"\n\n\
             [[guardrails]]\nname = \"no-cards\"\ndetect = \"pii\"\nkinds = [\"card\"]\naction = \"block\"\n\n\
             [cache]\n\n\
             [[consumers]]\nname = \"team-b\"\nlog_prompts = true\nlog_answers = true",
        )
        .replace("requests = 1\n", "requests = 100\n");
    assert!(cfg.contains("log_answers = true") && cfg.contains("requests = 100"));
    cfg
}

async fn converse(gw: &Gateway, key: &str, prompt: &str, stream: bool, answer: &[&str]) -> (Resp, serde_json::Value) {
    let body =
        serde_json::json!({"model": "free", "stream": stream, "messages": [{"role": "user", "content": prompt}]});
    let r = gw
        .post(
            "/v1/chat/completions",
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-mock-reply", &mock_reply(answer)),
            ],
            &body.to_string(),
        )
        .await;
    let audit = gw.log_line("audit", &r.request_id()).await;
    (r, audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_logged_redacted_by_the_maskers() {
    let mock = start_mock("mock").await;
    let dir = models_dir();
    let gw = Gateway::start_with(&conversation_config(&mock.base_url()), &["--models-dir", &dir]).await;
    let answer = ["Sure: I wrote to jane.doe@", "example.com and ", "bob@example.org."];

    // A JSON answer: the prompt as the provider got it, the answer as the client got it (no
    // output rule: the client reads the addresses), both redacted in the log.
    let (r, audit) = converse(
        &gw,
        KEY_B,
        "Write to jane.doe@example.com about the tides",
        false,
        &answer,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("bob@example.org"), "{}", r.text());
    assert!(!mock.requests().last().unwrap().body.contains("jane.doe"));
    let logged = audit["request_body"].as_str().unwrap();
    assert!(logged.contains("Write to [EMAIL] about the tides"), "{logged}");
    assert!(!logged.contains("jane.doe"), "{logged}");
    assert_eq!(audit["answer"], "Sure: I wrote to [EMAIL] and [EMAIL].");

    // A stream: its text, whole, redacted across the chunks an address was cut into.
    let (r, audit) = converse(&gw, KEY_B, "And to the harbour master?", true, &answer).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("data: [DONE]"));
    assert_eq!(audit["answer"], "Sure: I wrote to [EMAIL] and [EMAIL].");
    assert!(audit["request_body"].as_str().unwrap().contains("harbour master"));

    // The same question again: answered from the cache, logged the same way.
    let (r, audit) = converse(&gw, KEY_B, "And to the harbour master?", false, &["not asked"]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-cache"), Some("hit"), "{:?}", r.headers);
    assert_eq!(audit["answer"], "Sure: I wrote to [EMAIL] and [EMAIL].");
    gw.access_line(&r.request_id()).await;
    let hits = r#"tollgate_consumer_requests_total{class="2xx",consumer="team-b",model="free",source="cache"}"#;
    assert_eq!(metric(&gw, hits).await, Some(1.0));

    // A prompt blocked for the card it carries is logged, the card number redacted.
    let card = "4111 1111 1111 1111";
    let (r, audit) = converse(&gw, KEY_B, &format!("Charge {card} for the boat"), false, &answer).await;
    assert_eq!(r.status, 400);
    assert_eq!(audit["decision"], "denied");
    let logged = audit["request_body"].as_str().unwrap();
    assert!(logged.contains("Charge [CARD] for the boat"), "{logged}");
    assert!(audit.get("answer").is_none(), "{audit}");

    // A consumer that does not log conversations: neither side in its audit line.
    let (r, audit) = converse(&gw, KEY_A, "Write to jane.doe@example.com", false, &answer).await;
    assert_eq!(r.status, 200);
    assert!(
        audit.get("request_body").is_none() && audit.get("answer").is_none(),
        "{audit}"
    );
    assert!(!gw.log().contains("jane.doe"), "an address reached the log");
}
