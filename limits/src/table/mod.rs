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

mod lease;
pub use lease::{Grant, Report};

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
    /// Reservations the implicit first lease refused: each may be tried once more when the
    /// first grant is in ([`BucketTable::first_grant`]), even if it came before the caller looked.
    first_lease_refusals: u32,
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
                        if !s.granted {
                            s.first_lease_refusals += 1;
                        }
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
                first_lease_refusals: 0,
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
}

fn entry_remaining(limit: &Limit, s: &Shared, now_ms: u64) -> u64 {
    let refill = now_ms.saturating_sub(s.global_at_ms) as f64 * limit.rate_per_ms();
    (s.global - s.used + refill).min(limit.capacity_f()).max(0.0) as u64
}

#[cfg(test)]
mod tests;
