//! The answer cache through the gateway, over HTTP, with the real embedding model
//! (`scripts/setup.sh` fetches it) and the mock upstream: exact and semantic hits answered
//! without the upstream, near-misses and other namespaces forwarded, what is not cached, and
//! answers replayed as JSON or as a stream whichever way they were recorded.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use common::*;

async fn gateway(mock: &tollgate_loadtest::mock::MockHandle, cache: &str) -> Gateway {
    gateway_with(mock, cache, &[]).await
}

async fn gateway_with(mock: &tollgate_loadtest::mock::MockHandle, cache: &str, flags: &[&str]) -> Gateway {
    let config = format!(
        "[admin]\ntoken = \"env:TEST_ADMIN_TOKEN\"\n\n{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n\n[cache]\n{cache}\n",
        provider("mock", &mock.base_url())
    );
    let dir = models_dir();
    // Hits are what these tests look at: a lookup waits for its vector however busy the machine
    // (tests run in parallel), instead of shedding the semantic step after 10 ms.
    let mut all = vec!["--models-dir", dir.as_str(), "--cache-embed-wait-ms", "2000"];
    all.extend_from_slice(flags);
    Gateway::start_with(&config, &all).await
}

/// Flags of a node sharing its cache through the local Redis in namespace `ns`.
fn shared(ns: &str) -> [&str; 4] {
    ["--redis-url", "redis://127.0.0.1:6379", "--redis-namespace", ns]
}

async fn flush(gw: &Gateway, query: &str) -> Resp {
    let headers = [("authorization", "Bearer admin-token-for-tests")];
    request(
        gw.admin,
        "DELETE",
        &format!("/admin/cache{query}"),
        &headers,
        bytes::Bytes::new(),
    )
    .await
    .unwrap()
}

async fn entries(gw: &Gateway) -> f64 {
    metric(gw, "tollgate_cache_entries").await.unwrap_or(-1.0)
}

fn ask(question: &str) -> String {
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{question}"}}]}}"#)
}

