use super::*;

fn table() -> BucketTable {
    BucketTable::new(TableOptions::default())
}

#[test]
fn local_keys_are_separate_buckets() {
    let t = table();
    let l = Limit::new(10, 60_000);
    for _ in 0..10 {
        assert!(t.reserve("a", l, 1, 0, false, false).admitted());
    }
    assert!(!t.reserve("a", l, 1, 0, false, false).admitted());
    assert!(t.reserve("b", l, 1, 0, false, false).admitted());
}

#[test]
fn reconcile_gives_back_what_was_not_used() {
    let t = table();
    let l = Limit::new(100, 60_000_000);
    assert!(t.reserve("a", l, 100, 0, false, false).admitted());
    assert!(!t.reserve("a", l, 30, 0, false, false).admitted());
    t.adjust("a", -40, 0);
    assert!(t.reserve("a", l, 30, 0, false, false).admitted());
    assert_eq!(t.peek("a", 0).map(|p| p.0), Some(10));
}

#[test]
fn concurrent_reservations_never_admit_more_than_the_capacity() {
    let t = std::sync::Arc::new(table());
    let l = Limit::new(1_000, 86_400_000);
    let admitted = std::sync::Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (t, admitted) = (t.clone(), admitted.clone());
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    if t.reserve("k", l, 3, 0, false, false).admitted() {
                        admitted.fetch_add(3, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 999);
}

#[test]
fn memory_stays_bounded_with_many_keys() {
    let t = BucketTable::new(TableOptions {
        max_keys: 6_400,
        ..TableOptions::default()
    });
    let l = Limit::new(10, 1_000);
    for i in 0..100_000u64 {
        t.reserve(&format!("user-{i}"), l, 1, i, false, false);
    }
    assert!(t.len() <= 6_400 + 64, "{}", t.len());
    assert!(t.stats.evictions.load(Ordering::Relaxed) > 0);
    // A key used just now survives eviction.
    assert!(t.peek("user-99999", 100_000).is_some());
}

#[test]
fn a_new_shared_key_starts_on_its_share_of_the_capacity() {
    let t = table();
    t.set_nodes(4);
    let l = Limit::new(100, 86_400_000);
    let admitted = (0..100)
        .filter(|_| t.reserve("k", l, 1, 0, true, false).admitted())
        .count();
    assert_eq!(admitted, 25);
    match t.reserve("k", l, 1, 0, true, false) {
        Decision::Refused { remaining, .. } => {
            assert_eq!(remaining, 0, "a refusal never says more remain than it needs")
        }
        other => panic!("{other:?}"),
    }
    let reports = t.due_reports(0, 100, false);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].self_granted, 25.0);
    assert_eq!(reports[0].used, 25.0);
    assert_eq!(reports[0].balance, 0.0);
    assert!(t.due_reports(0, 100, false).is_empty(), "in flight: not reported twice");
}

#[test]
fn a_grant_tops_up_the_lease_and_a_failed_sync_keeps_the_report() {
    let t = table();
    let l = Limit::new(100, 86_400_000);
    t.set_nodes(2);
    for _ in 0..50 {
        assert!(t.reserve("k", l, 1, 0, true, false).admitted());
    }
    assert!(!t.reserve("k", l, 1, 0, true, false).admitted());
    let r = t.due_reports(1, 10, false).remove(0);
    t.restore(&r);
    let r2 = t.due_reports(2, 10, false).remove(0);
    assert_eq!(
        (r2.used, r2.self_granted),
        (50.0, 50.0),
        "nothing lost in the failed sync"
    );
    t.apply(
        &r2,
        Grant {
            top_up: 30.0,
            weight: 0.6,
            global: 50.0,
        },
        3,
    );
    let admitted = (0..100)
        .filter(|_| t.reserve("k", l, 1, 3, true, false).admitted())
        .count();
    assert_eq!(admitted, 30);
}

