//! Concurrency slots shared by every node through Redis.
//!
//! Each node holds a *lease* of a key's slots: it admits locally while fewer of its requests are
//! in flight than its lease, with no Redis round trip. Redis holds every node's lease of the key
//! and grants more only from what no other node holds, so the leases never add up to more than
//! the capacity: the cluster never has more requests in flight than the rule allows (the one
//! exception: a node cut off from Redis for longer than the lease timeout, whose slots the others
//! have reclaimed meanwhile — it then admits no more until it is back).
//!
//! A node asks for more when its lease is used up (one round trip, bounded by its timeout) and
//! gives back what it no longer uses: at once in `exact` mode; in `sync` mode at its rounds, down
//! to the most it had in flight at once during the last round, so a steady load keeps the slots
//! it keeps using and rarely waits on Redis.
//! Every round renews the leases of the keys it holds; a node that stops renewing (it died) has
//! its slots reclaimed by the next node that asks, once the lease timeout has passed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use crate::redis::RequestPathClient;
use crate::slots::{SlotKey, SlotTable};
use crate::{Clock, SyncStats};

/// Set this node's holding of a key: grant what is asked, within what the other live nodes do
/// not hold; reclaim the holdings of nodes silent for longer than the lease timeout. Hash fields:
/// `h:<node>` slots held, `t:<node>` last renewal. Answers `{granted, held by all}`.
const LEASE_SCRIPT: &str = r"
local node = ARGV[1]
local want = tonumber(ARGV[2])
local in_use = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local dead = tonumber(ARGV[5])
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local h = redis.call('HGETALL', KEYS[1])
local held, seen = {}, {}
for i = 1, #h, 2 do
  local k, v = h[i], tonumber(h[i + 1])
  local p, n = string.sub(k, 1, 2), string.sub(k, 3)
  if p == 'h:' then held[n] = v elseif p == 't:' then seen[n] = v end
end
local others = 0
for n, v in pairs(held) do
  if n ~= node then
    if seen[n] == nil or now - seen[n] > dead then
      redis.call('HDEL', KEYS[1], 'h:' .. n, 't:' .. n)
    else
      others = others + v
    end
  end
end
local grant = math.max(0, math.min(want, cap - others))
local holds = math.max(grant, in_use)
if holds == 0 then
  redis.call('HDEL', KEYS[1], 'h:' .. node, 't:' .. node)
else
  redis.call('HSET', KEYS[1], 'h:' .. node, holds, 't:' .. node, now)
  redis.call('PEXPIRE', KEYS[1], dead * 3)
end
return {grant, others + holds}
";

/// How shared slots behave.
#[derive(Debug, Clone)]
pub struct SharedSlotOptions {
    /// This node's name in Redis (the limits syncer's).
    pub node_id: String,
    /// A node silent this long has its slots reclaimed by the others; leases are renewed three
    /// times within it.
    pub lease_timeout: Duration,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Time between background rounds (giving back, renewing).
    pub interval: Duration,
}

