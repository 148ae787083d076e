//! The in-memory table of token buckets: one entry per limit key, spread over shards by key hash
//! (no global lock), bounded in size (idle entries go first).
//!
//! A key is either **local** — the bucket is the whole truth, one node — or **shared**: the
//! bucket is this node's *lease* of a limit that every node enforces together, topped up and
//! reconciled through Redis by [`crate::sync`] in the background. Decisions only ever read this
//! table; the network is never on the way.
//!
//! How a shared limit stays one limit: Redis holds the free pool of a key and what each node
//! holds; at every sync a node reports its balance and what it used, and gets a top-up (or gives
//! back) towards its share of everything available, the share weighted by the node's recent
//! demand. Leases never sum to more than what is available, so concurrent bursts on many nodes
//! cannot over-admit. A node seeing a key for the first time starts on an implicit lease of
//! `capacity / nodes` and reports it at once: that is the documented bound of over-admission
//! (and only when the other nodes had already used the limit up).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::bucket::{Bucket, Decision, Limit};

const SHARDS: usize = 64;

/// Sizes and timings of a table.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Most keys held; past it idle (then least recently used) keys are dropped.
    pub max_keys: usize,
    /// A shared key unused this long gives its lease back and is dropped.
    pub idle_release_ms: u64,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            max_keys: 1_000_000,
            idle_release_ms: 5_000,
        }
    }
}

/// One limit key's state.
#[derive(Debug, Clone)]
struct Entry {
    limit: Limit,
    /// Local: the bucket. Shared: this node's lease.
    bucket: Bucket,
    shared: Option<Shared>,
    last_used_ms: u64,
}

/// What a shared key keeps between syncs.
#[derive(Debug, Clone)]
struct Shared {
    /// The key's name in Redis (local keys keep only their digest).
    key: Box<str>,
    /// This node's share of the limit (from the last sync; `1 / nodes` before it).
    weight: f64,
    /// Net tokens used since the last report (refunds negative).
    used: f64,
    /// Tokens this node gave itself without Redis (the first lease, refill during an outage),
    /// not yet reported.
    self_granted: f64,
    /// Tokens of requests refused since the last report (demand the lease did not cover).
    wanted: f64,
    /// Everything available on all nodes at the last sync, and when.
    global: f64,
    global_at_ms: u64,
    /// A report of this key is on its way to Redis.
    in_flight: bool,
    /// Redis has answered a report of this key: the lease is no longer the implicit first one.
    granted: bool,
    /// The key is in its shard's queue of keys to report.
    queued: bool,
    last_report_ms: u64,
}

impl Entry {
    /// What this node believes is left of the whole limit.
    fn remaining(&self, now_ms: u64) -> u64 {
        match &self.shared {
            None => self.bucket.level().max(0.0) as u64,
            Some(s) => entry_remaining(&self.limit, s, now_ms),
        }
    }
}

/// A key's state sent to Redis at a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub key: Box<str>,
    pub limit: Limit,
    /// This node's balance of the key.
    pub balance: f64,
    pub used: f64,
    pub self_granted: f64,
    /// Demand refused for want of lease since the last report.
    pub wanted: f64,
    /// Give the whole lease back and forget the key.
    pub release: bool,
}

/// Redis's answer to a report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// Added to the node's balance (negative: the node gave that much back).
    pub top_up: f64,
    pub weight: f64,
    /// Everything available on all nodes after this sync.
    pub global: f64,
}

/// A key's 128-bit digest: what the table is keyed by, so an entry costs no string of its own
/// and a lookup compares two words (collisions: ~1 in 10^26 for a million keys).
type Id = u128;

/// A key as the table knows it ([`BucketTable::key_id`]): a caller that reserved on a key can
/// adjust it later without hashing the key again, or keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(Id);

#[derive(Default)]
struct Shard {
    map: HashMap<Id, Entry, foldhash::fast::RandomState>,
    /// Shared keys with something to report, so a sync round does not scan every key.
    dirty: Vec<Id>,
}

/// Queue `id` for the next report, once.
fn queue(dirty: &mut Vec<Id>, id: Id, s: &mut Shared) {
    if !s.queued {
        s.queued = true;
        dirty.push(id);
    }
}

/// Counters the owner exports as metrics.
#[derive(Debug, Default)]
pub struct TableStats {
    pub evictions: AtomicU64,
}

