//! Routing, rewriting, streaming and fallback, over real sockets: the real gateway binary in
//! front of mock upstreams.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use bytes::Bytes;
use common::*;
use tollgate_loadtest::mock::MockConfig;

fn two_upstreams(a: &str, b: &str) -> String {
    format!(
        "{}{}[[models]]\nname = \"model-a\"\ntargets = [{{ provider = \"a\", model = \"provider-a-model\" }}]\n\n\
         [[models]]\nname = \"model-b\"\ntargets = [{{ provider = \"b\", model = \"provider-b-model\" }}]\n",
        provider("a", a),
        provider("b", b)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_model_to_two_upstreams_rewriting_model_and_injecting_the_provider_key() {
    let a = start_mock("upstream-a").await;
    let b = start_mock("upstream-b").await;
    let gw = Gateway::start(&two_upstreams(&a.base_url(), &b.base_url())).await;

    let client_headers = [
        ("authorization", "Bearer client-key-must-not-leak"),
        ("x-api-key", "client-key-2"),
        ("api-key", "client-key-3"),
        ("x-request-id", "req-routing-1"),
    ];
    let ra = gw
        .post(
            "/v1/chat/completions",
            &client_headers,
            r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(ra.status, 200, "{}", ra.text());
    assert_eq!(ra.header("x-mock-upstream"), Some("upstream-a"));
    assert_eq!(ra.header("x-request-id"), Some("req-routing-1"));
    let rb = gw
        .chat(r#"{"model":"model-b","messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(rb.header("x-mock-upstream"), Some("upstream-b"));

    let seen = a.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.json()["model"], "provider-a-model");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(req.header("api-key"), None);
    assert_eq!(req.header("x-request-id"), Some("req-routing-1"));
    assert!(
        !req.headers.values().any(|v| v.contains("client-key")),
        "a client key reached the provider"
    );
    assert_eq!(b.requests()[0].json()["model"], "provider-b-model");

    let models = request(gw.addr, "GET", "/v1/models", &[], Bytes::new())
        .await
        .unwrap()
        .json();
    let ids = list_ids(&models);
    assert_eq!(ids, ["model-a", "model-b"]);
    assert_eq!(models["object"], "list");

    let line = gw.access_line("req-routing-1").await;
    assert_eq!(line["model"], "model-a");
    assert_eq!(line["target_model"], "provider-a-model");
    assert_eq!(line["provider"], "a");
    assert_eq!(line["status"], 200);
    assert_eq!(line["usage_known"], true);
    let log = gw.log();
    assert!(
        !log.contains(PROVIDER_KEY) && !log.contains("client-key"),
        "a secret reached the log"
    );
}

/// The mock's answer to `body` sent directly, for byte comparison.
async fn direct(mock: &tollgate_loadtest::mock::MockHandle, body: &str) -> Bytes {
    request(
        mock.addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await
    .unwrap()
    .body
}

fn strip_usage_event(stream: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(stream.to_vec()).unwrap();
    text.split_inclusive("\n\n")
        .filter(|ev| !ev.contains("\"choices\":[]"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_sse_bodies_are_byte_identical_to_the_upstream_apart_from_the_stripped_usage_event() {
    let a = start_mock("upstream-a").await;
    let b = start_mock("upstream-b").await;
    let gw = Gateway::start(&two_upstreams(&a.base_url(), &b.base_url())).await;

    // JSON
    let via = gw
        .chat(r#"{"model":"model-a","messages":[{"role":"user","content":"hello"}]}"#)
        .await;
    let want = direct(
        &a,
        r#"{"model":"provider-a-model","messages":[{"role":"user","content":"hello"}]}"#,
    )
    .await;
    assert_eq!(via.body, want);

    // SSE, client asked for usage: identical, usage event included.
    let via = gw
        .chat(r#"{"model":"model-a","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    let want = direct(
        &a,
        r#"{"model":"provider-a-model","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(via.header("content-type"), Some("text/event-stream"));
    assert_eq!(via.body, want);
    assert!(via.text().contains("\"choices\":[]"));
    // A stream the provider flushed at once is sent whole, with its length.
    assert_eq!(via.header("content-length"), Some(via.body.len().to_string().as_str()));

    // SSE, client did not ask: the gateway asked upstream for usage and removed that event only.
    let via = gw
        .post(
            "/v1/chat/completions",
            // Events 30 ms apart: each must reach the client as it comes, not at the end.
            &[("x-request-id", "req-sse-strip"), ("x-mock-chunk-delay-ms", "30")],
            r#"{"model":"model-a","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(
        a.requests().last().unwrap().json()["stream_options"]["include_usage"],
        true
    );
    let upstream_sent = direct(
        &a,
        r#"{"model":"provider-a-model","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(via.body, strip_usage_event(&upstream_sent));
    assert!(!via.text().contains("\"choices\":[]"));
    assert!(via.text().ends_with("data: [DONE]\n\n"));
    assert!(
        via.frames >= 6,
        "paced events were not relayed one by one: {} frames",
        via.frames
    );
    assert_eq!(via.header("transfer-encoding"), Some("chunked"));
    let line = gw.access_line("req-sse-strip").await;
    assert_eq!(line["usage_known"], true);
    assert_eq!(line["completion_tokens"], 8);
    assert!(line["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_read_from_streams_cut_into_arbitrary_pieces_and_from_content_chunks() {
    let a = start_mock("upstream-a").await;
    let gw = Gateway::start(&two_upstreams(&a.base_url(), &a.base_url())).await;
    let body = r#"{"model":"model-a","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let whole = gw.chat(body).await.body;
    for fragment in ["1", "2", "3", "7", "13", "64"] {
        let id = format!("req-fragment-{fragment}");
        let r = gw
            .post(
                "/v1/chat/completions",
                &[("x-mock-fragment", fragment), ("x-request-id", &id)],
                body,
            )
            .await;
        assert_eq!(r.body, whole, "fragment {fragment}");
        let line = gw.access_line(&id).await;
        assert_eq!(line["completion_tokens"], 8, "fragment {fragment}");
        assert_eq!(line["usage_known"], true);
    }
    // Usage on the last content chunk, no total_tokens-only event: kept (it carries content) and read.
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-usage-on-content", "1"), ("x-request-id", "req-usage-content")],
            body,
        )
        .await;
    assert!(r.text().contains("\"usage\":{"));
    let line = gw.access_line("req-usage-content").await;
    assert_eq!(line["completion_tokens"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_falls_back_to_the_next_one_for_small_and_large_bodies() {
    let broken = start_mock_with(MockConfig {
        name: "broken".into(),
        error_status: Some(503),
        error_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let healthy = start_mock("healthy").await;
    let closed_port = free_port();
    let config = format!(
        "{}{}{}[[models]]\nname = \"m\"\ntargets = [\n  {{ provider = \"broken\", model = \"first\", weight = 1 }},\n  \
         {{ provider = \"healthy\", model = \"second\", weight = 0 }},\n]\n\n\
         [[models]]\nname = \"dead-first\"\ntargets = [\n  {{ provider = \"closed\", weight = 1 }},\n  {{ provider = \"healthy\", model = \"second\", weight = 0 }},\n]\n",
        provider("broken", &broken.base_url()),
        provider("healthy", &healthy.base_url()),
        provider("closed", &format!("http://127.0.0.1:{closed_port}/v1")),
    );
    let gw = Gateway::start(&config).await;

    let small = gw
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "req-fallback-small")],
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(small.status, 200);
    assert_eq!(small.header("x-mock-upstream"), Some("healthy"));
    assert_eq!(gw.access_line("req-fallback-small").await["attempts"], 2);

    // A 2 MiB body: well past Pingora's 64 KiB retry buffer; it must be re-sent whole.
    let big_content = "x".repeat(2 << 20);
    let big = format!(r#"{{"model":"m","stream":true,"messages":[{{"role":"user","content":"{big_content}"}}]}}"#);
    let r = gw
        .post("/v1/chat/completions", &[("x-request-id", "req-fallback-big")], &big)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-upstream"), Some("healthy"));
    let got = healthy.requests().last().unwrap().json();
    assert_eq!(got["model"], "second");
    assert_eq!(got["messages"][0]["content"].as_str().unwrap().len(), big_content.len());
    assert_eq!(
        broken.requests().last().unwrap().body.len(),
        healthy.requests().last().unwrap().body.len() - 1
    );
    let line = gw.access_line("req-fallback-big").await;
    assert_eq!(line["attempts"], 2);
    assert_eq!(line["usage_known"], true);

    // Connection refused on the first target: fall back as well.
    let r = gw
        .chat(r#"{"model":"dead-first","messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-upstream"), Some("healthy"));

    // The last target's own error reaches the client unchanged when every target fails.
    let only_broken = format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"broken\" }}]\n",
        provider("broken", &broken.base_url())
    );
    let gw2 = Gateway::start(&only_broken).await;
    let r = gw2
        .chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_private_ca() {
    let tls = start_tls_mock("tls-upstream").await;
    let config = format!(
        "[[providers]]\nname = \"secure\"\nkind = \"openai\"\nbase_url = \"https://127.0.0.1:{}/v1\"\napi_key = \"env:TEST_PROVIDER_KEY\"\nca_file = \"{}\"\n\n\
         [[models]]\nname = \"m\"\ntargets = [{{ provider = \"secure\", model = \"over-tls\" }}]\n",
        tls.addr.port(),
        fixture("ca.pem").display()
    );
    let gw = Gateway::start(&config).await;
    let r = gw
        .chat(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    let seen = tls.requests();
    assert_eq!(seen[0].json()["model"], "over-tls");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );

    // Without the private CA the certificate is not trusted: no silent plaintext, a 502.
    let untrusted = config.replace(&format!("ca_file = \"{}\"\n", fixture("ca.pem").display()), "");
    let gw2 = Gateway::start(&untrusted).await;
    assert_eq!(
        gw2.chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
            .await
            .status,
        502
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_embeddings_route_like_chat() {
    let a = start_mock("upstream-a").await;
    let gw = Gateway::start(&two_upstreams(&a.base_url(), &a.base_url())).await;
    let r = gw
        .post(
            "/v1/completions",
            &[("x-request-id", "req-cmpl")],
            r#"{"model":"model-a","prompt":"hi","stream":true}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("text_completion"));
    assert!(!r.text().contains("\"choices\":[]"));
    assert_eq!(gw.access_line("req-cmpl").await["completion_tokens"], 8);
    let r = gw
        .post(
            "/v1/embeddings",
            &[("x-request-id", "req-emb")],
            r#"{"model":"model-b","input":"hello"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.requests().last().unwrap().path, "/v1/embeddings");
    assert_eq!(a.requests().last().unwrap().json()["model"], "provider-b-model");
    assert!(gw.access_line("req-emb").await["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let a = start_mock("upstream-a").await;
    let gw = Gateway::start_with(&two_upstreams(&a.base_url(), &a.base_url()), &["--threads", "1"]).await;
    for i in 0..20 {
        let stream = if i % 2 == 0 { "true" } else { "false" };
        let r = gw
            .chat(&format!(
                r#"{{"model":"model-a","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
            ))
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(a.served(), 20);
    assert!(
        a.connections() <= 2,
        "20 sequential requests opened {} upstream connections",
        a.connections()
    );
}

/// An upstream that answers one request per connection, keep-alive by its headers, then closes
/// the connection at once (as a provider with a very short idle timeout does). Counts connections.
async fn answer_once_then_close() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // The request is small: its head and body arrive before the blank line's body ends.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (base, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_the_provider_closed_is_retried_on_a_fresh_one() {
    let (base, accepted) = answer_once_then_close().await;
    let gw = Gateway::start_with(&two_upstreams(&base, &base), &["--threads", "1"]).await;
    for _ in 0..5 {
        let r = gw
            .chat(r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "hi");
    }
    // Every request but the first found the previous connection closed by the provider.
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let a = start_mock("upstream-a").await;
    let gw = Gateway::start_with(
        &two_upstreams(&a.base_url(), &a.base_url()),
        &["--threads", "1", "--upstream-idle-timeout-secs", "1"],
    )
    .await;
    let idle_gauge = |n: u32| {
        let admin = gw.admin;
        async move {
            let m = request(admin, "GET", "/metrics", &[], Bytes::new())
                .await
                .unwrap()
                .text();
            m.contains(&format!("tollgate_upstream_idle_connections {n}\n"))
        }
    };
    for _ in 0..3 {
        assert_eq!(
            gw.chat(r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#)
                .await
                .status,
            200
        );
    }
    assert_eq!(a.connections(), 1);
    let wait = std::time::Duration::from_secs(5);
    assert!(
        eventually(wait, || idle_gauge(1)).await,
        "the kept connection is counted"
    );
    assert!(
        eventually(wait, || idle_gauge(0)).await,
        "and closed once idle for a second"
    );
    // The next request opens a new connection rather than reusing the closed one.
    assert_eq!(
        gw.chat(r#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#)
            .await
            .status,
        200
    );
    assert_eq!(a.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_tokens_by_model() {
    let a = start_mock("upstream-a").await;
    let gw = Gateway::start(&two_upstreams(&a.base_url(), &a.base_url())).await;
    for _ in 0..3 {
        assert_eq!(
            gw.chat(r#"{"model":"model-a","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        gw.chat(r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#)
            .await
            .status,
        404
    );
    let ok = eventually(std::time::Duration::from_secs(5), || async {
        let m = request(gw.admin, "GET", "/metrics", &[], Bytes::new())
            .await
            .unwrap()
            .text();
        m.contains(r#"tollgate_requests_total{model="model-a",status="200"} 3"#)
            && m.contains(r#"tollgate_tokens_total{kind="completion",model="model-a"} 24"#)
            && m.contains(r#"tollgate_requests_total{model="unknown",status="404"} 1"#)
            && m.contains(r#"tollgate_ttft_seconds_count{model="model-a"} 3"#)
            && m.contains(r#"tollgate_upstream_attempts_total{outcome="answered",provider="a"} 3"#)
    })
    .await;
    let m = request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text();
    assert!(ok, "{m}");
    assert!(!m.contains(PROVIDER_KEY));
}
