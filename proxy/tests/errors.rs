//! Every error a client can get is OpenAI-shaped JSON with the right status, and no input
//! breaks the gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on setup errors"
)]

mod common;

use bytes::Bytes;
use common::*;

fn config(mock: &str, stall_port: Option<&str>) -> String {
    let mut c = provider("mock", mock);
    c.push_str(&provider("nowhere", &format!("http://127.0.0.1:{}/v1", free_port())));
    if let Some(s) = stall_port {
        c.push_str(&provider("slow", s));
    }
    c.push_str("[[models]]\nname = \"ok\"\ntargets = [{ provider = \"mock\" }]\n\n");
    c.push_str("[[models]]\nname = \"unreachable\"\ntargets = [{ provider = \"nowhere\" }]\n\n");
    if stall_port.is_some() {
        c.push_str("[[models]]\nname = \"slow\"\ntargets = [{ provider = \"slow\" }]\n");
    }
    c
}

fn assert_openai_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(v["error"]["type"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_the_wrong_shape_are_refused_by_path_before_anything_is_forwarded() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config(&mock.base_url(), None), &[]).await;
    let cases: [(&str, &str, &str, Option<&str>); 9] = [
        ("/v1/chat/completions", r#"[{"model":"ok"}]"#, "invalid_type", None),
        (
            "/v1/chat/completions",
            r#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#,
            "invalid_type",
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"ok","messages":"hi"}"#,
            "invalid_type",
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"ok","messages":[]}"#,
            "invalid_value",
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"ok","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":null},{"role":"wizard","content":"c"}]}"#,
            "invalid_value",
            Some("messages[3].role"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"ok","messages":[{"role":"user","content":[{"type":"text","text":["x"]}]}]}"#,
            "invalid_type",
            Some("messages[0].content[0].text"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"ok","stream":"true","messages":[{"role":"user","content":"hi"}]}"#,
            "invalid_type",
            Some("stream"),
        ),
        (
            "/v1/embeddings",
            r#"{"model":"ok","input":[1,"two"]}"#,
            "invalid_type",
            Some("input[1]"),
        ),
        (
            "/v1/completions",
            r#"{"model":"ok"}"#,
            "missing_required_parameter",
            Some("prompt"),
        ),
    ];
    for (path, body, code, param) in cases {
        let r = gw.post(path, &[], body).await;
        assert_openai_error(&r, 400, code);
        let v = r.json();
        assert_eq!(v["error"]["param"].as_str(), param, "{body}: {v}");
        if let Some(param) = param {
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("'{param}'")),
                "the message names {param}: {message}"
            );
        }
    }
    assert!(mock.requests().is_empty(), "a refused body reached the upstream");
    // A well-shaped body still goes through.
    assert_eq!(
        gw.chat(r#"{"model":"ok","stream":null,"messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}"#)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_with_the_right_status() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config(&mock.base_url(), None), &["--max-body-bytes", "65536"]).await;

    assert_openai_error(&gw.chat(r#"{"model":"ok","messages":[}"#).await, 400, "invalid_json");
    assert_openai_error(&gw.chat("").await, 400, "invalid_json");
    assert_openai_error(&gw.chat("[1,2]").await, 400, "invalid_type");
    assert_openai_error(
        &gw.chat(r#"{"messages":[{"role":"user","content":"hi"}]}"#).await,
        400,
        "missing_model",
    );
    assert_openai_error(&gw.chat(r#"{"model":42}"#).await, 400, "invalid_type");
    assert_openai_error(
        &gw.chat(r#"{"model":"gpt-nope","messages":[{"role":"user","content":"hi"}]}"#)
            .await,
        404,
        "model_not_found",
    );
    assert_openai_error(&gw.post("/v1/unknown", &[], "{}").await, 404, "unknown_url");
    let r = request(gw.addr, "GET", "/v1/chat/completions", &[], Bytes::new())
        .await
        .unwrap();
    assert_openai_error(&r, 405, "method_not_supported");
    let r = request(gw.addr, "DELETE", "/v1/models", &[], Bytes::new())
        .await
        .unwrap();
    assert_openai_error(&r, 405, "method_not_supported");

    // Over the limit, declared by Content-Length ...
    let big = format!(
        r#"{{"model":"ok","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "y".repeat(70_000)
    );
    assert_openai_error(&gw.chat(&big).await, 413, "request_too_large");
    // ... and sent chunked without a length.
    let chunked = tokio_stream_body(big.clone());
    assert_openai_error(&chunked_post(&gw, chunked).await, 413, "request_too_large");
    assert!(mock.requests().is_empty(), "a refused request reached the upstream");

    // Invalid UTF-8 and deep nesting are refused cleanly, and the gateway keeps serving.
    let mut bad_utf8 = br#"{"model":"ok","messages":[{"content":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(br#""}]}"#);
    let r = request(gw.addr, "POST", "/v1/chat/completions", &[], Bytes::from(bad_utf8))
        .await
        .unwrap();
    assert_openai_error(&r, 400, "invalid_json");
    let deep = format!(r#"{{"model":"ok","x":{}{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let status = gw.chat(&deep).await.status;
    assert!(status == 200 || status == 400, "{status}");
    assert_eq!(
        gw.chat(r#"{"model":"ok","messages":[{"role":"user","content":"hi"}]}"#)
            .await
            .status,
        200
    );
}

fn tokio_stream_body(s: String) -> Vec<Bytes> {
    s.into_bytes().chunks(8192).map(Bytes::copy_from_slice).collect()
}

/// POST with `Transfer-Encoding: chunked` (no Content-Length), written by hand.
async fn chunked_post(gw: &Gateway, chunks: Vec<Bytes>) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        // The gateway may answer 413 and close before everything is written.
        if s.write_all(format!("{:x}\r\n", c.len()).as_bytes()).await.is_err()
            || s.write_all(&c).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = http::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    Resp {
        status,
        headers,
        body: Bytes::from(body.to_string()),
        frames: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_and_a_stalled_one_is_504() {
    let mock = start_mock("m").await;
    let slow = start_mock_with(tollgate_loadtest::mock::MockConfig {
        name: "slow".into(),
        stall: std::time::Duration::from_secs(3),
        ..Default::default()
    })
    .await;
    let gw = Gateway::start_with(
        &config(&mock.base_url(), Some(&slow.base_url())),
        &["--upstream-read-timeout-ms", "300"],
    )
    .await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "req-502")],
            r#"{"model":"unreachable","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_openai_error(&r, 502, "upstream_unreachable");
    assert_eq!(r.header("x-request-id"), Some("req-502"));
    assert_openai_error(
        &gw.chat(r#"{"model":"slow","messages":[{"role":"user","content":"hi"}]}"#)
            .await,
        504,
        "upstream_timeout",
    );
    let line = gw.access_line("req-502").await;
    assert_eq!(line["status"], 502);
    assert_eq!(line["outcome"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_the_upstream_is_not_presented_as_complete() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), None)).await;
    let resp = open(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-cut-after", "3"), ("x-request-id", "req-cut")],
        Bytes::from_static(br#"{"model":"ok","stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let (done, body, _) = read_body(resp).await;
    assert!(done.is_err(), "a cut stream ended like a complete one");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("\"delta\"").count(), 3);
    assert!(text.contains("\"code\":\"upstream_cut\""), "no error event: {text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(gw.access_line("req-cut").await["outcome"], "upstream_cut");
    // The gateway keeps serving.
    assert_eq!(
        gw.chat(r#"{"model":"ok","messages":[{"role":"user","content":"hi"}]}"#)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_subcommand_reports_every_problem_and_exits_non_zero() {
    let dir = temp_dir();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"sk-literal\"\n\n\
         [[models]]\nname = \"m\"\ntargets = [{ provider = \"q\" }]\n",
    )
    .unwrap();
    let (passed, err) = check_config(&bad);
    assert!(!passed);
    assert!(err.contains("line 5: providers[0].api_key"), "{err}");
    assert!(
        err.contains("line 9: models[0].targets[0].provider: unknown provider `q`"),
        "{err}"
    );
    assert!(!err.contains("sk-literal"));

    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
    )
    .unwrap();
    let (passed, err) = check_config(&good);
    assert!(passed, "{err}");
}

/// Send a request head with `Expect: 100-continue` and read what the gateway says before any
/// body byte is sent.
async fn head_with_expect(gw: &Gateway, content_length: usize) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\nexpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("the gateway said nothing while the client waited for 100 Continue")
        .unwrap();
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config(&mock.base_url(), None), &["--max-body-bytes", "100000"]).await;

    let body = br#"{"model":"ok","messages":[{"role":"user","content":"hi"}]}"#;
    let (mut s, first) = head_with_expect(&gw, body.len()).await;
    assert!(first.starts_with("HTTP/1.1 100"), "{first}");
    s.write_all(body).await.unwrap();
    let mut rest = vec![0u8; 8192];
    let n = s.read(&mut rest).await.unwrap();
    assert!(String::from_utf8_lossy(&rest[..n]).starts_with("HTTP/1.1 200"));

    // Declared over the limit: refused at once, no 100, no waiting for a body.
    let (_s, first) = head_with_expect(&gw, 200_000).await;
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    assert!(first.contains("request_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_breaks_before_its_body_is_a_502_or_a_fallback() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url(), None)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-cut-after", "0")],
            r#"{"model":"ok","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_openai_error(&r, 502, "upstream_unreachable");

    // With a second target, the client never notices.
    let breaks = start_mock_with(tollgate_loadtest::mock::MockConfig {
        name: "breaks".into(),
        cut_after: Some(0),
        ..Default::default()
    })
    .await;
    let cfg = format!(
        "{}{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"breaks\", weight = 1 }}, {{ provider = \"fine\", weight = 0 }}]\n",
        provider("breaks", &breaks.base_url()),
        provider("fine", &mock.base_url())
    );
    let gw = Gateway::start(&cfg).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "req-broke")],
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(gw.access_line("req-broke").await["attempts"], 2);
}
