//! The planner: needed or not, multi-part splitting, domains, failures and fallbacks.

use crate::common::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_splits_questions_and_picks_engines_by_domain() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    let planner = planner_mock("planner", |_| {}).await;
    let backup = planner_mock("backup", |_| {}).await;
    let gw = Gateway::start(&planned_config(&upstream, &e, &planner, &backup)).await;

    let r = gw.chat(&ask_text("chat:online", PARTS)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-search"), Some("ok"));
    // The planner was asked for JSON, with the conversation and the domains the engines serve.
    let asked = planner.requests().last().unwrap().json();
    assert_eq!(asked["response_format"]["type"], "json_object");
    let shown = asked["messages"][1]["content"].as_str().unwrap();
    assert!(shown.contains(PARTS), "{shown}");
    let instructions = asked["messages"][0]["content"].as_str().unwrap();
    for d in ["\"web\"", "\"academic\"", "\"private\""] {
        assert!(instructions.contains(d), "{instructions}");
    }
    // Three parts, three queries; each went to the engines of its domain only.
    let queries = e.queries();
    let of = |engine: &str| -> Vec<String> {
        queries
            .iter()
            .filter(|(e, _)| e == engine)
            .map(|(_, q)| q.clone())
            .collect()
    };
    assert_eq!(of("arxiv"), ["papers zephyrine garbage collector"]);
    assert_eq!(of("es"), ["our zephyrine upgrade plan"]);
    for web in ["searxng", "bing", "google"] {
        assert_eq!(of(web), ["zephyrine 4.2 released"], "{web}");
    }
    let context = sent(&upstream)["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(
        context.contains("kb://platform/zephyrine-upgrade") && context.contains("arxiv.org/abs/2611.00001v1"),
        "{context}"
    );
    let line = gw.access_line(&r.request_id()).await;
    assert_eq!(line["search"]["queries"], 3);
    assert_eq!(line["search"]["planner"]["model"], "planner");
    assert_eq!(line["search"]["planner"]["attempts"], 1);
    assert!(line["search"]["planner"]["prompt_tokens"].as_u64().unwrap() > 0);
    // The planner's tokens count under its own model, and are charged to the request's limits.
    let tokens = metric(&gw, r#"tollgate_tokens_total{kind="prompt",model="planner"}"#).await;
    assert!(tokens.is_some_and(|t| t > 0.0), "{tokens:?}");
    let planner_total = line["search"]["planner"]["prompt_tokens"].as_u64().unwrap()
        + line["search"]["planner"]["completion_tokens"].as_u64().unwrap();
    let used = metric(&gw, r#"tollgate_limit_tokens_total{kind="used",rule="everyone"}"#).await;
    assert_eq!(
        used,
        Some((line["total_tokens"].as_u64().unwrap() + planner_total) as f64)
    );

    // A greeting needs no search: nothing is asked of the engines, nothing injected.
    let before = e.queries().len();
    let r = gw.chat(&ask_text("chat:online", "Hello there!")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), Some("skipped"));
    assert_eq!(e.queries().len(), before);
    assert_eq!(sent(&upstream)["messages"].as_array().unwrap().len(), 1);
    let line = gw.access_line(&r.request_id()).await;
    assert_eq!(line["search"]["reason"], "not_needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_planner_falls_back_and_a_wrong_plan_means_no_search() {
    let upstream = start_mock("up").await;
    let e = start_engines().await;
    // The planner's own model fails; its fallback model plans.
    let failing = planner_mock("planner", |c| {
        c.error_status = Some(503);
        c.error_rate = 1.0;
    })
    .await;
    let backup = planner_mock("backup", |_| {}).await;
    let gw = Gateway::start(&planned_config(&upstream, &e, &failing, &backup)).await;
    let r = gw.chat(&ask_text("chat:online", QUESTION)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), Some("ok"));
    assert_eq!(backup.requests().last().unwrap().json()["model"], "small");
    let line = gw.access_line(&r.request_id()).await;
    assert_eq!(line["search"]["planner"]["attempts"], 2);
    drop(gw);

    // Every planner target fails: the request is answered without search.
    let down = planner_mock("backup", |c| {
        c.error_status = Some(500);
        c.error_rate = 1.0;
    })
    .await;
    let gw = Gateway::start(&planned_config(&upstream, &e, &failing, &down)).await;
    let r = gw.chat(&ask_text("chat:online", QUESTION)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), Some("skipped"));
    assert_eq!(
        gw.access_line(&r.request_id()).await["search"]["reason"],
        "planner_failed"
    );
    assert_eq!(sent(&upstream)["messages"].as_array().unwrap().len(), 1);
    drop(gw);

    // A planner that answers prose, not a plan: no search either.
    let chatty = planner_mock("planner", |c| {
        c.reply = Some("Sure! I would search the web for Zephyrine.".into())
    })
    .await;
    let gw = Gateway::start(&planned_config(&upstream, &e, &chatty, &down)).await;
    let queries = e.queries().len();
    let r = gw.chat(&ask_text("chat:online", QUESTION)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-search"), Some("skipped"));
    assert_eq!(
        gw.access_line(&r.request_id()).await["search"]["reason"],
        "planner_invalid"
    );
    assert_eq!(e.queries().len(), queries, "no engine was asked");
}
