//! Request quotas over real sockets, in memory and shared by two gateway processes through the
//! real Redis on 127.0.0.1:6379 (started by `scripts/setup.sh` when none answers).

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use common::*;
use tollgate::key_hash::{format_hash, hash_key};

const KEY: &str = "tg-quota-test-key-0001";

fn config(mock: &str, consumer: &str, quota: &str) -> String {
    format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[consumers]]\nname = \"{consumer}\"\nkeys = [{{ id = \"q-1\", hash = \"{}\" }}]\n\n{quota}",
        provider("mock", mock),
        format_hash(&hash_key(KEY.as_bytes())),
    )
}

async fn ask(gw: &Gateway, user: &str) -> Resp {
    let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"user":"{user}"}}"#);
    gw.post(
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {KEY}"))],
        &body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_user_daily_quota_is_exact_across_two_nodes_sharing_redis() {
    let mock = start_mock("m").await;
    let consumer = unique("dept-q");
    let quota = "[[consumers.quotas]]\nname = \"daily-per-user\"\nlimit = 5\nper = \"day\"\nby = \"user\"\ntimezone = \"+08:00\"\n";
    let cfg = config(&mock.base_url(), &consumer, quota);
    let redis = ["--redis-url", "redis://127.0.0.1:6379"];
    let a = Gateway::start_with(&cfg, &redis).await;
    let b = Gateway::start_with(&cfg, &redis).await;

    // 12 concurrent calls for alice, alternating nodes: exactly 5 are served.
    let mut calls = Vec::new();
    for i in 0..12 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        calls.push(tokio::spawn(async move {
            let auth = format!("Bearer {KEY}");
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            let body = bytes::Bytes::from_static(
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"alice"}"#,
            );
            request(addr, "POST", "/v1/chat/completions", &headers, body)
                .await
                .unwrap()
        }));
    }
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    let served = results.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Resp> = results.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (served, refused.len()),
        (5, 7),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(mock.served(), 5);

    let r = refused[0];
    assert_eq!(r.json()["error"]["code"], "quota_exceeded");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("daily-per-user") && msg.contains("alice"), "{msg}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 86_400);
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));

    // Another user has a quota of their own, on either node; a served call says what is left.
    let r = ask(&b, "bob").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("4"));
    assert_eq!(ask(&a, "bob").await.status, 200);
    assert_eq!(ask(&a, "alice").await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_quotas_hold_on_one_node_by_header_user() {
    let mock = start_mock("m").await;
    let quota = "[[consumers.quotas]]\nname = \"per-minute\"\nlimit = 3\nper = \"minute\"\nby = \"user\"\nuser_from = \"header:x-user\"\n";
    let gw = Gateway::start(&config(&mock.base_url(), "dept-local", quota)).await;
    let auth = format!("Bearer {KEY}");
    let call = |user: &'static str| {
        let auth = auth.clone();
        let gw = &gw;
        async move {
            gw.post(
                "/v1/chat/completions",
                &[("authorization", &auth), ("x-user", user)],
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await
            .status
        }
    };
    for _ in 0..3 {
        assert_eq!(call("carol").await, 200);
    }
    assert_eq!(call("carol").await, 429);
    assert_eq!(call("dave").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_follows_each_quotas_policy() {
    let mock = start_mock("m").await;
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let redis = ["--redis-url", closed.as_str(), "--redis-timeout-ms", "200"];
    let deny = "[[consumers.quotas]]\nname = \"strict\"\nlimit = 100\nper = \"hour\"\nby = \"consumer\"\non_redis_error = \"deny\"\n";
    let gw = Gateway::start_with(&config(&mock.base_url(), &unique("dept-deny"), deny), &redis).await;
    let r = ask(&gw, "erin").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "quota_store_unavailable");

    let allow = deny.replace("\"deny\"", "\"allow\"");
    let gw = Gateway::start_with(&config(&mock.base_url(), &unique("dept-allow"), &allow), &redis).await;
    assert_eq!(ask(&gw, "erin").await.status, 200);
    let metrics = bytes::Bytes::new();
    let m = request(gw.admin, "GET", "/metrics", &[], metrics).await.unwrap().text();
    assert!(m.contains("tollgate_quota_store_errors_total 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_in_a_named_time_zone_resets_at_that_zones_midnight() {
    let mock = start_mock("m").await;
    let zone = "America/New_York";
    let quota = format!(
        "[[consumers.quotas]]\nname = \"daily\"\nlimit = 1\nper = \"day\"\nby = \"user\"\ntimezone = \"{zone}\"\n"
    );
    let gw = Gateway::start(&config(&mock.base_url(), "dept-ny", &quota)).await;
    assert_eq!(ask(&gw, "frank").await.status, 200);
    let r = ask(&gw, "frank").await;
    assert_eq!(r.status, 429);
    let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();

    // Seconds to the next local midnight in New York, daylight saving time included.
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get(zone).unwrap());
    let midnight = now.tomorrow().unwrap().start_of_day().unwrap();
    let expected = midnight.timestamp().as_second() - now.timestamp().as_second();
    assert!(
        (retry - expected).abs() <= 2,
        "retry-after {retry}, next midnight in {zone} in {expected} s"
    );

    // A name that is no time zone is a config error naming the field.
    let dir = temp_dir();
    let bad = dir.join("bad-zone.toml");
    std::fs::write(
        &bad,
        config(&mock.base_url(), "dept-x", &quota.replace(zone, "Mars/Olympus_Mons")),
    )
    .unwrap();
    let (passed, err) = check_config(&bad);
    assert!(!passed);
    assert!(err.contains("timezone") && err.contains("Mars/Olympus_Mons"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_the_gateway_did_not_serve_give_their_quota_counts_back() {
    let mock = start_mock("m").await;
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    // Per consumer, 3 calls a day; per user, 1 a minute.
    let quotas = "[[consumers.quotas]]\nname = \"daily\"\nlimit = 3\nper = \"day\"\nby = \"consumer\"\n\n\
                  [[consumers.quotas]]\nname = \"per-minute\"\nlimit = 1\nper = \"minute\"\nby = \"user\"\n";
    for redis in [false, true] {
        let consumer = unique("dept-refund");
        let cfg = format!(
            "{}[[models]]\nname = \"down\"\ntargets = [{{ provider = \"dead\" }}]\n\n{}",
            provider("dead", &dead),
            config(&mock.base_url(), &consumer, quotas)
        );
        let flags: &[&str] = if redis {
            &["--redis-url", "redis://127.0.0.1:6379"]
        } else {
            &[]
        };
        let gw = Gateway::start_with(&cfg, flags).await;
        let auth = format!("Bearer {KEY}");
        let call = |model: &'static str, user: &'static str| {
            let (auth, gw) = (auth.clone(), &gw);
            async move {
                let body =
                    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"user":"{user}"}}"#);
                gw.post("/v1/chat/completions", &[("authorization", &auth)], &body)
                    .await
                    .status
            }
        };
        // No provider reachable: a 502, and neither quota keeps the call.
        assert_eq!(call("down", "ann").await, 502, "redis: {redis}");
        assert_eq!(call("m", "ann").await, 200, "redis: {redis}");
        // Refused by the per-minute quota: the daily one does not keep that call either.
        assert_eq!(call("m", "ann").await, 429, "redis: {redis}");
        assert_eq!(call("m", "ben").await, 200, "redis: {redis}");
        // So the day has room for exactly one more served call.
        assert_eq!(call("m", "cat").await, 200, "redis: {redis}");
        assert_eq!(call("m", "dan").await, 429, "redis: {redis}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clusters_sharing_one_redis_keep_their_counts_apart_by_namespace() {
    let mock = start_mock("m").await;
    let consumer = unique("dept-ns");
    let rules = "[[consumers.quotas]]\nname = \"daily-per-user\"\nlimit = 2\nper = \"day\"\nby = \"user\"\n\n\
                 [[limits]]\nname = \"per-consumer\"\nby = [\"consumer\"]\nrequests = 3\nper = \"day\"\nmode = \"exact\"\n";
    let cfg = config(&mock.base_url(), &consumer, rules);
    let (east, west) = (unique("east"), unique("west"));
    let flags = |ns: &str| {
        [
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--redis-namespace",
            ns,
            "--limits-exact-timeout-ms",
            "5000",
        ]
        .map(str::to_string)
    };
    let start = |ns: String| {
        let cfg = cfg.clone();
        async move {
            let f = flags(&ns);
            let f: Vec<&str> = f.iter().map(String::as_str).collect();
            Gateway::start_with(&cfg, &f).await
        }
    };
    let (a, b, c) = (start(east.clone()).await, start(east).await, start(west).await);

    // The quota: one count for the two east nodes, another for the west one. A served call
    // tells the tighter of quota and limit: here the quota (1 left against the limit's 2).
    let first = ask(&a, "alice").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(ask(&b, "alice").await.status, 200);
    assert_eq!(ask(&a, "alice").await.status, 429);
    assert_eq!(ask(&c, "alice").await.status, 200, "west counts apart from east");
    assert_eq!(ask(&c, "alice").await.status, 200);
    assert_eq!(ask(&c, "alice").await.status, 429);

    // The rate limit follows the Redis namespace too (no --limits-namespace given): east has
    // used 2 of its 3, west 2 of its own 3.
    let bob = ask(&b, "bob").await;
    assert_eq!(bob.status, 200);
    // Now the limit is tighter (0 left against bob's quota's 1), and it is what bob is told.
    assert_eq!(bob.header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(bob.header("x-ratelimit-remaining-requests"), Some("0"));
    let r = ask(&a, "carol").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(ask(&c, "bob").await.status, 200, "west's limit is its own");
}

#[test]
fn a_namespace_that_would_change_a_key_s_shape_is_refused() {
    for bad in ["a{b}", "a:b", "x y", &"n".repeat(65)] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["--redis-namespace", bad, "--config", "/nonexistent.toml"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: accepted");
        assert!(err.contains("--redis-namespace"), "{bad}: {err}");
    }
}
