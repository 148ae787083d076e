//! Concurrency limits (`concurrent = N` in a `[[limits]]` rule) over HTTP, with the mock
//! upstream's slow streams: the mock counts the answers it is producing at once, so "never more
//! than N in flight" is measured where it matters, at the upstream.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, metric, open, provider, read_body, request, start_mock_with, Gateway};
use tollgate_loadtest::mock::{MockConfig, MockHandle};

const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// A mock whose streams take about `16 × delay`.
async fn slow_mock(delay_ms: u64) -> MockHandle {
    start_mock_with(MockConfig {
        name: "slow".into(),
        chunks: 16,
        chunk_delay: Duration::from_millis(delay_ms),
        ..MockConfig::default()
    })
    .await
}

fn config(mock: &MockHandle, rule: &str) -> String {
    format!(
        "{}\n[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n\n[[limits]]\nname = \"slots\"\n{rule}\n",
        provider("mock", &mock.base_url())
    )
}

/// A streamed chat request to `addr` with `headers`, its answer read to the end.
async fn stream_to(addr: SocketAddr, headers: &[(&str, &str)]) -> common::Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request(addr, "POST", "/v1/chat/completions", &h, Bytes::from(STREAM))
        .await
        .unwrap()
}

/// The same, its answer's head only: the stream (and its slot) runs on until read or dropped.
async fn open_stream(addr: SocketAddr, headers: &[(&str, &str)]) -> http::Response<hyper::body::Incoming> {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    open(addr, "POST", "/v1/chat/completions", &h, Bytes::from(STREAM))
        .await
        .unwrap()
}

async fn stream(gw: &Gateway, headers: &[(&str, &str)]) -> common::Resp {
    stream_to(gw.addr, headers).await
}

