//! Spans at an OTLP/HTTP receiver; retries; a dead collector.

use crate::common::*;
use crate::support::*;

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
