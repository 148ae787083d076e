//! Shared limits across several nodes (each a `BucketTable` with its own `Syncer` and Redis
//! connection) against a real Redis: the one on 127.0.0.1:6379 (started by `scripts/setup.sh`),
//! or, for the outage test, a `redis-server` of the test's own that it stops and restarts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on setup errors"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::own_redis::OwnRedis;
use tollgate_limits::{
    BucketTable, Clock, Decision, ExactBuckets, Limit, RedisCounters, SyncOptions, Syncer, SystemClock, TableOptions,
};

const DAY: u64 = 86_400_000;

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

async fn client(url: &str) -> fred::prelude::Client {
    let c = RedisCounters::new(url, Duration::from_secs(1)).unwrap();
    c.connect(Duration::from_secs(5)).await.unwrap();
    c.client().clone()
}

struct Node {
    table: Arc<BucketTable>,
    syncer: Syncer,
}

/// `n` nodes registered in one node set, each having seen the others.
async fn nodes(url: &str, n: usize, tag: &str) -> Vec<Node> {
    let nodes_key = format!("tollgate:test:{{{tag}}}:nodes");
    let mut out = Vec::new();
    for i in 0..n {
        let table = Arc::new(BucketTable::new(TableOptions::default()));
        let syncer = Syncer::new(
            table.clone(),
            client(url).await,
            Arc::new(SystemClock),
            SyncOptions {
                node_id: format!("{tag}-node{i}"),
                interval: Duration::from_millis(20),
                timeout: Duration::from_millis(500),
                max_keys_per_round: 10_000,
                nodes_key: nodes_key.clone(),
            },
        );
        syncer.check_scripts().await.unwrap();
        out.push(Node { table, syncer });
    }
    for node in &out {
        assert_eq!(node.syncer.check_scripts().await.unwrap(), n as u64);
    }
    out
}