#[tokio::test]
async fn a_reservation_the_first_lease_refuses_can_wait_for_the_first_grant() {
    let t = std::sync::Arc::new(table());
    t.set_nodes(2);
    // One request a minute on two nodes: the implicit first lease of each is nothing.
    let l = Limit::new(1, 60_000);
    assert!(!t.reserve("k", l, 1, 0, true, false).admitted());
    let id = t.key_id("k");
    let waiting = tokio::spawn({
        let t = t.clone();
        async move { t.first_grant(id, std::time::Duration::from_secs(5)).await }
    });
    let r = t.due_reports(1, 10, false).remove(0);
    assert_eq!(r.wanted, 1.0, "the refusal is reported as demand");
    tokio::task::yield_now().await;
    t.apply(
        &r,
        Grant {
            top_up: 1.0,
            weight: 1.0,
            global: 1.0,
        },
        2,
    );
    assert!(waiting.await.unwrap(), "the grant wakes the waiter");
    assert!(t.reserve("k", l, 1, 2, true, false).admitted());
    // Granted once: later refusals do not wait.
    assert!(!t.first_grant(id, std::time::Duration::from_secs(5)).await);
    assert!(
        !t.first_grant(t.key_id("unknown"), std::time::Duration::from_secs(5))
            .await
    );
    // Redis never answers: the wait ends at its bound.
    assert!(!t.reserve("k2", l, 1, 0, true, false).admitted());
    assert!(
        !t.first_grant(t.key_id("k2"), std::time::Duration::from_millis(20))
            .await
    );
}

#[tokio::test]
async fn a_first_grant_in_before_the_refused_request_looks_still_gives_it_its_retry() {
    let t = table();
    t.set_nodes(3);
    let l = Limit::new(1, 60_000);
    assert!(!t.reserve("k", l, 1, 0, true, false).admitted());
    let id = t.key_id("k");
    // The syncer reports the new key and Redis grants the whole limit before the refused
    // request's task runs again (a busy node): the grant is already in when it asks.
    let r = t.due_reports(1, 10, false).remove(0);
    let grant = Grant {
        top_up: 1.0,
        weight: 1.0,
        global: 1.0,
    };
    t.apply(&r, grant, 2);
    assert!(t.first_grant(id, std::time::Duration::from_secs(5)).await);
    assert!(t.reserve("k", l, 1, 2, true, false).admitted());
    // A refusal by the granted lease is not owed a retry.
    assert!(!t.reserve("k", l, 1, 3, true, false).admitted());
    assert!(!t.first_grant(id, std::time::Duration::from_secs(5)).await);
}

#[test]
fn fail_closed_refuses_and_fail_open_serves_on_the_local_share() {
    let t = table();
    let l = Limit::new(1_000, 1_000);
    t.set_nodes(2);
    assert!(t.reserve("k", l, 500, 0, true, false).admitted());
    t.set_store_ok(false);
    assert_eq!(t.reserve("k", l, 1, 0, true, true), Decision::Unavailable);
    assert!(!t.reserve("k", l, 1, 0, true, false).admitted(), "lease used up");
    // During the outage the node refills its own share (half the rate).
    assert!(t.reserve("k", l, 100, 200, true, false).admitted());
    assert!(!t.reserve("k", l, 100, 200, true, false).admitted());
    let r = t.due_reports(200, 10, false).remove(0);
    assert_eq!(r.self_granted, 600.0, "first lease plus the outage refill are reported");
}

#[test]
fn a_sync_round_takes_the_queued_keys_not_every_key() {
    let t = table();
    let l = Limit::new(1_000, 60_000);
    let grant = Grant {
        top_up: 0.0,
        weight: 1.0,
        global: 1_000.0,
    };
    for i in 0..10_000 {
        assert!(t.reserve(&format!("k{i}"), l, 1, 0, true, false).admitted());
    }
    let first = t.due_reports(0, 100_000, false);
    assert_eq!(first.len(), 10_000, "every new key reports its implicit lease");
    // A key used while its report is in flight is reported again after the answer.
    assert!(t.reserve("k7", l, 1, 1, true, false).admitted());
    for r in &first {
        t.apply(r, grant, 1);
    }
    for k in ["k1", "k2", "k3"] {
        t.adjust(k, -1, 2);
    }
    let mut keys: Vec<String> = t
        .due_reports(2, 100_000, false)
        .into_iter()
        .map(|r| r.key.to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["k1", "k2", "k3", "k7"]);
    // The once-a-second scan refreshes every lease still held.
    assert_eq!(t.due_reports(1_500, 100_000, true).len(), 9_996);
}

#[test]
fn an_idle_shared_key_gives_its_lease_back_and_is_dropped() {
    let t = table();
    let l = Limit::new(100, 60_000);
    assert!(t.reserve("k", l, 1, 0, true, false).admitted());
    let r = t.due_reports(0, 10, false).remove(0);
    t.apply(
        &r,
        Grant {
            top_up: 0.0,
            weight: 1.0,
            global: 99.0,
        },
        0,
    );
    let r = t.due_reports(6_000, 10, true).remove(0);
    assert!(r.release);
    assert_eq!(r.balance, 99.0);
    t.apply(
        &r,
        Grant {
            top_up: -99.0,
            weight: 0.0,
            global: 100.0,
        },
        6_000,
    );
    assert!(t.is_empty());
}
