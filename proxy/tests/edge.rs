//! The edge over real sockets: slow clients are cut at their deadlines, heads past the limits
//! and heads that cannot be read get JSON refusals, pipelined requests are answered in order,
//! connections per address are capped and idle keep-alive connections closed.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(mock: &str) -> String {
    format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n",
        provider("mock", mock)
    )
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// One response read off a raw connection: status, headers (lowercase names), body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Read one response (with a `content-length` body) from `buf` + the connection; `None` at EOF.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Raw> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 8192];
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Raw { status, headers, body });
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closes the connection within `within` (EOF or reset, nothing else read).
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, conn.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn refusals(gw: &Gateway, reason: &str) -> u64 {
    let text = request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text();
    let series = format!("tollgate_downstream_refusals_total{{reason=\"{reason}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

fn post(id: &str, body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_cut_at_its_deadline_with_a_408_and_others_are_served_meanwhile() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(&config(&mock.base_url()), &["--head-timeout-secs", "2"]).await;
    // 300 clients sending their heads a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nho").await.unwrap();
        slow.push(c);
    }
    let started = Instant::now();
    // A normal client is served while they hang on.
    let r = gw.chat(CHAT).await;
    assert_eq!(r.status, 200);
    // One more slow client, dribbling a byte every 200 ms: it is answered 408 once the deadline passes.
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nx-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n";
    let (mut rd, mut wr) = c.split();
    let writer = dribble_half(&mut wr, head, Duration::from_millis(200));
    let mut buf = Vec::new();
    let reader = async {
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::join!(writer, reader);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    // The 300 were cut too (answered 408, then closed), long before the 60 s read timeout.
    for c in slow.iter_mut() {
        let mut buf = Vec::new();
        let r = read_response(c, &mut buf).await;
        assert_eq!(r.map(|r| r.status), Some(408));
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(refusals(&gw, "request_timeout").await >= 301);
}

async fn dribble_half(wr: &mut tokio::net::tcp::WriteHalf<'_>, bytes: &[u8], every: Duration) {
    for b in bytes {
        if wr.write_all(&[*b]).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_by_its_deadline_and_by_its_minimum_rate() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(
        &config(&mock.base_url()),
        &[
            "--body-timeout-secs",
            "3",
            "--body-min-rate",
            "200",
            "--body-rate-grace-secs",
            "1",
        ],
    )
    .await;
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2000)
    );
    // Ten bytes a second: below 200 B/s once the grace second is over.
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let req = post("slow-body", &body);
    let (head, rest) = req.split_at(req.find("\r\n\r\n").unwrap() + 4);
    c.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = c.split();
    let writer = dribble_half(&mut wr, rest.as_bytes(), Duration::from_millis(100));
    let mut buf = Vec::new();
    let reader = async {
        let mut chunk = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::select! { _ = writer => {}, _ = reader => {} }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("slower than 200 bytes per second"), "{text}");
    assert!(text.contains("x-request-id: slow-body"), "{text}");
    assert!(mock.requests().is_empty(), "a refused body reached the upstream");

    // Fast enough for the rate, but the whole body takes longer than its deadline.
    let gw = Gateway::start_with(
        &config(&mock.base_url()),
        &["--body-timeout-secs", "2", "--body-min-rate", "0"],
    )
    .await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let req = post("late-body", &body);
    let (head, rest) = req.split_at(req.find("\r\n\r\n").unwrap() + 4);
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&rest.as_bytes()[..100]).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf).await.unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["error"]["code"], "request_timeout");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("within 2 seconds"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(refusals(&gw, "request_timeout").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_past_the_limits_or_unreadable_get_json_refusals() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;
    let many = |n: usize| (0..n).map(|i| format!("x-h{i}: v\r\n")).collect::<String>();
    let cases: Vec<(String, u16, &str)> = vec![
        // Past Pingora's own limits (256 headers, 1 MiB): its refusal, turned into JSON.
        (
            format!("GET /healthz HTTP/1.1\r\nhost: t\r\n{}\r\n", many(1000)),
            431,
            "request_headers_too_large",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
                "a".repeat(1_100_000)
            ),
            431,
            "request_headers_too_large",
        ),
        // Past the gateway's limits.
        (
            format!("GET /healthz HTTP/1.1\r\nhost: t\r\n{}\r\n", many(101)),
            431,
            "request_headers_too_large",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
                "a".repeat(40_000)
            ),
            431,
            "request_headers_too_large",
        ),
        (
            format!("GET /v1/models?q={} HTTP/1.1\r\nhost: t\r\n\r\n", "a".repeat(100_000)),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /v1/models?q={} HTTP/1.1\r\nhost: t\r\n\r\n", "a".repeat(10_000)),
            414,
            "uri_too_long",
        ),
        // Not HTTP.
        ("GARBAGE\r\n\r\n".to_string(), 400, "invalid_request_head"),
        (
            "GET / HTTP/1.1\r\nbad header line\r\n\r\n".to_string(),
            400,
            "invalid_request_head",
        ),
    ];
    for (raw, status, code) in cases {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        let _ = c.write_all(raw.as_bytes()).await;
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf).await;
        let shown = &raw[..raw.len().min(60)];
        let r = r.unwrap_or_else(|| panic!("no answer to {shown:?}"));
        assert_eq!(r.status, status, "{shown:?}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"), "{shown:?}");
        assert_eq!(r.json()["error"]["code"], code, "{shown:?}");
        assert!(
            closed_within(&mut c, Duration::from_secs(5)).await,
            "{shown:?}: the connection stays open"
        );
    }
    assert!(refusals(&gw, "request_headers_too_large").await >= 4);
    assert!(refusals(&gw, "invalid_request_head").await >= 2);
    // The gateway keeps serving.
    assert_eq!(gw.chat(CHAT).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let mock = start_mock("m").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;
    let mut c = TcpStream::connect(gw.addr).await.unwrap();
    let mut all = String::new();
    for i in 0..5 {
        all.push_str(&post(&format!("pipe-{i}"), CHAT));
    }
    all.push_str("GET /healthz HTTP/1.1\r\nhost: t\r\nx-request-id: pipe-5\r\n\r\n");
    all.push_str("GET /v1/models HTTP/1.1\r\nhost: t\r\nx-request-id: pipe-6\r\n\r\n");
    c.write_all(all.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..7 {
        let r = tokio::time::timeout(Duration::from_secs(10), read_response(&mut c, &mut buf))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no answer to pipelined request {i}"));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(
            r.header("x-request-id"),
            Some(format!("pipe-{i}").as_str()),
            "answered in order"
        );
    }
    assert_eq!(mock.requests().len(), 5);
    // The connection is still usable.
    c.write_all(post("pipe-7", CHAT).as_bytes()).await.unwrap();
    let r = read_response(&mut c, &mut buf).await.unwrap();
    assert_eq!(r.header("x-request-id"), Some("pipe-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped_and_idle_ones_closed() {
    let mock = start_mock("m").await;
    let gw = Gateway::start_with(
        &config(&mock.base_url()),
        &["--max-connections-per-ip", "3", "--keepalive-idle-secs", "1"],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut c, &mut buf).await.unwrap().status, 200);
        held.push(c);
    }
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut fourth, &mut buf).await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "too_many_connections");
    assert_eq!(refusals(&gw, "too_many_connections").await, 1);
    // Idle keep-alive connections are closed after a second, which frees their places.
    for c in held.iter_mut() {
        assert!(
            closed_within(c, Duration::from_secs(5)).await,
            "an idle connection was kept"
        );
    }
    let ok = eventually(Duration::from_secs(5), || async {
        request(gw.addr, "GET", "/healthz", &[], Bytes::new())
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ok);
}