fn key(tag: &str) -> String {
    format!("tollgate:test:{{{tag}}}:bucket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100_across_three_nodes_admits_at_most_the_10_that_fit() {
    let tag = unique("burst");
    let nodes = nodes("redis://127.0.0.1:6379", 3, &tag).await;
    let limit = Limit::new(1_000, DAY);
    let key = key(&tag);
    let now = SystemClock.now_ms();
    let mut admitted = 0;
    // 100 requests of 100 tokens, spread over the nodes, with syncs going on in between.
    for i in 0..100 {
        let node = &nodes[i % 3];
        if node.table.reserve(&key, limit, 100, now, true, false).admitted() {
            admitted += 1;
        }
        if i % 10 == 9 {
            futures::future::join_all(nodes.iter().map(|n| n.syncer.round())).await;
        }
    }
    println!("admitted {admitted} of 100 (10 fit)");
    assert!(admitted <= 10, "over-admitted: {admitted}");
    assert!(admitted >= 9, "under-admitted: {admitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_load_on_three_syncing_nodes_stays_within_the_bound() {
    let tag = unique("sustained");
    let nodes = nodes("redis://127.0.0.1:6379", 3, &tag).await;
    let limit = Limit::new(20_000, DAY);
    let key = key(&tag);
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for node in nodes {
        let Node { table, syncer } = node;
        let sync = tokio::spawn(syncer.run());
        let (key, admitted) = (key.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused_in_a_row = 0;
            while refused_in_a_row < 100 {
                let now = SystemClock.now_ms();
                match table.reserve(&key, limit, 10, now, true, false) {
                    Decision::Admitted { .. } => {
                        admitted.fetch_add(10, Ordering::Relaxed);
                        refused_in_a_row = 0;
                    }
                    _ => refused_in_a_row += 1,
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            sync.abort();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = admitted.load(Ordering::Relaxed);
    let over = total as f64 / limit.capacity as f64 - 1.0;
    println!(
        "3 nodes, 20 ms sync: admitted {total} tokens against a limit of {}: over-admission {:.2}%",
        limit.capacity,
        over * 100.0
    );
    assert!(over < 0.05, "over-admission {:.2}% is past the 5% bound", over * 100.0);
    assert!(total as f64 >= limit.capacity as f64 * 0.9, "under-admitted: {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_node_gets_most_of_the_limit_while_the_others_idle() {
    let tag = unique("busy");
    let mut nodes = nodes("redis://127.0.0.1:6379", 3, &tag).await;
    let limit = Limit::new(10_000, DAY);
    let key = key(&tag);
    let busy = nodes.remove(0);
    let mut admitted = 0u64;
    for _ in 0..100 {
        let now = SystemClock.now_ms();
        while busy.table.reserve(&key, limit, 10, now, true, false).admitted() {
            admitted += 10;
        }
        busy.syncer.round().await;
        // The idle nodes keep heartbeating (alive) but never see the key.
        for n in &nodes {
            n.syncer.check_scripts().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("one node of three used {admitted} of {}", limit.capacity);
    assert!(admitted <= limit.capacity);
    assert!(
        admitted >= limit.capacity * 9 / 10,
        "the busy node was held to {admitted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_mode_admits_exactly_the_limit_across_clients() {
    let tag = unique("exact");
    let key = key(&tag);
    let limit = Limit::new(1_000, DAY);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let exact = ExactBuckets::new(client("redis://127.0.0.1:6379").await);
        for _ in 0..34 {
            let (exact, key) = (exact.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                exact.reserve(&key, limit, 100, Duration::from_secs(2)).await
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap().admitted() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);
    let exact = ExactBuckets::new(client("redis://127.0.0.1:6379").await);
    exact.adjust(&key, limit, -250, Duration::from_secs(2)).await.unwrap();
    assert!(exact.reserve(&key, limit, 200, Duration::from_secs(2)).await.admitted());
    assert!(!exact.reserve(&key, limit, 100, Duration::from_secs(2)).await.admitted());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_fails_open_or_closed_then_reconverges() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let tag = unique("outage");
    let nodes = nodes(&url, 1, &tag).await;
    let node = &nodes[0];
    let limit = Limit::new(1_000, DAY);
    let (open, closed) = (format!("{}:open", key(&tag)), format!("{}:closed", key(&tag)));
    let now = SystemClock.now_ms();
    assert!(node.table.reserve(&open, limit, 100, now, true, false).admitted());
    assert!(node.table.reserve(&closed, limit, 100, now, true, true).admitted());
    assert!(node.syncer.round().await);

    redis.stop();
    assert!(node.table.reserve(&open, limit, 100, now, true, false).admitted());
    assert!(!node.syncer.round().await, "the round notices the outage");
    assert!(!node.table.store_ok());
    assert_eq!(
        node.table.reserve(&closed, limit, 100, now, true, true),
        Decision::Unavailable,
        "fail-closed refuses"
    );
    let mut during = 0;
    while node.table.reserve(&open, limit, 100, now, true, false).admitted() {
        during += 100;
    }
    assert_eq!(during, 800, "fail-open serves what is left of the local share");

    let _redis = OwnRedis::start(port);
    let mut back = false;
    for _ in 0..100 {
        if node.syncer.round().await {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "sync resumes when redis returns");
    assert!(node.table.store_ok());
    // Redis lost its state with the restart (the first 100 tokens booked went with it); the
    // node's report books the 900 it used since.
    let redis = client(&url).await;
    let (f, held): (String, String) = fred::interfaces::LuaInterface::eval(
        &redis,
        "return redis.call('HMGET', KEYS[1], 'f', ARGV[1])",
        vec![open.clone()],
        vec![format!("o:{tag}-node0")],
    )
    .await
    .unwrap();
    let global = f.parse::<f64>().unwrap() + held.parse::<f64>().unwrap();
    assert!(
        global <= 100.5,
        "the restarted redis sees the consumption: {global} left"
    );
    assert!(node
        .table
        .reserve(&closed, limit, 100, SystemClock.now_ms(), true, true)
        .admitted());
}
