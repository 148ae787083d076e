//! Token and request rate limits over real sockets: one gateway in memory, and several gateway
//! processes sharing limits through the real Redis on 127.0.0.1:6379 (or, for the outage test, a
//! `redis-server` of the test's own that it stops and restarts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on setup errors"
)]

mod common;
#[path = "../../limits/tests/support/own_redis.rs"]
mod own_redis;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use own_redis::OwnRedis;
use tollgate::key_hash::{format_hash, hash_key};

/// A config with model `m` on the mock and the given `[[limits]]` (and more) appended.
fn config(mock: &str, rest: &str) -> String {
    format!(
        "{}[[models]]\nname = \"m\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[models]]\nname = \"other\"\ntargets = [{{ provider = \"mock\" }}]\n\n{rest}",
        provider("mock", mock)
    )
}

fn shared(namespace: &str) -> Vec<String> {
    ["--redis-url", "redis://127.0.0.1:6379", "--limits-namespace", namespace]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

async fn start(cfg: &str, flags: &[String]) -> Gateway {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Gateway::start_with(cfg, &flags).await
}

async fn call(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request(addr, "POST", "/v1/chat/completions", &h, Bytes::from(body.to_string()))
        .await
        .unwrap()
}

/// `n` concurrent calls spread over `addrs`; the responses.
async fn burst(addrs: &[SocketAddr], n: usize, headers: &[(&str, &str)], body: &str) -> Vec<Resp> {
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let addr = addrs[i % addrs.len()];
            let (headers, body) = (headers.clone(), body.to_string());
            tokio::spawn(async move {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                call(addr, &h, &body).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Wait until every node counts all of them in the node registry (their share of a new key
/// depends on it).
async fn see_each_other(nodes: &[Gateway]) {
    let want = format!("tollgate_limit_sync_nodes {}", nodes.len());
    for n in nodes {
        let seen = eventually(Duration::from_secs(10), || async {
            let m = request(n.admin, "GET", "/metrics", &[], Bytes::new()).await.unwrap();
            m.text().lines().any(|l| l == want)
        })
        .await;
        assert!(seen, "a node never saw {} nodes", nodes.len());
    }
}

fn count(resps: &[Resp], status: u16) -> usize {
    resps.iter().filter(|r| r.status == status).count()
}

fn num(r: &Resp, header: &str) -> i64 {
    r.header(header)
        .unwrap_or_else(|| panic!("no {header}: {:?}", r.headers))
        .parse()
        .unwrap()
}

/// A rule where each request reserves about 1000 tokens (completion reserve 1000, a short
/// prompt) and the capacity fits 10 of them.
const FITS_TEN: &str = "[[limits]]\nname = \"fits-ten\"\nby = [\"header:x-team\"]\ntokens = 10500\nper = \"day\"\ncompletion_reserve = 1000\n";

/// The mock holds every answer back a second, so no reservation is reconciled (and no tokens
/// given back) while the burst is being admitted.
const SLOW: (&str, &str) = ("x-mock-ttft-ms", "1000");

/// 100 concurrent requests of one team (each reserving ~1000 tokens against `FITS_TEN`) spread
/// over `addrs`, answers held back by `SLOW`.
async fn burst_of_100(addrs: &[SocketAddr]) -> Vec<Resp> {
    let team = unique("team");
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    burst(addrs, 100, &[("x-team", &team), SLOW], body).await
}

/// Three gateway processes on one config and flags.
async fn three_nodes(cfg: &str, flags: &[String]) -> [Gateway; 3] {
    [
        start(cfg, flags).await,
        start(cfg, flags).await,
        start(cfg, flags).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_requests_on_one_node_admit_at_most_the_ten_that_fit() {
    let mock = start_mock("m").await;
    let gw = start(&config(&mock.base_url(), FITS_TEN), &[]).await;
    let resps = burst_of_100(&[gw.addr]).await;
    let (ok, limited) = (count(&resps, 200), count(&resps, 429));
    println!("one node: {ok} admitted, {limited} refused");
    assert_eq!(ok + limited, 100);
    assert_eq!(ok, 10, "exactly the 10 that fit");
    let refused = resps.iter().find(|r| r.status == 429).unwrap();
    let msg = refused.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("`fits-ten`") && msg.contains("tokens per day"), "{msg}");
    assert_eq!(refused.json()["error"]["code"], "rate_limit_exceeded");
    assert!(num(refused, "retry-after") >= 1);
    assert_eq!(num(refused, "x-ratelimit-limit-tokens"), 10500);
    assert!(refused.header("x-ratelimit-reset-tokens").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_requests_across_three_nodes_admit_at_most_ten() {
    let mock = start_mock("m").await;
    let cfg = config(&mock.base_url(), FITS_TEN);
    let flags = shared(&unique("burst3"));
    let nodes = three_nodes(&cfg, &flags).await;
    see_each_other(&nodes).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let resps = burst_of_100(&addrs).await;
    let ok = count(&resps, 200);
    println!("three nodes (sync mode): {ok} of 100 admitted (10 fit)");
    let odd: Vec<String> = resps
        .iter()
        .filter(|r| r.status != 200 && r.status != 429)
        .map(|r| r.text())
        .collect();
    assert_eq!(ok + count(&resps, 429), 100, "{odd:?}");
    let mut seen = Vec::new();
    for n in &nodes {
        let m = request(n.admin, "GET", "/metrics", &[], Bytes::new())
            .await
            .unwrap()
            .text();
        seen.push(
            m.lines()
                .find(|l| l.starts_with("tollgate_limit_sync_nodes"))
                .unwrap_or("")
                .to_string(),
        );
    }
    let per_node: Vec<usize> = (0..3)
        .map(|i| resps.iter().skip(i).step_by(3).filter(|r| r.status == 200).count())
        .collect();
    assert!(ok <= 10, "over-admitted: {ok} {per_node:?} {seen:?}");
    assert!(ok >= 9, "under-admitted: {ok} {per_node:?} {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_smaller_than_the_node_count_admits_its_first_request_on_any_node() {
    let mock = start_mock("m").await;
    // One request a minute per user, on three nodes: no node's even share holds a whole request.
    let rule = "[[limits]]\nname = \"one-a-minute\"\nby = [\"header:x-user\"]\nrequests = 1\nper = \"minute\"\n";
    let cfg = config(&mock.base_url(), rule);
    // The wait for Redis's first grant is bounded by --limits-exact-timeout-ms (100 ms): on a
    // loaded test machine a debug build's sync round can take longer, which is the bound working,
    // not the behaviour under test (without the wait, the first request is refused at once).
    let mut flags = shared(&unique("tiny"));
    flags.extend(["--limits-exact-timeout-ms".to_string(), "2000".to_string()]);
    let nodes = three_nodes(&cfg, &flags).await;
    see_each_other(&nodes).await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    for (i, first) in nodes.iter().enumerate() {
        let user = unique("user");
        let r = call(first.addr, &[("x-user", &user)], body).await;
        assert_eq!(r.status, 200, "first request of a user on node {i}: {}", r.text());
        for other in &nodes {
            let again = call(other.addr, &[("x-user", &user)], body).await;
            assert_eq!(
                again.status,
                429,
                "a second request within the minute: {}",
                again.text()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exact_mode_admits_exactly_the_limit_across_three_nodes() {
    let mock = start_mock("m").await;
    let rule = FITS_TEN.replace("per = \"day\"", "per = \"day\"\nmode = \"exact\"");
    let cfg = config(&mock.base_url(), &rule);
    // A generous timeout: on a loaded machine a 100 ms default could time out and, fail-open,
    // admit without a reservation.
    let mut flags = shared(&unique("exact3"));
    flags.extend(["--limits-exact-timeout-ms".to_string(), "5000".to_string()]);
    let nodes = three_nodes(&cfg, &flags).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let resps = burst_of_100(&addrs).await;
    assert_eq!(count(&resps, 200), 10);
    assert_eq!(count(&resps, 429), 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_are_reconciled_with_the_real_usage() {
    let mock = start_mock("m").await;
    let rule = "[[limits]]\nname = \"tpd\"\ntokens = 100000\nper = \"day\"\n";
    let gw = start(&config(&mock.base_url(), rule), &[]).await;
    let body = r#"{"model":"m","max_tokens":500,"messages":[{"role":"user","content":"how many tokens is this"}]}"#;
    let first = call(gw.addr, &[], body).await;
    assert_eq!(first.status, 200);
    let reserved = 100_000 - num(&first, "x-ratelimit-remaining-tokens");
    assert!(reserved > 500, "prompt + max_tokens reserved, got {reserved}");
    let used = first.json()["usage"]["total_tokens"].as_i64().unwrap();
    assert!(used < reserved);
    let second = call(gw.addr, &[], body).await;
    let remaining = num(&second, "x-ratelimit-remaining-tokens");
    // The first request now costs what it used; the second holds its reservation. (A day's
    // refill over the test adds well under one token.)
    assert!(
        (remaining - (100_000 - used - reserved)).abs() <= 1,
        "remaining {remaining}, used {used}, reserved {reserved}"
    );

    // Without max_tokens the rule reserves the default completion reserve (1024).
    let third = call(
        gw.addr,
        &[],
        r#"{"model":"m","messages":[{"role":"user","content":"how many tokens is this"}]}"#,
    )
    .await;
    let before = num(&second, "x-ratelimit-remaining-tokens") + reserved
        - second.json()["usage"]["total_tokens"].as_i64().unwrap();
    let third_reserve = before - num(&third, "x-ratelimit-remaining-tokens");
    assert!(
        (third_reserve - (reserved - 500 + 1024)).abs() <= 1,
        "reserved {third_reserve}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_larger_than_the_whole_limit_is_refused_at_once() {
    let mock = start_mock("m").await;
    let rule = "[[limits]]\nname = \"small\"\ntokens = 100\nper = \"minute\"\n";
    let gw = start(&config(&mock.base_url(), rule), &[]).await;
    let r = call(
        gw.addr,
        &[],
        r#"{"model":"m","max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "request_exceeds_limit");
    assert!(r.header("retry-after").is_none(), "waiting would not help");
    assert_eq!(mock.requests().len(), 0, "nothing went upstream");
    let ok = call(
        gw.addr,
        &[],
        r#"{"model":"m","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_limits_and_per_model_rules_apply_only_where_selected() {
    let mock = start_mock("m").await;
    let rule = "[[limits]]\nname = \"m-rpm\"\nrequests = 2\nper = \"minute\"\nmodels = [\"m\"]\n";
    let gw = start(&config(&mock.base_url(), rule), &[]).await;
    let m = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let first = call(gw.addr, &[], m).await;
    assert_eq!(num(&first, "x-ratelimit-limit-requests"), 2);
    assert_eq!(num(&first, "x-ratelimit-remaining-requests"), 1);
    assert_eq!(call(gw.addr, &[], m).await.status, 200);
    let third = call(gw.addr, &[], m).await;
    assert_eq!(third.status, 429);
    assert!(third.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests per minute"));
    let other = call(
        gw.addr,
        &[],
        r#"{"model":"other","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(other.status, 200, "the rule selects model m only");
    assert!(other.header("x-ratelimit-limit-requests").is_none());
}

/// A rule of one request per day keyed by `by`; whether two requests with these headers and
/// paths share a bucket (the second refused) or not.
async fn second_is_refused(
    by: &str,
    network: &str,
    first: (&str, &[(&str, &str)]),
    second: (&str, &[(&str, &str)]),
) -> bool {
    let mock = start_mock("m").await;
    let rule = format!("{network}[[limits]]\nname = \"one\"\nby = [\"{by}\"]\nrequests = 1\nper = \"day\"\n");
    let gw = start(&config(&mock.base_url(), &rule), &[]).await;
    let send = |(path, headers): (&str, &[(&str, &str)])| {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        let h: Vec<(String, String)> = h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (addr, path) = (gw.addr, path.to_string());
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            request(
                addr,
                "POST",
                &path,
                &h,
                Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(send(first).await.status, 200);
    let r = send(second).await;
    assert!(r.status == 200 || r.status == 429, "{}", r.status);
    r.status == 429
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_by_header_query_and_cookie_separate_callers() {
    let (a, b) = ([("x-user-id", "alice")], [("x-user-id", "bob")]);
    assert!(second_is_refused("header:x-user-id", "", (CHAT, &a), (CHAT, &a)).await);
    assert!(!second_is_refused("header:x-user-id", "", (CHAT, &a), (CHAT, &b)).await);

    let (qa, qb) = ("/v1/chat/completions?team=red", "/v1/chat/completions?x=1&team=blue");
    assert!(second_is_refused("query:team", "", (qa, &[]), (qa, &[])).await);
    assert!(!second_is_refused("query:team", "", (qa, &[]), (qb, &[])).await);

    let (ca, cb) = ([("cookie", "theme=dark; tenant=t1")], [("cookie", "tenant=t2")]);
    assert!(second_is_refused("cookie:tenant", "", (CHAT, &ca), (CHAT, &ca)).await);
    assert!(!second_is_refused("cookie:tenant", "", (CHAT, &ca), (CHAT, &cb)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_by_ip_believe_forwarded_for_only_from_trusted_proxies() {
    let (a, b) = (
        [("x-forwarded-for", "203.0.113.7")],
        [("x-forwarded-for", "198.51.100.9")],
    );
    // No trusted proxy: every test client is 127.0.0.1, whatever X-Forwarded-For claims.
    assert!(second_is_refused("ip", "", (CHAT, &a), (CHAT, &b)).await);
    // Loopback trusted (a load balancer on this host): the forwarded address is the client.
    let trusted = "[network]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n";
    assert!(!second_is_refused("ip", trusted, (CHAT, &a), (CHAT, &b)).await);
    assert!(second_is_refused("ip", trusted, (CHAT, &a), (CHAT, &a)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_by_consumer_give_each_consumer_its_own_bucket() {
    let mock = start_mock("m").await;
    let consumers: String = ["red", "blue"]
        .iter()
        .map(|c| {
            format!(
                "[[consumers]]\nname = \"{c}\"\nkeys = [{{ id = \"{c}-1\", hash = \"{}\" }}]\n\n",
                format_hash(&hash_key(format!("key-of-{c}").as_bytes()))
            )
        })
        .collect();
    let rule = format!("{consumers}[[limits]]\nname = \"per-consumer\"\nby = [\"consumer\"]\nrequests = 1\nper = \"day\"\nconsumers = [\"red\", \"blue\"]\n");
    let gw = start(&config(&mock.base_url(), &rule), &[]).await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let red = [("authorization", "Bearer key-of-red")];
    let blue = [("authorization", "Bearer key-of-blue")];
    assert_eq!(call(gw.addr, &red, body).await.status, 200);
    assert_eq!(call(gw.addr, &blue, body).await.status, 200);
    assert_eq!(call(gw.addr, &red, body).await.status, 429);
    assert_eq!(call(gw.addr, &blue, body).await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_stream_is_charged_for_what_was_generated() {
    let mock = start_mock("m").await;
    let rule = "[[limits]]\nname = \"tpd\"\ntokens = 1000000\nper = \"day\"\n";
    let gw = start(&config(&mock.base_url(), rule), &[]).await;
    let headers = [
        ("content-type", "application/json"),
        ("x-mock-chunks", "200"),
        ("x-mock-chunk-delay-ms", "10"),
    ];
    let body = Bytes::from_static(br#"{"model":"m","stream":true,"max_tokens":5000,"messages":[{"role":"user","content":"tell me a long story"}]}"#);
    let resp = open(gw.addr, "POST", CHAT, &headers, body).await.unwrap();
    let reserved = 1_000_000
        - resp.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
    let mut stream = resp.into_body();
    use http_body_util::BodyExt;
    let mut got = 0;
    while got < 2_000 {
        if let Some(Ok(f)) = stream.frame().await {
            got += f.into_data().map(|d| d.len()).unwrap_or(0);
        }
    }
    drop(stream); // the client goes away mid-stream
    let used = eventually_metric(&gw, "tollgate_limit_tokens_total{kind=\"used\",rule=\"tpd\"}").await;
    println!("abandoned stream: reserved {reserved}, charged {used}");
    assert!(used > 0.0, "the abandoned stream was charged nothing");
    assert!(
        (used as i64) < reserved,
        "charged the whole reservation ({used} of {reserved})"
    );
    // Charged more than the prompt: what was streamed counts.
    let prompt = eventually_metric(
        &gw,
        "tollgate_prompt_tokens_counted_total{method=\"estimate\",model=\"m\"}",
    )
    .await;
    assert!(used > prompt, "only the prompt was charged ({used} <= {prompt})");
}

/// The value of a metric series once it is above zero (the request's last phase runs after the
/// client went away); zero if it never gets there.
async fn eventually_metric(gw: &Gateway, series: &str) -> f64 {
    let mut last = 0.0;
    for _ in 0..100 {
        let r = request(gw.admin, "GET", "/metrics", &[], Bytes::new()).await.unwrap();
        let text = r.text();
        if let Some(v) = text
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            if v > 0.0 {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_under_sustained_load_stay_within_the_documented_bound() {
    let mock = start_mock("m").await;
    // Requests reserve more than they use (max_tokens 64, a few tokens used): the limit is on
    // what is used, so the test sums the usage the provider reported for every admitted request.
    let rule = "[[limits]]\nname = \"shared-tpd\"\nby = [\"consumer\"]\ntokens = 20000\nper = \"day\"\n";
    let cfg = config(&mock.base_url(), rule);
    let flags = shared(&unique("sustained3"));
    let nodes = three_nodes(&cfg, &flags).await;
    see_each_other(&nodes).await;
    let mut tasks = Vec::new();
    for node in &nodes {
        for _ in 0..4 {
            let addr = node.addr;
            tasks.push(tokio::spawn(async move {
                let (mut used, mut refused_in_a_row) = (0i64, 0);
                let body = r#"{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"count me"}]}"#;
                while refused_in_a_row < 20 {
                    let r = call(addr, &[], body).await;
                    match r.status {
                        200 => {
                            used += r.json()["usage"]["total_tokens"].as_i64().unwrap();
                            refused_in_a_row = 0;
                        }
                        429 => {
                            refused_in_a_row += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("unexpected {other}: {}", r.text()),
                    }
                }
                used
            }));
        }
    }
    let mut used = 0;
    for t in tasks {
        used += t.await.unwrap();
    }
    let over = used as f64 / 20_000.0 - 1.0;
    println!(
        "3 gateways, 12 clients, 20 ms sync: {used} tokens used against a limit of 20000: over-admission {:+.2}%",
        over * 100.0
    );
    assert!(over < 0.05, "over-admission {:.2}% is past the 5% bound", over * 100.0);
    assert!(over > -0.10, "under-admitted: {used}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_mid_test_fails_open_or_closed_per_rule_and_reconverges() {
    let mock = start_mock("m").await;
    let rules = "[[limits]]\nname = \"open\"\ntokens = 100000\nper = \"day\"\nmodels = [\"m\"]\n\n\
                 [[limits]]\nname = \"closed\"\ntokens = 100000\nper = \"day\"\nmodels = [\"other\"]\non_redis_error = \"deny\"\n";
    let cfg = config(&mock.base_url(), rules);
    let mut redis = OwnRedis::start(free_port());
    let flags: Vec<String> = [
        "--redis-url",
        &format!("redis://127.0.0.1:{}", redis.port),
        "--redis-timeout-ms",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let a = start(&cfg, &flags).await;
    let (open_body, closed_body) = (
        r#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"other","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(call(a.addr, &[], open_body).await.status, 200);
    assert_eq!(call(a.addr, &[], closed_body).await.status, 200);

    redis.stop();
    let denied = eventually(Duration::from_secs(5), || async {
        call(a.addr, &[], closed_body).await.status == 503
    })
    .await;
    assert!(denied, "the fail-closed rule refuses while redis is down");
    let r = call(a.addr, &[], closed_body).await;
    assert_eq!(r.json()["error"]["code"], "limit_store_unavailable");
    let mut served_during = 0;
    for _ in 0..10 {
        let r = call(a.addr, &[], open_body).await;
        assert_eq!(r.status, 200, "the fail-open rule serves on local state: {}", r.text());
        served_during += 1;
    }
    let metrics = request(a.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("tollgate_limit_sync_up 0"),
        "the outage shows in metrics"
    );

    let _redis = OwnRedis::start(redis.port);
    let back = eventually(Duration::from_secs(10), || async {
        call(a.addr, &[], closed_body).await.status == 200
    })
    .await;
    assert!(back, "the fail-closed rule serves again once redis is back");
    // A second node, started after the outage, sees what the first used during it.
    let b = start(&cfg, &flags).await;
    let first = call(b.addr, &[], open_body).await;
    assert_eq!(first.status, 200);
    let converged = eventually(Duration::from_secs(5), || async {
        let r = call(b.addr, &[], open_body).await;
        let remaining: i64 = r.header("x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
        // 10 requests during the outage, ~100+ tokens reserved or used each.
        remaining < 100_000 - served_during * 50
    })
    .await;
    assert!(converged, "node B never saw node A's outage consumption");
    assert!(a.log().contains("redis unreachable"), "the outage is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_refuses_scripts_is_reported_loudly_and_never_silently_per_node() {
    let mock = start_mock("m").await;
    let rules = "[[limits]]\nname = \"strict\"\ntokens = 100000\nper = \"day\"\non_redis_error = \"deny\"\n";
    let cfg = config(&mock.base_url(), rules);
    // As a proxy in front of Redis might: scripting commands are not available.
    let redis = OwnRedis::start_with(
        free_port(),
        &[
            "--rename-command",
            "EVAL",
            "",
            "--rename-command",
            "EVALSHA",
            "",
            "--rename-command",
            "SCRIPT",
            "",
        ],
    );
    let flags: Vec<String> = ["--redis-url", &format!("redis://127.0.0.1:{}", redis.port)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let gw = start(&cfg, &flags).await;
    assert!(
        gw.log().contains("REDIS REFUSES SCRIPTS"),
        "not reported at start:\n{}",
        gw.log()
    );
    let refused = eventually(Duration::from_secs(5), || async {
        call(
            gw.addr,
            &[],
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await
        .status
            == 503
    })
    .await;
    assert!(refused, "a fail-closed rule must not be enforced on this node alone");
    let metrics = request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text();
    assert!(metrics.contains("tollgate_limit_redis_scripts_ok 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_key_is_reported_without_the_client_value_that_names_it() {
    let mock = start_mock("m").await;
    let rule = "[[limits]]\nname = \"per-session\"\nby = [\"cookie:session\"]\nrequests = 100000\nper = \"minute\"\n";
    let flags = vec!["--limits-hot-key-rps".to_string(), "5".to_string()];
    let gw = start(&config(&mock.base_url(), rule), &flags).await;
    // Steady load on one key across several seconds: hot in each of them.
    let until = std::time::Instant::now() + Duration::from_millis(3_300);
    while std::time::Instant::now() < until {
        let r = call(
            gw.addr,
            &[("cookie", "session=sess-secret-9f2c")],
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let hot = eventually_metric(&gw, "tollgate_limit_hot_keys_total{rule=\"per-session\"}").await;
    assert!(hot >= 2.0, "each second the key was hot is counted: {hot}");
    let log = gw.log();
    assert_eq!(
        log.matches("limits: hot key").count(),
        1,
        "a key that stays hot is logged once per interval: {log}"
    );
    assert!(!log.contains("sess-secret-9f2c"), "a cookie value reached the log");
    // A quiet key is not reported.
    assert!(
        call(
            gw.addr,
            &[("cookie", "session=quiet")],
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
        )
        .await
        .status
            == 200
    );
    assert_eq!(
        gw.log().matches("limits: hot key").count(),
        log.matches("limits: hot key").count()
    );
}
