//! Window counters against the real Redis on 127.0.0.1:6379 (started by `scripts/setup.sh`).

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::time::Duration;

use fred::prelude::*;
use tollgate_limits::{Clock, RedisCounters, SystemClock};

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tollgate:test:{{{name}-{}-{nanos}}}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_share_one_exact_count() {
    let a = RedisCounters::new("redis://127.0.0.1:6379", Duration::from_secs(2)).unwrap();
    let b = RedisCounters::new("redis://127.0.0.1:6379", Duration::from_secs(2)).unwrap();
    a.connect(Duration::from_secs(5)).await.unwrap();
    b.connect(Duration::from_secs(5)).await.unwrap();
    let key = unique("shared");
    let end = SystemClock.now_ms() + 60_000;
    let mut tasks = Vec::new();
    for client in [a.clone(), b.clone()] {
        for _ in 0..4 {
            let (client, key) = (client.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..25 {
                    seen.push(client.incr(&key, end).await.unwrap());
                }
                seen
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=200).collect::<Vec<u64>>(),
        "every increment got its own count"
    );
    // With a limit of 20, exactly 20 increments were at or under it.
    assert_eq!(all.iter().filter(|&&n| n <= 20).count(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_takes_back_one_count_and_never_creates_a_counter() {
    let c = RedisCounters::new("redis://127.0.0.1:6379", Duration::from_secs(2)).unwrap();
    c.connect(Duration::from_secs(5)).await.unwrap();
    let key = unique("refund");
    let end = SystemClock.now_ms() + 60_000;
    c.incr(&key, end).await.unwrap();
    c.incr(&key, end).await.unwrap();
    c.decr(&key).await.unwrap();
    assert_eq!(c.incr(&key, end).await.unwrap(), 2);
    // A counter that is gone (its window expired) stays gone: no count without an expiry.
    let gone = unique("refund-gone");
    c.decr(&gone).await.unwrap();
    let exists: i64 = c.client().exists(&gone).await.unwrap();
    assert_eq!(exists, 0);
    assert_eq!(c.incr(&gone, end).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = RedisCounters::new(&format!("redis://127.0.0.1:{port}"), Duration::from_millis(300)).unwrap();
    assert!(c.connect(Duration::from_millis(500)).await.is_err());
    assert!(c.incr("k", 1).await.is_err());
}