fn content(resp: &Resp) -> String {
    resp.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The text of a replayed or relayed event stream, and whether it ended with `[DONE]`.
fn streamed(resp: &Resp) -> (String, bool) {
    let mut text = String::new();
    let mut done = false;
    for line in resp.text().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    (text, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_answered_from_the_cache_without_the_upstream() {
    let mock = start_mock("m").await;
    let gw = gateway(&mock, "").await;
    let first = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-chunks", "2")],
            &ask("What is the capital of France?"),
        )
        .await;
    assert_eq!((first.status, first.header("x-tollgate-cache")), (200, Some("miss")));
    let again = gw
        .post(
            "/v1/chat/completions",
            &[("x-mock-chunks", "5")],
            &ask("What is the capital of France?"),
        )
        .await;
    assert_eq!((again.status, again.header("x-tollgate-cache")), (200, Some("hit")));
    assert_eq!(mock.served(), 1, "the upstream saw one request");
    assert_eq!(content(&again), content(&first), "the first answer, not a new one");
    let usage = &again.json()["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], usage["prompt_tokens"]);
    let line = gw.access_line(&again.request_id()).await;
    assert_eq!(line["cache"], "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_hits_and_a_near_miss_or_another_conversation_does_not() {
    let mock = start_mock("m").await;
    let gw = gateway(&mock, "").await;
    let first = gw.chat(&ask("How do I turn on dark mode?")).await;
    assert_eq!(first.header("x-tollgate-cache"), Some("miss"));
    let para = gw.chat(&ask("How can I enable dark mode?")).await;
    assert_eq!(para.header("x-tollgate-cache"), Some("semantic-hit"), "{}", gw.log());
    let similarity: f32 = para.header("x-tollgate-cache-similarity").unwrap().parse().unwrap();
    assert!(similarity > 0.8 && similarity <= 1.0, "{similarity}");
    assert_eq!(mock.served(), 1);

    let opposite = gw.chat(&ask("How do I turn off dark mode?")).await;
    assert_eq!(opposite.header("x-tollgate-cache"), Some("miss"));
    assert_eq!(mock.served(), 2, "the opposite question went upstream");

    let other_bot = r#"{"model":"m","messages":[{"role":"system","content":"Answer as a pirate."},{"role":"user","content":"How do I turn on dark mode?"}]}"#;
    assert_eq!(gw.chat(other_bot).await.header("x-tollgate-cache"), Some("miss"));
    assert_eq!(mock.served(), 3, "another system prompt never shares answers");

    let strict = gw
        .post(
            "/v1/chat/completions",
            &[("x-tollgate-cache-threshold", "0.9999")],
            &ask("How do I turn on dark mode?"),
        )
        .await;
    assert_eq!(
        strict.header("x-tollgate-cache"),
        Some("hit"),
        "exact repeats still hit"
    );
    let stricter = gw
        .post(
            "/v1/chat/completions",
            &[("x-tollgate-cache-threshold", "0.9999")],
            &ask("How could I enable dark mode?"),
        )
        .await;
    assert_eq!(
        stricter.header("x-tollgate-cache"),
        Some("miss"),
        "a caller may raise the bar"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_replay_as_json_or_as_a_stream_whichever_way_they_were_recorded() {
    let mock = start_mock("m").await;
    let gw = gateway(&mock, "").await;
    let json_first = gw.chat(&ask("Where can I download my invoice?")).await;
    let as_stream = gw
        .chat(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Where can I download my invoice?"}]}"#)
        .await;
    assert_eq!(as_stream.header("x-tollgate-cache"), Some("hit"));
    assert_eq!(as_stream.header("content-type"), Some("text/event-stream"));
    let (text, done) = streamed(&as_stream);
    assert_eq!((text, done), (content(&json_first), true));
    assert!(
        as_stream.text().contains("\"cached_tokens\""),
        "usage comes when asked for"
    );

    let stream_first = gw
        .chat(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"How long does shipping take?"}]}"#)
        .await;
    assert_eq!(stream_first.header("x-tollgate-cache"), Some("miss"));
    let (recorded, _) = streamed(&stream_first);
    let as_json = gw.chat(&ask("How long does shipping take?")).await;
    assert_eq!(as_json.header("x-tollgate-cache"), Some("hit"));
    assert_eq!(content(&as_json), recorded);
    assert_eq!(mock.served(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_cached_always_goes_upstream() {
    let mock = start_mock("m").await;
    let gw = gateway(&mock, "max_temperature = 1.0").await;
    let q = r#""messages":[{"role":"user","content":"Tell me a joke"}]"#;
    let uncached = [
        format!(r#"{{"model":"m",{q},"n":2}}"#),
        format!(r#"{{"model":"m",{q},"temperature":1.5}}"#),
        format!(r#"{{"model":"m",{q},"tools":[{{"type":"function","function":{{"name":"f","parameters":{{}}}}}}]}}"#),
    ];
    for (i, body) in uncached.iter().enumerate() {
        for _ in 0..2 {
            let r = gw.chat(body).await;
            assert_eq!((r.status, r.header("x-tollgate-cache")), (200, Some("skip")), "{body}");
        }
        assert_eq!(mock.served(), 2 * (i as u64 + 1), "{body}");
    }
    let plain = format!(r#"{{"model":"m",{q}}}"#);
    for _ in 0..2 {
        let r = gw
            .post("/v1/chat/completions", &[("cache-control", "no-store")], &plain)
            .await;
        assert_eq!(r.header("x-tollgate-cache"), Some("skip"));
    }
    assert_eq!(mock.served(), 8, "no-store neither reads nor writes");
    assert_eq!(gw.chat(&plain).await.header("x-tollgate-cache"), Some("miss"));
    let refreshed = gw
        .post("/v1/chat/completions", &[("cache-control", "no-cache")], &plain)
        .await;
    assert_eq!(
        refreshed.header("x-tollgate-cache"),
        Some("miss"),
        "no-cache skips the lookup"
    );
    assert_eq!(mock.served(), 10);
    assert_eq!(gw.chat(&plain).await.header("x-tollgate-cache"), Some("hit"));
    assert_eq!(mock.served(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_or_an_error_is_never_cached() {
    let mock = start_mock_with(tollgate_loadtest::mock::MockConfig {
        name: "m".into(),
        cut_after: Some(2),
        ..Default::default()
    })
    .await;
    let gw = gateway(&mock, "").await;
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Explain TCP"}]}"#;
    for _ in 0..2 {
        let headers = [("content-type", "application/json")];
        let _ = request(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            bytes::Bytes::from(body),
        )
        .await;
    }
    assert_eq!(mock.served(), 2, "the cut answer was not kept");

    let failing = start_mock_with(tollgate_loadtest::mock::MockConfig {
        name: "f".into(),
        error_status: Some(400),
        error_rate: 1.0,
        ..Default::default()
    })
    .await;
    let gw = gateway(&failing, "").await;
    for _ in 0..2 {
        assert_eq!(gw.chat(&ask("Explain UDP")).await.status, 400);
    }
    assert_eq!(failing.served(), 2, "an error is not an answer to reuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_entries_through_redis_and_a_restarted_node_starts_warm() {
    let mock = start_mock("m").await;
    let ns = unique("cache-share");
    let a = gateway_with(&mock, "", &shared(&ns)).await;
    let b = gateway_with(&mock, "", &shared(&ns)).await;
    let first = a.chat(&ask("How do I reset my password?")).await;
    assert_eq!(first.header("x-tollgate-cache"), Some("miss"));
    let written = std::time::Instant::now();
    assert!(
        eventually(std::time::Duration::from_secs(1), || async { entries(&b).await == 1.0 }).await,
        "the other node learns of the entry within a second:\n{}",
        b.log()
    );
    let lag = written.elapsed();
    let on_b = b.chat(&ask("How do I reset my password?")).await;
    assert_eq!(on_b.header("x-tollgate-cache"), Some("hit"), "{lag:?}");
    assert_eq!(content(&on_b), content(&first));
    let para = b.chat(&ask("How can I reset my password?")).await;
    assert_eq!(
        para.header("x-tollgate-cache"),
        Some("semantic-hit"),
        "the question's vector travels with the entry"
    );
    assert_eq!(mock.served(), 1, "one upstream call for the whole cluster");
    assert!(metric(&b, "tollgate_cache_sync_lag_seconds_count").await >= Some(1.0));

    let c = gateway_with(&mock, "", &shared(&ns)).await;
    assert!(
        eventually(std::time::Duration::from_secs(5), || async { entries(&c).await == 1.0 }).await,
        "a new node warms up from redis:\n{}",
        c.log()
    );
    assert_eq!(
        c.chat(&ask("How do I reset my password?"))
            .await
            .header("x-tollgate-cache"),
        Some("hit")
    );
    assert_eq!(mock.served(), 1);

    let other_ns = unique("cache-share-other");
    let d = gateway_with(&mock, "", &shared(&other_ns)).await;
    assert_eq!(
        d.chat(&ask("How do I reset my password?"))
            .await
            .header("x-tollgate-cache"),
        Some("miss"),
        "another redis namespace is another cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_flush_empties_every_node_and_redis() {
    let mock = start_mock("m").await;
    let ns = unique("cache-flush");
    let a = gateway_with(&mock, "", &shared(&ns)).await;
    let b = gateway_with(&mock, "", &shared(&ns)).await;
    let plain = a.chat(&ask("What are your opening hours?")).await;
    let pirate = r#"{"model":"m","messages":[{"role":"system","content":"Answer as a pirate."},{"role":"user","content":"What are your opening hours?"}]}"#;
    let bot = a.chat(pirate).await;
    let bot_ns = bot.header("x-tollgate-cache-namespace").unwrap().to_string();
    assert_ne!(plain.header("x-tollgate-cache-namespace"), Some(bot_ns.as_str()));
    assert!(eventually(std::time::Duration::from_secs(2), || async { entries(&b).await == 2.0 }).await);

    let unauthorized = request(a.admin, "DELETE", "/admin/cache", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(unauthorized.status, 401);
    assert_eq!(entries(&a).await, 2.0);
    assert_eq!(flush(&a, "?namespace=zz").await.status, 400);

    let one = flush(&a, &format!("?namespace={bot_ns}")).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(
        (one.json()["flushed"].clone(), one.json()["redis"].clone()),
        (1.into(), 1.into())
    );
    assert!(
        eventually(std::time::Duration::from_secs(2), || async { entries(&b).await == 1.0 }).await,
        "the other node drops the namespace too"
    );
    assert_eq!(b.chat(pirate).await.header("x-tollgate-cache"), Some("miss"));
    assert_eq!(
        b.chat(&ask("What are your opening hours?"))
            .await
            .header("x-tollgate-cache"),
        Some("hit")
    );

    let all = flush(&b, "?model=m").await;
    assert_eq!(all.json()["flushed"], 2, "{}", all.text());
    assert!(eventually(std::time::Duration::from_secs(2), || async { entries(&a).await == 0.0 }).await);
    let served = mock.served();
    assert_eq!(
        a.chat(&ask("What are your opening hours?"))
            .await
            .header("x-tollgate-cache"),
        Some("miss")
    );
    assert_eq!(mock.served(), served + 1);
    let fresh = gateway_with(&mock, "", &shared(&ns)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(entries(&fresh).await <= 1.0, "flushed entries are gone from redis too");
    let line = a
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["action"] == "cache.flush" && v["result"].as_str().is_some_and(|r| r.starts_with("ok")));
    assert!(line.is_some(), "the flush is audited:\n{}", a.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_expires_after_its_ttl() {
    let mock = start_mock("m").await;
    let gw = gateway_with(&mock, "ttl_seconds = 1", &["--cache-sweep-secs", "1"]).await;
    let q = ask("Which payment methods do you accept?");
    assert_eq!(gw.chat(&q).await.header("x-tollgate-cache"), Some("miss"));
    assert_eq!(gw.chat(&q).await.header("x-tollgate-cache"), Some("hit"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(gw.chat(&q).await.header("x-tollgate-cache"), Some("miss"), "expired");
    assert_eq!(mock.served(), 2);
    assert!(
        eventually(std::time::Duration::from_secs(3), || async {
            entries(&gw).await == 1.0
        })
        .await,
        "the expired entry was dropped and replaced by the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_reads_replayed_answers_both_ways() {
    let mock = start_mock("m").await;
    let gw = gateway(&mock, "").await;
    let base = format!("http://{}/v1", gw.addr);
    let run = |question: &str, kinds: &str| {
        serde_json::from_str::<Vec<serde_json::Value>>(&openai_sdk(&["cache", &base, question, kinds])).unwrap()
    };
    for (question, kinds) in [
        ("How do I export my data?", "json,stream,stream"),
        ("Can I change my username?", "stream,json,stream"),
    ] {
        let answers = run(question, kinds);
        let caches: Vec<&str> = answers.iter().map(|a| a["cache"].as_str().unwrap()).collect();
        assert_eq!(caches, ["miss", "hit", "hit"], "{kinds}: {answers:?}");
        let text = answers[0]["text"].as_str().unwrap();
        assert!(!text.is_empty());
        for replayed in &answers[1..] {
            assert_eq!(replayed["text"], text, "{kinds}: the same answer, whole");
            assert_eq!(replayed["finish"], answers[0]["finish"]);
            assert!(replayed["cached_tokens"].as_u64() > Some(0), "{replayed}");
        }
    }
    assert_eq!(mock.served(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_or_tool_answers_and_tool_results_are_never_cached() {
    let mock = start_mock("m").await;
    let gw = gateway(&mock, "").await;
    let mut expected = 0;
    for finish in ["content_filter", "tool_calls"] {
        for body in [
            ask(&format!("Question ending in {finish}")),
            format!(r#"{{"model":"m","stream":true,"messages":[{{"role":"user","content":"Streamed {finish}"}}]}}"#),
        ] {
            for _ in 0..2 {
                let r = gw
                    .post("/v1/chat/completions", &[("x-mock-finish", finish)], &body)
                    .await;
                assert_eq!((r.status, r.header("x-tollgate-cache")), (200, Some("miss")), "{body}");
                expected += 1;
            }
            assert_eq!(mock.served(), expected, "{finish}: {body}");
        }
    }
    let tool_result = r#"{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"18 C"},{"role":"user","content":"Summarise it"}]}"#;
    for _ in 0..2 {
        assert_eq!(gw.chat(tool_result).await.header("x-tollgate-cache"), Some("skip"));
    }
    assert_eq!(
        mock.served(),
        expected + 2,
        "a conversation with tool results always goes upstream"
    );
}
