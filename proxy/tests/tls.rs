//! The TLS listener with the official `openai` SDK as the client (tests/sdk/openai_client.py):
//! HTTPS over HTTP/1.1 and HTTP/2 with a private CA, streams alike on both, h2c, and a
//! certificate rotation under load that fails no request.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn config(mock: &str) -> String {
    format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n",
        provider("mock", mock)
    )
}

/// A gateway with a TLS listener whose certificate files live in their own directory.
async fn start_tls(mock: &str) -> (Gateway, SocketAddr, PathBuf) {
    let dir = temp_dir();
    std::fs::copy(fixture("server.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("server.key"), dir.join("key.pem")).unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (tls_s, cert, key) = (
        tls.to_string(),
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    );
    let gw = Gateway::start_with(
        &config(mock),
        &[
            "--tls-listen",
            &tls_s,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--h2c",
            "true",
        ],
    )
    .await;
    (gw, tls, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_talks_https_over_http1_and_http2_and_streams_alike() {
    let mock = start_mock("m").await;
    let (gw, tls, _dir) = start_tls(&mock.base_url()).await;
    let base = format!("https://localhost:{}/v1", tls.port());
    let ca = fixture("ca.pem").display().to_string();
    let mut seen = Vec::new();
    for version in ["http1", "http2"] {
        let out: serde_json::Value = serde_json::from_str(&openai_sdk(&["chat", &base, &ca, version])).unwrap();
        let want = if version == "http2" { "HTTP/2" } else { "HTTP/1.1" };
        assert_eq!(out["http_version"], want, "{out}");
        assert_eq!(out["stream_http_version"], want, "{out}");
        assert!(out["text"].as_str().is_some_and(|t| !t.is_empty()), "{out}");
        assert!(out["usage"].as_u64().is_some_and(|n| n > 0), "{out}");
        seen.push(out["stream_text"].as_str().unwrap().to_string());
    }
    assert!(!seen[0].is_empty());
    assert_eq!(
        seen[0], seen[1],
        "a stream over HTTP/2 carries what it carries over HTTP/1.1"
    );
    let lines = gw.access_lines();
    assert!(
        lines.len() >= 4 && lines.iter().all(|l| l["status"] == 200),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_streams_like_http1() {
    let mock = start_mock("m").await;
    let (gw, _tls, _dir) = start_tls(&mock.base_url()).await;
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let h1 = gw.post("/v1/chat/completions", &[], body).await;
    let h2 = h2c_post(gw.addr, "/v1/chat/completions", body).await;
    assert_eq!(h1.status, 200);
    assert_eq!(h2.0, 200);
    let content = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .split("\n\n")
            .filter(|e| e.contains("\"content\""))
            .count()
    };
    assert!(content(&h1.body) > 0);
    assert_eq!(content(&h1.body), content(&h2.1));
    assert!(String::from_utf8_lossy(&h2.1).ends_with("data: [DONE]\n\n"));
}

/// One POST over HTTP/2 with prior knowledge: status and body.
async fn h2c_post(addr: SocketAddr, path: &str, body: &str) -> (u16, Vec<u8>) {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_under_load_fails_no_request() {
    let mock = start_mock("m").await;
    let (gw, tls, dir) = start_tls(&mock.base_url()).await;
    let base = format!("https://localhost:{}/v1", tls.port());
    // The client trusts both CAs: the old certificate's and the new one's.
    let bundle = dir.join("cas.pem");
    let mut cas = std::fs::read(fixture("ca.pem")).unwrap();
    cas.extend(std::fs::read(fixture("ca2.pem")).unwrap());
    std::fs::write(&bundle, cas).unwrap();
    let bundle_s = bundle.display().to_string();
    let before = openai_sdk(&["cert", &base, &bundle_s]).trim().to_string();

    let (base2, bundle2) = (base.clone(), bundle_s.clone());
    let served_before = gw.access_lines().len();
    let load = std::thread::spawn(move || openai_sdk(&["load", &base2, &bundle2, "6", "4"]));
    // Rotate once the load is under way (Python's start-up takes seconds on a busy machine).
    assert!(
        eventually(Duration::from_secs(20), || async {
            gw.access_lines().len() >= served_before + 20
        })
        .await,
        "the load never started"
    );
    // Rotate: new files, then SIGHUP (as a certificate manager would).
    std::fs::copy(fixture("server2.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("server2.key"), dir.join("key.pem")).unwrap();
    signal(gw.pid(), "HUP");
    let out: serde_json::Value = serde_json::from_str(&load.join().unwrap()).unwrap();
    let after = openai_sdk(&["cert", &base, &bundle_s]).trim().to_string();

    assert_ne!(before, after, "the new certificate is presented");
    assert_eq!(out["failed"], 0, "{out}");
    assert!(out["ok"].as_u64().unwrap() > 20, "{out}");
    let certs: Vec<&str> = out["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        certs.contains(&before.as_str()) && certs.contains(&after.as_str()),
        "{out}"
    );
    let metrics = request(gw.admin, "GET", "/metrics", &[], bytes::Bytes::new())
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("tollgate_tls_cert_reloads_total{result=\"ok\"}"),
        "{metrics}"
    );

    // A broken pair is refused and the current certificate keeps serving.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    signal(gw.pid(), "HUP");
    let refused = eventually(Duration::from_secs(5), || async {
        request(gw.admin, "GET", "/metrics", &[], bytes::Bytes::new())
            .await
            .is_ok_and(|r| r.text().contains("tollgate_tls_cert_reloads_total{result=\"refused\"}"))
    })
    .await;
    assert!(refused);
    assert_eq!(openai_sdk(&["cert", &base, &bundle_s]).trim(), after);
}