/// The bucket table of one node.
pub struct BucketTable {
    shards: Box<[Mutex<Shard>]>,
    /// Two independent hashers make a key's [`Id`].
    hashers: [foldhash::quality::RandomState; 2],
    opts: TableOptions,
    /// Whether the last sync reached Redis.
    store_ok: AtomicBool,
    /// Live gateway nodes sharing the limits (1 until Redis says otherwise).
    nodes: AtomicU64,
    /// Set when a shared key appears, so the syncer reports it without waiting for its tick.
    pub(crate) new_keys: tokio::sync::Notify,
    /// Woken when a shared key gets its first grant from Redis ([`BucketTable::first_grant`]).
    first_grants: tokio::sync::Notify,
    pub stats: TableStats,
}

impl BucketTable {
    pub fn new(opts: TableOptions) -> Self {
        BucketTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hashers: Default::default(),
            opts,
            store_ok: AtomicBool::new(true),
            nodes: AtomicU64::new(1),
            new_keys: tokio::sync::Notify::new(),
            first_grants: tokio::sync::Notify::new(),
            stats: TableStats::default(),
        }
    }

    fn id(&self, key: &str) -> Id {
        (Id::from(self.hashers[0].hash_one(key)) << 64) | Id::from(self.hashers[1].hash_one(key))
    }

    /// `key`'s digest in this table.
    pub fn key_id(&self, key: &str) -> KeyId {
        KeyId(self.id(key))
    }

    fn shard(&self, id: Id) -> std::sync::MutexGuard<'_, Shard> {
        let i = (id as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the last sync with Redis succeeded.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }

    pub fn set_store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_nodes(&self, n: u64) {
        self.nodes.store(n.max(1), Ordering::Relaxed);
    }

    pub fn nodes(&self) -> u64 {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Reserve `cost` from `key` under `limit`. `shared` keys follow the lease scheme above;
    /// `fail_closed` refuses them (`Unavailable`) while Redis is unreachable.
    pub fn reserve(
        &self,
        key: &str,
        limit: Limit,
        cost: u64,
        now_ms: u64,
        shared: bool,
        fail_closed: bool,
    ) -> Decision {
        self.reserve_at(self.key_id(key), key, limit, cost, now_ms, shared, fail_closed)
    }

    /// [`BucketTable::reserve`] for a key whose [`KeyId`] the caller has.
    #[expect(clippy::too_many_arguments, reason = "reserve's arguments and the key's id")]
    pub fn reserve_at(
        &self,
        id: KeyId,
        key: &str,
        limit: Limit,
        cost: u64,
        now_ms: u64,
        shared: bool,
        fail_closed: bool,
    ) -> Decision {
        let KeyId(id) = id;
        if cost > limit.capacity {
            return Decision::TooLarge;
        }
        let store_ok = self.store_ok();
        if shared && fail_closed && !store_ok {
            return Decision::Unavailable;
        }
        let mut guard = self.shard(id);
        let shard = &mut *guard;
        if !shard.map.contains_key(&id) && shard.map.len() > self.opts.max_keys / SHARDS {
            self.evict(shard, now_ms);
        }
        let Shard { map, dirty } = shard;
        let entry = match map.get_mut(&id) {
            Some(e) => {
                if e.limit != limit {
                    // The rule changed on reload: keep the level, within the new capacity.
                    e.limit = limit;
                }
                e
            }
            None => map
                .entry(id)
                .or_insert_with(|| self.new_entry(limit, now_ms, shared.then_some(key))),
        };
        entry.last_used_ms = now_ms;
        match &mut entry.shared {
            None => entry.bucket.take(&limit, cost, now_ms),
            Some(s) => {
                if store_ok {
                    // Redis refills shared limits; the clock only moves on.
                    entry.bucket.touch(now_ms);
                } else {
                    // Serving on local state: this node refills its own share.
                    let cap = limit.capacity_f() * s.weight;
                    s.self_granted += entry.bucket.refill(cap, limit.rate_per_ms() * s.weight, now_ms);
                }
                let decision = match entry.bucket.take_refilled(&limit, cost) {
                    Decision::Admitted { .. } => {
                        s.used += cost as f64;
                        Decision::Admitted {
                            remaining: entry_remaining(&limit, s, now_ms),
                        }
                    }
                    Decision::Refused { remaining: here, .. } => {
                        s.wanted += cost as f64;
                        // What this node could still admit: the cluster may have more left that
                        // is not leased to it yet (granted at the next sync), but a refusal that
                        // said "2 remain" for a request needing 1 would contradict itself.
                        let remaining = entry_remaining(&limit, s, now_ms).min(here);
                        Decision::Refused {
                            remaining,
                            retry_after_ms: limit.ms_to_refill(cost as f64 - remaining as f64).max(1),
                        }
                    }
                    other => other,
                };
                queue(dirty, id, s);
                decision
            }
        }
    }

    /// Whether the shared key `id` is on its implicit first lease (`capacity / nodes`, rounded
    /// down), which Redis has not answered yet; `None` for a key not held or not shared.
    fn on_first_lease(&self, KeyId(id): KeyId) -> Option<bool> {
        let shard = self.shard(id);
        Some(!shard.map.get(&id)?.shared.as_ref()?.granted)
    }

    /// Wait, at most `wait`, for the first grant of a shared key still on its implicit first
    /// lease; whether it came (`false` at once for a key already granted, or not shared). For a reservation that lease refused:
    /// a limit smaller than the number of nodes gives each an implicit lease of nothing, and a
    /// request larger than `capacity / nodes` never fits one, yet the whole limit may be free.
    /// The syncer reports a new key at once, so this is one Redis round trip, once per key.
    pub async fn first_grant(&self, id: KeyId, wait: std::time::Duration) -> bool {
        if self.on_first_lease(id) != Some(true) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let granted = self.first_grants.notified();
            let mut granted = std::pin::pin!(granted);
            // Registered before the check, so a grant between the two is not missed.
            granted.as_mut().enable();
            match self.on_first_lease(id) {
                Some(true) => {}
                Some(false) => return true,
                None => return false,
            }
            if !self.store_ok() || tokio::time::timeout_at(deadline, granted).await.is_err() {
                return false;
            }
        }
    }

    /// A fresh entry; `shared` names the key of a shared limit.
    fn new_entry(&self, limit: Limit, now_ms: u64, shared: Option<&str>) -> Entry {
        let Some(key) = shared else {
            return Entry {
                limit,
                bucket: Bucket::full(limit.capacity_f(), now_ms),
                shared: None,
                last_used_ms: now_ms,
            };
        };
        let weight = 1.0 / self.nodes() as f64;
        let lease = (limit.capacity_f() * weight).floor();
        self.new_keys.notify_one();
        Entry {
            limit,
            bucket: Bucket::with_level(lease, now_ms),
            shared: Some(Shared {
                key: key.into(),
                weight,
                used: 0.0,
                self_granted: lease,
                wanted: 0.0,
                global: limit.capacity_f(),
                global_at_ms: now_ms,
                in_flight: false,
                granted: false,
                queued: false,
                last_report_ms: 0,
            }),
            last_used_ms: now_ms,
        }
    }

    /// Charge `delta` more tokens to `key` (negative: give them back), once a request's real
    /// cost is known. A key dropped meanwhile is not recreated.
    pub fn adjust(&self, key: &str, delta: i64, now_ms: u64) {
        self.adjust_at(self.key_id(key), delta, now_ms);
    }

    /// [`BucketTable::adjust`] by [`KeyId`].
    pub fn adjust_at(&self, KeyId(id): KeyId, delta: i64, now_ms: u64) {
        if delta == 0 {
            return;
        }
        let mut guard = self.shard(id);
        let Shard { map, dirty } = &mut *guard;
        let Some(entry) = map.get_mut(&id) else { return };
        let limit = entry.limit;
        if entry.shared.is_none() {
            entry.bucket.refill(limit.capacity_f(), limit.rate_per_ms(), now_ms);
        }
        entry.bucket.adjust(limit.capacity_f(), delta as f64);
        if let Some(s) = &mut entry.shared {
            s.used += delta as f64;
            queue(dirty, id, s);
        }
    }

    /// What this node believes is left of `key`'s limit, and milliseconds until it is full.
    pub fn peek(&self, key: &str, now_ms: u64) -> Option<(u64, u64)> {
        let id = self.id(key);
        let shard = self.shard(id);
        let e = shard.map.get(&id)?;
        let remaining = e.remaining(now_ms);
        Some((remaining, e.limit.ms_to_refill(e.limit.capacity_f() - remaining as f64)))
    }

    /// Drop idle entries (a local bucket that has refilled completely carries nothing); if that
    /// is not enough, the least recently used tenth of the shard.
    fn evict(&self, shard: &mut Shard, now_ms: u64) {
        let before = shard.map.len();
        shard.map.retain(|_, e| match &e.shared {
            None => {
                let mut b = e.bucket;
                b.refill(e.limit.capacity_f(), e.limit.rate_per_ms(), now_ms);
                b.level() < e.limit.capacity_f()
            }
            // A shared entry holds a lease: it is given back by its release report.
            Some(_) => now_ms.saturating_sub(e.last_used_ms) < self.opts.idle_release_ms * 4,
        });
        let cap = self.opts.max_keys / SHARDS + 1;
        if shard.map.len() >= cap {
            let mut ages: Vec<u64> = shard.map.values().map(|e| e.last_used_ms).collect();
            let cut = ages.len() / 10;
            ages.select_nth_unstable(cut);
            let oldest_kept = ages[cut];
            shard.map.retain(|_, e| e.last_used_ms > oldest_kept);
        }
        self.stats
            .evictions
            .fetch_add((before - shard.map.len()) as u64, Ordering::Relaxed);
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared keys due for a sync: those that used or refused something since the last
    /// report (from each shard's queue); with `full`, also those holding a lease (once a second,
    /// so the share follows the other nodes') and idle ones (to give the lease back) — a scan of
    /// every key, which the syncer does about once a second rather than every round. Each is
    /// marked in flight until [`Self::apply`] or [`Self::restore`].
    pub fn due_reports(&self, now_ms: u64, max: usize, full: bool) -> Vec<Report> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let Shard { map, dirty } = &mut *guard;
            let mut still_queued = Vec::new();
            for id in dirty.drain(..) {
                let Some(e) = map.get_mut(&id) else { continue };
                let Some(s) = &mut e.shared else { continue };
                if s.in_flight || out.len() >= max {
                    // Reported once the answer in flight is in (or next round).
                    still_queued.push(id);
                    continue;
                }
                s.queued = false;
                out.push(report(e, now_ms, self.opts.idle_release_ms));
            }
            *dirty = still_queued;
            if !full {
                continue;
            }
            for e in map.values_mut() {
                if out.len() >= max {
                    return out;
                }
                let Some(s) = &mut e.shared else { continue };
                if s.in_flight || s.queued {
                    continue;
                }
                let idle = now_ms.saturating_sub(e.last_used_ms);
                let holding = now_ms.saturating_sub(s.last_report_ms) >= 1_000;
                if holding || idle >= self.opts.idle_release_ms {
                    out.push(report(e, now_ms, self.opts.idle_release_ms));
                }
            }
        }
        out
    }

    /// Apply Redis's answer to `report`.
    pub fn apply(&self, report: &Report, grant: Grant, now_ms: u64) {
        let id = self.id(&report.key);
        let mut guard = self.shard(id);
        let Shard { map, dirty } = &mut *guard;
        let Some(e) = map.get_mut(&id) else {
            return;
        };
        if report.release {
            if e.last_used_ms + self.opts.idle_release_ms <= now_ms {
                map.remove(&id);
                return;
            }
            // Used again while the release was on its way (its balance went back to the pool):
            // start over on a fresh implicit lease, charged with what was used meanwhile.
            let used_meanwhile = e.shared.as_ref().map_or(0.0, |s| s.used);
            let last_used = e.last_used_ms;
            *e = self.new_entry(e.limit, now_ms, Some(&report.key));
            e.last_used_ms = last_used;
            e.bucket.adjust(f64::INFINITY, used_meanwhile);
            if let Some(s) = &mut e.shared {
                s.used = used_meanwhile;
                queue(dirty, id, s);
            }
            return;
        }
        let Some(s) = &mut e.shared else { return };
        s.in_flight = false;
        s.last_report_ms = now_ms;
        if !std::mem::replace(&mut s.granted, true) {
            self.first_grants.notify_waiters();
        }
        e.bucket.add(grant.top_up);
        s.weight = grant.weight.clamp(0.0, 1.0);
        s.global = grant.global;
        s.global_at_ms = now_ms;
    }

    /// Redis did not answer `report`: keep what it carried for the next sync.
    pub fn restore(&self, report: &Report) {
        let id = self.id(&report.key);
        let mut guard = self.shard(id);
        let Shard { map, dirty } = &mut *guard;
        let Some(e) = map.get_mut(&id) else {
            return;
        };
        let Some(s) = &mut e.shared else { return };
        s.in_flight = false;
        s.used += report.used;
        s.self_granted += report.self_granted;
        s.wanted += report.wanted;
        queue(dirty, id, s);
    }
}

/// The report of a shared entry, which goes in flight.
fn report(e: &mut Entry, now_ms: u64, idle_release_ms: u64) -> Report {
    let release = now_ms.saturating_sub(e.last_used_ms) >= idle_release_ms;
    let balance = e.bucket.level();
    let limit = e.limit;
    let (key, used, self_granted, wanted) = match &mut e.shared {
        Some(s) => {
            s.in_flight = true;
            (
                s.key.clone(),
                std::mem::take(&mut s.used),
                std::mem::take(&mut s.self_granted),
                std::mem::take(&mut s.wanted),
            )
        }
        None => (Box::from(""), 0.0, 0.0, 0.0),
    };
    Report {
        key,
        limit,
        balance,
        used,
        self_granted,
        wanted,
        release,
    }
}

fn entry_remaining(limit: &Limit, s: &Shared, now_ms: u64) -> u64 {
    let refill = now_ms.saturating_sub(s.global_at_ms) as f64 * limit.rate_per_ms();
    (s.global - s.used + refill).min(limit.capacity_f()).max(0.0) as u64
}

#[cfg(test)]
mod tests {
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
}
