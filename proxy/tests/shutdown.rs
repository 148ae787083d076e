//! Graceful shutdown: SIGTERM withdraws readiness at once, lets what is in flight finish, and
//! exits as soon as nothing is left — at once when idle.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;

fn config(mock: &str) -> String {
    format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n",
        provider("mock", mock)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_exits_at_once_on_sigterm() {
    let mock = start_mock("m").await;
    let mut gw = Gateway::start_with(&config(&mock.base_url()), &["--shutdown-grace-secs", "120"]).await;
    assert_eq!(
        gw.chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
            .await
            .status,
        200
    );
    signal(gw.pid(), "TERM");
    // Far less than the grace period: nothing was in flight.
    let status = gw.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_withdraws_readiness_then_lets_its_stream_finish() {
    let mock = start_mock("m").await;
    let mut gw = Gateway::start_with(
        &config(&mock.base_url()),
        &["--shutdown-grace-secs", "120", "--shutdown-drain-delay-secs", "2"],
    )
    .await;
    let stream = open(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("x-request-id", "drain-stream"),
            ("x-mock-chunks", "60"),
            ("x-mock-chunk-delay-ms", "100"),
        ],
        Bytes::from_static(br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
    )
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.into_body();
    let mut received = Vec::new();
    if let Some(Ok(frame)) = body.frame().await {
        received.extend_from_slice(&frame.into_data().unwrap_or_default());
    }

    signal(gw.pid(), "TERM");
    // Readiness is withdrawn as soon as the signal lands, while the listener still accepts.
    let withdrawn = eventually(Duration::from_millis(1500), || async {
        let r = request(gw.addr, "GET", "/readyz", &[], Bytes::new()).await.unwrap();
        r.status == 503 && r.json()["error"]["code"] == "shutting_down"
    })
    .await;
    assert!(withdrawn, "/readyz still answered ready");
    // After the drain delay, new connections are refused.
    let refused = eventually(Duration::from_secs(5), || async {
        request(gw.addr, "GET", "/healthz", &[], Bytes::new()).await.is_err()
    })
    .await;
    assert!(refused, "the listener kept accepting after the drain delay");
    assert!(
        gw.wait_exit(Duration::ZERO).await.is_none(),
        "exited with a stream in flight"
    );

    // The stream in flight runs to its end.
    while let Some(frame) = body.frame().await {
        received.extend_from_slice(&frame.unwrap().into_data().unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("\"content\"").count(), 60, "every chunk arrived");

    let status = gw.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let line = gw.access_line("drain-stream").await;
    assert_eq!(line["outcome"], "completed", "{line}");
}
