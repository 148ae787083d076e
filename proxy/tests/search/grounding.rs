//! What is asked for when; what reaches the provider and the client; engines failing.

use std::time::Duration;

use crate::common::*;
use crate::support::*;
use tollgate_loadtest::engines::Fault;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_requests_reach_the_provider_with_ranked_sources_before_the_users_own_words() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    let gw = Gateway::start(&config(&upstream, &e, "")).await;

    let r = gw.chat(&ask("chat:online", false, serde_json::json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-search"), Some("ok"));
    assert_eq!(r.header("x-tollgate-model"), Some("chat"));

    let body = sent(&upstream);
    assert_eq!(body["model"], "real-chat");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0]["content"], "Be brief.");
    assert_eq!(
        messages[2],
        serde_json::json!({"role": "user", "content": QUESTION}),
        "the user's words stay"
    );
    assert_eq!(messages[1]["role"], "system");
    let context = messages[1]["content"].as_str().unwrap();
    assert!(context.contains("<search_results>") && context.ends_with("</search_results>"));
    // Every engine was asked the user's question; each found its document.
    let asked: Vec<String> = e.queries().into_iter().map(|(engine, _)| engine).collect();
    for engine in ["searxng", "bing", "google", "arxiv", "es"] {
        assert!(asked.iter().any(|a| a == engine), "{engine} not asked: {asked:?}");
    }
    assert!(e.queries().iter().all(|(_, q)| q == QUESTION));
    // Ranked against the question: the release note is cited first; the lentils never.
    assert!(
        context.contains("[1] Zephyrine 4.2 released (https://news.example/zephyrine-4-2)"),
        "{context}"
    );
    assert!(!context.contains("Lentils"));
    // The mirror repeats the release note word for word: kept once.
    assert_eq!(
        context
            .matches("with a new garbage collector and faster startup")
            .count(),
        1,
        "{context}"
    );
    // The forum page's attempt to close the block is quoted, not obeyed.
    let block = context.split_once("<search_results>").unwrap().1;
    assert_eq!(block.matches("</search_results>").count(), 1);

    let answer = r.json();
    let refs = answer["references"].as_array().unwrap();
    assert_eq!(refs[0]["index"], 1);
    assert_eq!(refs[0]["url"], "https://news.example/zephyrine-4-2");
    assert_eq!(refs[0]["engine"], "web");
    for (i, r) in refs.iter().enumerate() {
        let n = i + 1;
        assert!(context.contains(&format!(
            "[{n}] {} ({})",
            r["title"].as_str().unwrap(),
            r["url"].as_str().unwrap()
        )));
    }
    assert!(
        refs.iter().any(|r| r["url"] == "kb://platform/zephyrine-upgrade"),
        "{refs:?}"
    );
    assert!(answer["choices"][0]["message"]["content"].is_string());

    // Within the default (medium) budget, counted exactly with the route's tokenizer.
    let line = gw.access_line(&r.request_id()).await;
    let tokens = tollgate_tokenize::Tokenizer::o200k().count(context) as u64;
    assert_eq!(line["search"]["tokens_added"].as_u64(), Some(tokens), "{line}");
    assert!(tokens <= 400, "{tokens}");
    assert_eq!(line["search"]["status"], "ok");
    assert_eq!(line["model"], "chat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_size_sets_the_budget_and_web_search_options_never_reaches_the_provider() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    let gw = Gateway::start(&config(&upstream, &e, "")).await;
    let mut added = Vec::new();
    for size in ["low", "high"] {
        let opts = serde_json::json!({"web_search_options": {"search_context_size": size}});
        let r = gw.chat(&ask("chat", false, opts)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-tollgate-search"), Some("ok"));
        let body = sent(&upstream);
        assert!(body.get("web_search_options").is_none(), "{body}");
        let context = body["messages"][1]["content"].as_str().unwrap().to_string();
        let tokens = tollgate_tokenize::Tokenizer::o200k().count(&context);
        let line = gw.access_line(&r.request_id()).await;
        assert_eq!(line["search"]["tokens_added"].as_u64(), Some(tokens as u64));
        added.push((tokens, line["search"]["passages"].as_u64().unwrap()));
    }
    assert!(added[0].0 <= 150, "{added:?}");
    assert!(
        added[1].1 > added[0].1,
        "a bigger budget takes more passages: {added:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_carry_the_references_in_one_event_before_done() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    let gw = Gateway::start(&config(&upstream, &e, "")).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-tollgate-search", "on")],
            &ask("chat", true, serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), Some("ok"));
    let text = r.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let refs: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.strip_prefix("data: ")?).ok())
        .filter(|v| v.get("references").is_some())
        .collect();
    assert_eq!(refs.len(), 1, "{text}");
    assert_eq!(refs[0]["choices"], serde_json::json!([]));
    assert_eq!(refs[0]["references"][0]["url"], "https://news.example/zephyrine-4-2");
    assert!(
        events[events.len() - 2].contains("\"references\""),
        "just before [DONE]"
    );
    // The usage the gateway asked for is still stripped from what the client sees.
    assert!(!text.contains("\"usage\":{"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_slow_engines_give_partial_and_none_left_answers_without_search() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    let gw = Gateway::start(&config(&upstream, &e, "")).await;
    e.set_fault(
        "es",
        Fault {
            delay: Duration::from_secs(2),
            status: None,
        },
    );
    e.set_fault(
        "bing",
        Fault {
            delay: Duration::ZERO,
            status: Some(500),
        },
    );
    let r = gw.chat(&ask("chat:online", false, serde_json::json!({}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), Some("partial"));
    let refs = r.json()["references"].as_array().unwrap().clone();
    assert!(
        refs.iter().all(|r| r["engine"] != "kb" && r["engine"] != "bing"),
        "{refs:?}"
    );
    let line = gw.access_line(&r.request_id()).await;
    assert_eq!(line["search"]["engines_failed"], 2);
    let calls = metric(
        &gw,
        r#"tollgate_search_engine_calls_total{engine="kb",outcome="timeout"}"#,
    )
    .await;
    assert_eq!(calls, Some(1.0));

    for engine in ["searxng", "google", "arxiv"] {
        e.set_fault(
            engine,
            Fault {
                delay: Duration::ZERO,
                status: Some(503),
            },
        );
    }
    let r = gw.chat(&ask("chat:online", false, serde_json::json!({}))).await;
    assert_eq!(r.status, 200, "the request is answered anyway");
    assert_eq!(r.header("x-tollgate-search"), Some("skipped"));
    assert!(r.json().get("references").is_none());
    let body = sent(&upstream);
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        2,
        "nothing injected: {body}"
    );
    let line = gw.access_line(&r.request_id()).await;
    assert_eq!(line["search"]["reason"], "engines_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_do_not_ask_or_may_not_search_are_untouched() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    let gw = Gateway::start(&config(&upstream, &e, "")).await;
    let plain = ask("chat", false, serde_json::json!({}));
    let r = gw.chat(&plain).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), None);
    assert_eq!(sent(&upstream)["messages"].as_array().unwrap().len(), 2);
    // `plain` is not among the models that may search: its options go to the provider as sent.
    let opts = ask("plain", false, serde_json::json!({"web_search_options": {}}));
    let r = gw.chat(&opts).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), None);
    assert!(sent(&upstream).get("web_search_options").is_some());
    // The suffix on a model that may not search names no model.
    let r = gw.chat(&ask("plain:online", false, serde_json::json!({}))).await;
    assert_eq!(r.status, 404);
    assert!(e.queries().is_empty(), "no engine was asked");
}