/// What this node knows of one key it holds a lease of (the lease itself is in the
/// [`SlotTable`], where admissions read it under the same lock that counts them).
#[derive(Debug, Clone)]
struct Held {
    /// The key in Redis.
    key: Arc<str>,
    capacity: u64,
    /// `sync`: a round keeps the most that was in flight during the last one; `exact`: only
    /// what is in flight, each slot given back the moment its request ends.
    keep_peak: bool,
    /// When Redis last confirmed the lease; past the lease timeout without it, the lease is void.
    renewed_ms: u64,
    /// One call to Redis per key at a time, so the lease this node applies is the one Redis
    /// recorded last.
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// This node's leases of shared concurrency slots.
pub struct SharedSlots {
    slots: Arc<SlotTable>,
    held: Mutex<HashMap<SlotKey, Held>>,
    client: RequestPathClient,
    background: Client,
    script: Script,
    clock: Arc<dyn Clock>,
    opts: SharedSlotOptions,
    /// Where lease calls are counted (the limits syncer's stats, exported with them).
    stats: Arc<SyncStats>,
}

/// Why a shared slot could not be decided.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LeaseError(String);

impl SharedSlots {
    pub fn new(
        slots: Arc<SlotTable>,
        client: Client,
        clock: Arc<dyn Clock>,
        opts: SharedSlotOptions,
        stats: Arc<SyncStats>,
    ) -> Self {
        SharedSlots {
            slots,
            held: Mutex::new(HashMap::new()),
            client: RequestPathClient::new(client.clone()),
            background: client,
            script: Script::from_lua(LEASE_SCRIPT),
            clock,
            opts,
            stats,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_ms(&self) -> u64 {
        self.opts.lease_timeout.as_millis() as u64
    }

    /// Whether this node's lease of `slot` stands: Redis confirmed it within the lease timeout
    /// (else the other nodes may have reclaimed it), for the capacity the rule has now.
    pub fn lease_stands(&self, slot: SlotKey, capacity: u64) -> bool {
        let now = self.clock.now_ms();
        self.held()
            .get(&slot)
            .is_some_and(|h| h.capacity == capacity && now.saturating_sub(h.renewed_ms) < self.lease_ms())
    }

    /// Ask Redis for enough slots of `key` to admit one more request, and set the lease it
    /// grants: whether it covers one more than was in use (the cluster has room). The caller
    /// then takes its slot within the lease — and, since another request of this node may take
    /// it first, asks again while the cluster has room.
    pub async fn grow(&self, slot: SlotKey, key: &str, capacity: u64, keep_peak: bool) -> Result<bool, LeaseError> {
        let _turn = loop {
            let gate = {
                let now = self.clock.now_ms();
                let mut held = self.held();
                let h = held.entry(slot).or_insert_with(|| Held {
                    key: Arc::from(key),
                    capacity,
                    keep_peak,
                    renewed_ms: now.saturating_sub(self.lease_ms()),
                    gate: Arc::default(),
                });
                h.capacity = capacity;
                h.keep_peak = keep_peak;
                h.gate.clone()
            };
            let turn = gate.clone().lock_owned().await;
            // A round may have forgotten the key (and its gate) while this request waited: a
            // call made under a gate no one else uses any more could cross another's.
            let current = self.held().get(&slot).is_some_and(|h| Arc::ptr_eq(&h.gate, &gate));
            if current {
                break turn;
            }
        };
        // Another request's call may have made room while this one waited its turn.
        let in_use = self.slots.in_use_of(slot);
        if self.lease_stands(slot, capacity) && self.slots.lease_of(slot).unwrap_or(0) > in_use {
            return Ok(true);
        }
        let want = (in_use + 1).min(capacity);
        let granted = self.call(self.client.get(), key, want, in_use, capacity).await?;
        self.granted(slot, granted);
        Ok(granted > in_use)
    }

    /// Set the lease Redis just granted (waiters take what it frees) and count it as renewed.
    fn granted(&self, slot: SlotKey, granted: u64) {
        self.slots.set_lease(slot, granted);
        if let Some(h) = self.held().get_mut(&slot) {
            h.renewed_ms = self.clock.now_ms();
        }
    }

    async fn call(&self, client: &Client, key: &str, want: u64, in_use: u64, cap: u64) -> Result<u64, LeaseError> {
        let args = vec![
            self.opts.node_id.clone(),
            want.to_string(),
            in_use.to_string(),
            cap.to_string(),
            self.lease_ms().to_string(),
        ];
        let call = self
            .script
            .evalsha_with_reload::<(i64, i64), _, _>(client, vec![key.to_string()], args);
        let answer = match tokio::time::timeout(self.opts.timeout, call).await {
            Ok(Ok((granted, _held))) => Ok(granted.max(0) as u64),
            Ok(Err(e)) => Err(LeaseError(e.to_string())),
            Err(_) => Err(LeaseError(format!("no answer within {:?}", self.opts.timeout))),
        };
        let counter = if answer.is_ok() {
            &self.stats.slot_lease_calls
        } else {
            &self.stats.slot_lease_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    /// Trim `slot`'s lease (see [`SlotTable::trim_lease`]) and, when that gave something back
    /// or the lease is due for renewal, tell Redis (which renews it); a key with nothing held any
    /// more is forgotten.
    async fn trim(&self, slot: SlotKey, held: Held, renew: bool) {
        let Ok(_turn) = held.gate.try_lock() else {
            // A request is asking for more right now: its answer renews the lease.
            return;
        };
        let Some((before, lease, in_use)) = self.slots.trim_lease(slot, held.keep_peak) else {
            self.held().remove(&slot);
            return;
        };
        if lease == before && !renew {
            if lease == 0 && in_use == 0 {
                // Nothing held here, nothing in Redis: forget the key.
                self.slots.set_lease(slot, 0);
                self.held().remove(&slot);
            }
            return;
        }
        match self
            .call(&self.background, &held.key, lease, in_use, held.capacity)
            .await
        {
            Ok(granted) => {
                let in_use = self.slots.set_lease(slot, granted.min(lease));
                let mut map = self.held();
                if granted == 0 && in_use == 0 {
                    map.remove(&slot);
                } else if let Some(h) = map.get_mut(&slot) {
                    h.renewed_ms = self.clock.now_ms();
                }
            }
            Err(e) => tracing::debug!(error = %e, "limits: slot lease renewal failed"),
        }
    }

    /// Ask for slots for the requests waiting in `slot`'s queue (slots other nodes gave back
    /// since they queued); the lease Redis grants goes to them first.
    async fn serve_waiters(&self, slot: SlotKey, held: Held) {
        let Ok(_turn) = held.gate.try_lock() else {
            return;
        };
        let in_use = self.slots.in_use_of(slot);
        let want = (in_use + self.slots.waiting_of(slot)).min(held.capacity);
        match self
            .call(&self.background, &held.key, want, in_use, held.capacity)
            .await
        {
            Ok(granted) => self.granted(slot, granted),
            Err(e) => tracing::debug!(error = %e, "limits: slots for waiting requests not granted"),
        }
    }

    /// One background round: keys with requests waiting ask for slots for them; every other key
    /// is trimmed (what it did not use gives back), and renewed when due.
    pub async fn round(&self) {
        let now = self.clock.now_ms();
        let renew_every = (self.lease_ms() / 3).max(1);
        let keys: Vec<(SlotKey, Held, bool)> = self
            .held()
            .iter()
            .map(|(slot, h)| (*slot, h.clone(), now.saturating_sub(h.renewed_ms) >= renew_every))
            .collect();
        for (slot, held, renew) in keys {
            if self.slots.waiting_of(slot) > 0 {
                self.serve_waiters(slot, held).await;
            } else {
                self.trim(slot, held, renew).await;
            }
        }
    }

    /// Give back at once what a key no longer uses (`exact` mode, after a release).
    pub async fn give_back(&self, slot: SlotKey) {
        let Some(held) = self.held().get(&slot).cloned() else {
            return;
        };
        if self.slots.lease_of(slot).unwrap_or(0) > self.slots.in_use_of(slot) {
            self.trim(slot, held, false).await;
        }
    }

    /// Run rounds forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.opts.interval).await;
            self.round().await;
        }
    }
}