async fn stream_at(addr: SocketAddr) -> u16 {
    stream_to(addr, &[]).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_streams_never_exceed_the_rule_and_refusals_are_clean_429s() {
    let mock = slow_mock(50).await;
    let gw = Gateway::start(&config(&mock, "concurrent = 10")).await;
    let clients: Vec<_> = (0..100).map(|_| tokio::spawn(stream_to(gw.addr, &[]))).collect();
    let mut served = 0;
    let mut refused = 0;
    for c in clients {
        let r = c.await.unwrap();
        match r.status {
            200 => {
                assert!(r.text().contains("data: [DONE]"), "{}", r.text());
                assert_eq!(r.header("x-ratelimit-limit-concurrent"), Some("10"));
                served += 1;
            }
            429 => {
                let e = r.json();
                assert_eq!(e["error"]["code"], "concurrency_limit_exceeded", "{e}");
                assert!(e["error"]["message"].as_str().unwrap().contains("`slots`"), "{e}");
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "{retry}");
                assert_eq!(r.header("x-ratelimit-limit-concurrent"), Some("10"));
                assert_eq!(r.header("x-ratelimit-remaining-concurrent"), Some("0"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(served + refused, 100);
    assert!(served >= 10, "served {served}");
    assert!(refused > 0, "every client was served: the streams did not overlap");
    assert!(
        mock.max_in_flight() <= 10,
        "the mock saw {} at once",
        mock.max_in_flight()
    );
    // Every slot came back: a full batch of ten is served at once.
    assert_eq!(
        metric(&gw, "tollgate_limit_slots_in_use{rule=\"slots\"}").await,
        Some(0.0)
    );
    let batch: Vec<_> = (0..10).map(|_| tokio::spawn(stream_at(gw.addr))).collect();
    for b in batch {
        assert_eq!(b.await.unwrap(), 200);
    }
    let refusals = "tollgate_limit_decisions_total{kind=\"concurrent\",outcome=\"refused\",rule=\"slots\"}";
    assert_eq!(metric(&gw, refusals).await, Some(refused as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_comes_back_when_the_upstream_cuts_the_stream_or_the_client_leaves() {
    let mock = slow_mock(50).await;
    let gw = Gateway::start(&config(&mock, "concurrent = 1")).await;

    // Cut by the upstream after two chunks: the client sees the cut, the slot is free again.
    let cut = open_stream(gw.addr, &[("x-mock-cut-after", "2")]).await;
    assert_eq!(cut.status(), 200);
    let (_, body, _) = read_body(cut).await;
    assert!(
        String::from_utf8_lossy(&body).contains("error"),
        "the cut was not reported"
    );
    assert_eq!(stream(&gw, &[]).await.status, 200);

    // The client leaves mid-stream: once the gateway notices, the slot is free again.
    let left = open_stream(gw.addr, &[]).await;
    assert_eq!(left.status(), 200);
    assert_eq!(
        stream(&gw, &[]).await.status,
        429,
        "the slot is held while the stream runs"
    );
    drop(left);
    assert!(
        eventually(Duration::from_secs(5), || async {
            stream(&gw, &[]).await.status == 200
        })
        .await,
        "the slot of a client that left never came back"
    );
    assert!(mock.max_in_flight() <= 1, "{}", mock.max_in_flight());
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&gw, "tollgate_limit_slots_in_use{rule=\"slots\"}").await == Some(0.0)
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_admits_waiting_requests_in_order_and_refuses_past_its_time() {
    let mock = slow_mock(30).await;
    let gw = Gateway::start(&config(&mock, "concurrent = 1\nqueue_ms = 5000")).await;
    let first = open_stream(gw.addr, &[("x-request-id", "q-0")]).await;
    assert_eq!(first.status(), 200);
    // Three more wait in line, sent one after another; each is served in turn, in order.
    let mut waiting = Vec::new();
    for i in 1..=3 {
        let addr = gw.addr;
        waiting.push(tokio::spawn(async move {
            let id = format!("q-{i}");
            stream_to(addr, &[("x-request-id", id.as_str())]).await.status
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (done, _, _) = read_body(first).await;
    done.unwrap();
    for w in waiting {
        assert_eq!(w.await.unwrap(), 200);
    }
    let order: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.header("x-request-id").map(str::to_string))
        .collect();
    assert_eq!(order, ["q-0", "q-1", "q-2", "q-3"]);
    assert_eq!(mock.max_in_flight(), 1);
    assert!(metric(&gw, "tollgate_limit_queue_seconds_count{rule=\"slots\"}").await >= Some(3.0));

    // A queue shorter than a stream: the waiter is refused once its time is up, and says so.
    std::fs::write(&gw.config_path, config(&mock, "concurrent = 1\nqueue_ms = 100")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&gw, "tollgate_config_version").await == Some(2.0)
        })
        .await
    );
    let long = open_stream(gw.addr, &[]).await;
    let refused = stream(&gw, &[]).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.text().contains("waited 100 ms"), "{}", refused.text());
    read_body(long).await.0.unwrap();
}

/// Three gateways sharing the same Redis namespace (a fresh one per test).
async fn cluster(mock: &MockHandle, rule: &str, lease_ms: &str) -> Vec<Gateway> {
    let namespace = common::unique("slots");
    let flags = [
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--limits-namespace",
        namespace.as_str(),
        "--limits-slot-lease-ms",
        lease_ms,
        // These tests are about what is admitted, not about a slow Redis: on a loaded machine
        // an answer may take longer than the default, and then no slot is taken.
        "--redis-timeout-ms",
        "3000",
    ];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Gateway::start_with(&config(mock, rule), &flags).await);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn across_three_gateways_the_bound_holds_for_the_cluster() {
    for mode in ["sync", "exact"] {
        let mock = slow_mock(50).await;
        let nodes = cluster(&mock, &format!("concurrent = 10\nmode = \"{mode}\""), "10000").await;
        let clients: Vec<_> = (0..100)
            .map(|i| tokio::spawn(stream_to(nodes[i % 3].addr, &[])))
            .collect();
        let mut served = 0;
        for c in clients {
            let r = c.await.unwrap();
            match r.status {
                200 => served += 1,
                429 => assert_eq!(r.json()["error"]["code"], "concurrency_limit_exceeded", "{mode}"),
                other => panic!("{mode}: unexpected {other}: {}", r.text()),
            }
        }
        assert!(
            mock.max_in_flight() <= 10,
            "{mode}: the mock saw {} at once",
            mock.max_in_flight()
        );
        assert!(served >= 10, "{mode}: served {served}");
        assert!(
            served < 100,
            "{mode}: every client was served: the streams did not overlap"
        );
        // Every node gave its slots back: ten at once are served again, spread over the nodes.
        assert!(
            eventually(Duration::from_secs(5), || async {
                let batch: Vec<_> = (0..10).map(|i| tokio::spawn(stream_at(nodes[i % 3].addr))).collect();
                let mut ok = true;
                for b in batch {
                    ok &= b.await.unwrap() == 200;
                }
                ok
            })
            .await,
            "{mode}: slots were not given back"
        );
        // Leases went through Redis, and each call answered.
        assert!(metric(&nodes[0], "tollgate_limit_slot_lease_calls_total").await > Some(0.0));
        assert_eq!(
            metric(&nodes[0], "tollgate_limit_slot_lease_failures_total").await,
            Some(0.0),
            "{mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_slots_of_a_gateway_that_dies_come_back_after_the_lease_timeout() {
    let mock = slow_mock(200).await;
    let mut nodes = cluster(&mock, "concurrent = 4", "1500").await;
    // The first gateway takes every slot with streams that run for seconds.
    let mut held = Vec::new();
    for _ in 0..4 {
        let r = open_stream(nodes[0].addr, &[]).await;
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    assert_eq!(stream_at(nodes[1].addr).await, 429, "the cluster's slots are all taken");
    // It dies without giving anything back.
    let dead = nodes.remove(0);
    common::signal(dead.pid(), "KILL");
    drop(held);
    // Within the lease timeout (and a renewal round) the others can use the slots again.
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || async {
            stream_at(nodes[0].addr).await == 200
        })
        .await,
        "the dead gateway's slots never came back"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "reclaimed before the lease timeout"
    );
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_waiting_on_one_gateway_takes_a_slot_freed_on_another() {
    let mock = slow_mock(30).await;
    let nodes = cluster(&mock, "concurrent = 1\nqueue_ms = 5000", "10000").await;
    let first = open_stream(nodes[0].addr, &[]).await;
    assert_eq!(first.status(), 200);
    // Queued on another gateway while the only slot is held on the first.
    let waiting = tokio::spawn(stream_at(nodes[1].addr));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the second request was not made to wait");
    read_body(first).await.0.unwrap();
    assert_eq!(
        waiting.await.unwrap(),
        200,
        "the freed slot did not reach the waiting gateway"
    );
    assert_eq!(mock.max_in_flight(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_rule_with_room_refuses_nothing_in_a_burst() {
    // Requests of one node racing for the slots it leases one at a time must not take each
    // other's: with room in the cluster, none is refused.
    for mode in ["sync", "exact"] {
        let mock = slow_mock(20).await;
        let nodes = cluster(&mock, &format!("concurrent = 1000\nmode = \"{mode}\""), "10000").await;
        let burst: Vec<_> = (0..150).map(|i| tokio::spawn(stream_at(nodes[i % 2].addr))).collect();
        for b in burst {
            assert_eq!(b.await.unwrap(), 200, "{mode}: refused with room in the cluster");
        }
    }
}
