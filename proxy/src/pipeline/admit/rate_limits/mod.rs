//! Token and request rate limits at admission, and their reconciliation once a request's real
//! cost is known.
//!
//! On the way in every rule that selects the request reserves, per its key: one request, and
//! the prompt's counted tokens plus the completion it may generate (`max_tokens` as the policy
//! leaves it, capped by the rule's completion reserve; the reserve itself when absent) times `n`.
//! A request that does not fit is refused before anything is sent upstream — which is what keeps
//! a limit real under concurrency. On the way out ([`RateLimiter::settle`]) the reservation is
//! replaced by what was used: the provider's usage, else the gateway's own count of what was
//! streamed (so an abandoned stream is charged for what was generated), and nothing when no
//! answer came.
//!
//! Decisions read this node's bucket table; `sync` rules share their limit with every node
//! through Redis in the background ([`tollgate_limits::sync`]), `exact` rules ask Redis on the
//! request's path with their own timeout.

use std::sync::Arc;
use std::time::Duration;

use tollgate_limits::{
    Acquire, BucketTable, Clock, Decision, ExactBuckets, KeyId, Limit, SharedSlots, SlotKey, SlotTable,
};

use super::Refusal;
use crate::config::rate_limits::{LimitMode, LimitRule};
use crate::live::Live;
use crate::rate_headers::{Counter, RateHeaders};
use crate::telemetry::metrics::RuleCounters;
use crate::telemetry::repeats::Repeats;
use crate::telemetry::Metrics;

mod keys;
mod refusal;

pub use keys::KeySources;
use keys::{bucket_suffix, rule_key};
use refusal::{concurrency_refusal, refusal, rejected};

/// The tokens a request reserves.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    pub prompt_tokens: u64,
    /// `max_tokens` after the parameter policy, if any.
    pub max_tokens: Option<u64>,
    pub choices: u64,
}

/// One reservation, held until the request's real cost is known (a concurrency slot: until
/// the request ends).
#[derive(Debug)]
pub struct Hold {
    /// The rule's series (where settlement books the tokens used).
    counters: Arc<RuleCounters>,
    at: HeldIn,
    limit: Limit,
    reserved: u64,
    tokens: bool,
    /// A concurrency slot: given back when the hold is dropped.
    #[expect(dead_code, reason = "held for its drop, which gives the slot back")]
    slot: Option<SlotHeld>,
}

/// A concurrency slot a request holds. Given back on drop, so it returns exactly once however
/// the request ends: settled, refused by a later rule, or its future dropped mid-admission.
struct SlotHeld {
    table: Arc<SlotTable>,
    key: SlotKey,
    in_use: prometheus::IntGauge,
    /// An `exact` rule shared through Redis: the slot goes back to the cluster at once.
    give_back: Option<Arc<SharedSlots>>,
}

impl Drop for SlotHeld {
    fn drop(&mut self) {
        self.table.release(self.key);
        self.in_use.dec();
        if let (Some(shared), Ok(rt)) = (self.give_back.take(), tokio::runtime::Handle::try_current()) {
            let key = self.key;
            rt.spawn(async move { shared.give_back(key).await });
        }
    }
}

impl std::fmt::Debug for SlotHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotHeld").field("key", &self.key).finish()
    }
}

/// Why no concurrency slot was taken.
#[derive(Debug)]
enum SlotRefused {
    /// Every slot is taken (this many were in use).
    Full(u64),
    /// The rule is shared, Redis cannot be reached, and the rule says `deny`.
    Unavailable,
}

/// The kinds of a rule's bounds, in the order of [`RuleCounters::decisions`].
const KIND_CONCURRENT: usize = 2;

/// Where a reservation is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeldIn {
    /// In this node's table (settled by the key's id: the key is not hashed again).
    Table(KeyId),
    /// In Redis, under this key.
    Exact(String),
    /// Admitted without a reservation (exact rule, Redis down, fail-open; a concurrency slot,
    /// which its hold gives back when dropped): nothing to settle.
    Nowhere,
}

/// Decides and settles rate limits.
pub struct RateLimiter {
    table: Arc<BucketTable>,
    /// Concurrency slots taken by requests in flight.
    slots: Arc<SlotTable>,
    /// With Redis: this node's leases of slots shared by every node.
    shared_slots: Option<Arc<SharedSlots>>,
    /// Redis is configured: `sync` rules are shared, `exact` rules go to Redis.
    exact: Option<ExactBuckets>,
    exact_timeout: Duration,
    clock: Arc<dyn Clock>,
    completion_reserve: u64,
    /// `tollgate:limit:` and the namespace, before each key's hash tag.
    key_prefix: String,
    /// Requests per second per limit key on this node (count-min estimate), to spot hot keys.
    hot: pingora_limits::rate::Rate,
    /// Hashes a key once for [`RateLimiter::hot`], whose every row would otherwise hash the
    /// whole key again.
    hot_hasher: foldhash::fast::RandomState,
    /// Requests in one second past which a key is reported hot (0: off).
    hot_key_rps: isize,
    /// A key that stays hot is logged once per interval, not every second.
    hot_lines: Repeats,
}

/// How hot keys are spotted and reported.
pub struct HotKeys {
    /// Requests in one second on one node past which a key is hot (0: off).
    pub rps: u64,
    /// How often a key that stays hot is logged again, in milliseconds.
    pub log_interval_ms: u64,
}

/// Where limits are kept: this node's buckets and slots, and with Redis the shared slots and
/// exact buckets.
pub struct LimitStores {
    pub table: Arc<BucketTable>,
    pub slots: Arc<SlotTable>,
    pub shared_slots: Option<Arc<SharedSlots>>,
    pub exact: Option<ExactBuckets>,
}

impl RateLimiter {
    pub fn new(
        LimitStores {
            table,
            slots,
            shared_slots,
            exact,
        }: LimitStores,
        exact_timeout: Duration,
        clock: Arc<dyn Clock>,
        completion_reserve: u64,
        namespace: &str,
        hot_keys: HotKeys,
    ) -> Self {
        let mut key_prefix = "tollgate:limit:".to_string();
        if !namespace.is_empty() {
            tollgate_limits::redis_key::push_part(&mut key_prefix, namespace);
            key_prefix.push(':');
        }
        RateLimiter {
            table,
            slots,
            shared_slots,
            exact,
            exact_timeout,
            clock: clock.clone(),
            completion_reserve,
            key_prefix,
            // 4 × 8192 counters: few enough collisions that a node's whole traffic spread over
            // many keys does not make a quiet key look hot.
            hot: pingora_limits::rate::Rate::new_with_estimator_config(Duration::from_secs(1), 4, 8192),
            hot_hasher: foldhash::fast::RandomState::default(),
            hot_key_rps: hot_keys.rps.min(isize::MAX as u64) as isize,
            hot_lines: Repeats::new(hot_keys.log_interval_ms, clock.clone()),
        }
    }

    /// Count a request against its key's rate; count the key each second it is hot, and log it
    /// then, once per interval.
    fn spot_hot_key(&self, rule: &LimitRule, key: &str, metrics: &Metrics) {
        if self.hot_key_rps == 0 {
            return;
        }
        // A 64-bit digest stands for the key: two keys share an estimate only if they collide
        // there, far rarer than the sketch's own collisions.
        let digest = std::hash::BuildHasher::hash_one(&self.hot_hasher, key);
        if self.hot.observe(&digest, 1) == self.hot_key_rps {
            metrics.limit_hot_keys.with_label_values(&[&rule.name]).inc();
            if let Some(held_back) = self.hot_lines.admit(digest) {
                // Client-sent header, query and cookie values are digests in keys: safe to log.
                tracing::warn!(rule = %rule.name, key = %key, rps = self.hot_key_rps, seconds_hot_since_last_line = held_back, "limits: hot key");
            }
        }
    }

    /// Reserve for every rule that selects this request: the holds and the success headers
    /// (the tightest bucket of each kind), or the refusal (earlier reservations of this request
    /// given back).
    pub async fn admit(
        &self,
        live: &Live,
        sources: &KeySources<'_>,
        demand: Demand,
        metrics: &Metrics,
    ) -> Result<(Vec<Hold>, RateHeaders), Refusal> {
        let mut holds = Vec::new();
        let now = self.clock.now_ms();
        let mut tight_tokens: Option<Counter> = None;
        let mut tight_requests: Option<Counter> = None;
        let mut tight_concurrent: Option<Counter> = None;
        for (index, rule) in live.limits.iter().enumerate() {
            if !rule.selects(sources.consumer, sources.model) {
                continue;
            }
            let Some(counters) = live.rule_counters(index, metrics) else {
                continue;
            };
            // The rule's key, then each bucket's key: the base with a suffix, in one buffer.
            let mut key = rule_key(&self.key_prefix, rule, sources);
            self.spot_hot_key(rule, &key, metrics);
            let base_len = key.len();
            let reserve = rule.completion_reserve.unwrap_or(self.completion_reserve);
            let completion = demand.max_tokens.map_or(reserve, |m| m.min(reserve)) * demand.choices;
            let token_cost = demand.prompt_tokens + completion;
            let buckets = [(rule.requests, 1, false), (rule.tokens, token_cost, true)];
            for (limit, cost, tokens) in buckets {
                let Some(limit) = limit else { continue };
                key.truncate(base_len);
                key.push_str(bucket_suffix(rule.mode, tokens));
                let (decision, at) = self.decide(rule, &key, limit, cost, now).await;
                let outcome = match (&decision, &at) {
                    (Decision::Admitted { .. }, HeldIn::Nowhere) => 4,
                    (Decision::Admitted { .. }, HeldIn::Table(_))
                        if rule.mode == LimitMode::Sync && self.exact.is_some() && !self.table.store_ok() =>
                    {
                        4
                    }
                    (Decision::Admitted { .. }, _) => 0,
                    (Decision::Refused { .. }, _) => 1,
                    (Decision::TooLarge, _) => 2,
                    (Decision::Unavailable, _) => 3,
                };
                counters.decisions[tokens as usize][outcome].inc();
                match decision {
                    Decision::Admitted { remaining } => {
                        if tokens && at != HeldIn::Nowhere {
                            counters.reserved.inc_by(cost);
                        }
                        let state = Counter {
                            limit: limit.capacity,
                            remaining,
                            reset_ms: limit.ms_to_refill(limit.capacity_f() - remaining as f64),
                        };
                        state.keep_tighter(if tokens { &mut tight_tokens } else { &mut tight_requests });
                        holds.push(Hold {
                            counters: counters.clone(),
                            at,
                            limit,
                            reserved: cost,
                            tokens,
                            slot: None,
                        });
                    }
                    refused => {
                        self.release(holds, metrics);
                        rejected(metrics, rule, if tokens { "tokens" } else { "requests" }, sources);
                        return Err(refusal(rule, limit, tokens, cost, demand.prompt_tokens, refused));
                    }
                }
            }
            if let Some(capacity) = rule.concurrent {
                key.truncate(base_len);
                key.push_str(":c");
                match self.take_slot(rule, &key, capacity, counters).await {
                    Ok((slot, in_use)) => {
                        let slot = SlotHeld {
                            table: self.slots.clone(),
                            key: slot,
                            in_use: counters.slots_in_use.clone(),
                            give_back: self.shared_slots.clone().filter(|_| rule.mode == LimitMode::Exact),
                        };
                        Counter {
                            limit: capacity,
                            remaining: capacity.saturating_sub(in_use),
                            reset_ms: 0,
                        }
                        .keep_tighter(&mut tight_concurrent);
                        holds.push(Hold {
                            counters: counters.clone(),
                            at: HeldIn::Nowhere,
                            limit: Limit::new(capacity, 1),
                            reserved: 1,
                            tokens: false,
                            slot: Some(slot),
                        });
                    }
                    Err(SlotRefused::Full(in_use)) => {
                        self.release(holds, metrics);
                        rejected(metrics, rule, "concurrent", sources);
                        return Err(concurrency_refusal(rule, capacity, in_use));
                    }
                    Err(SlotRefused::Unavailable) => {
                        self.release(holds, metrics);
                        rejected(metrics, rule, "concurrent", sources);
                        return Err(refusal(
                            rule,
                            Limit::new(capacity, 1),
                            false,
                            1,
                            0,
                            Decision::Unavailable,
                        ));
                    }
                }
            }
        }
        let headers = RateHeaders {
            requests: tight_requests,
            tokens: tight_tokens,
            concurrent: tight_concurrent,
            retry_after_secs: None,
        };
        Ok((holds, headers))
    }

    /// Take a slot of `key` (waiting in line up to the rule's `queue_ms`): the slot and how many
    /// are in use, or why not.
    async fn take_slot(
        &self,
        rule: &LimitRule,
        key: &str,
        capacity: u64,
        counters: &RuleCounters,
    ) -> Result<(SlotKey, u64), SlotRefused> {
        let slot = self.slots.key(key);
        // A queue at most as long as the rule has slots: past that a request would wait through
        // more than a whole round of answers, longer than a short queue is meant for.
        let max_waiters = if rule.queue.is_zero() {
            0
        } else {
            capacity.clamp(8, 4_096) as usize
        };
        let decisions = &counters.decisions[KIND_CONCURRENT];
        let acquired = match (&self.shared_slots, rule.mode) {
            (Some(shared), LimitMode::Sync | LimitMode::Exact) => {
                match self
                    .take_shared_slot(shared, rule, slot, key, capacity, max_waiters)
                    .await
                {
                    Ok(a) => a,
                    Err(refused) => {
                        decisions[3].inc();
                        return Err(refused);
                    }
                }
            }
            _ => self.slots.acquire(slot, capacity, max_waiters),
        };
        let in_use = match acquired {
            Acquire::Taken { in_use } => in_use,
            Acquire::Full { in_use } => {
                decisions[1].inc();
                return Err(SlotRefused::Full(in_use));
            }
            Acquire::Queued(waiting) => {
                let started = std::time::Instant::now();
                let got = waiting.wait(rule.queue).await;
                counters.queued.observe(started.elapsed().as_secs_f64());
                if !got {
                    decisions[1].inc();
                    return Err(SlotRefused::Full(capacity));
                }
                self.slots.in_use_of(slot)
            }
        };
        decisions[0].inc();
        counters.slots_in_use.inc();
        Ok((slot, in_use))
    }

    async fn decide(&self, rule: &LimitRule, key: &str, limit: Limit, cost: u64, now: u64) -> (Decision, HeldIn) {
        match (rule.mode, &self.exact) {
            // Boxed: the Redis client's future is kilobytes, and inline it would grow (and be
            // copied with) every request's future, Redis or not.
            (LimitMode::Exact, Some(exact)) => {
                match Box::pin(exact.reserve(key, limit, cost, self.exact_timeout)).await {
                    Decision::Unavailable if rule.fail_open => (Decision::Admitted { remaining: 0 }, HeldIn::Nowhere),
                    d => (d, HeldIn::Exact(key.to_string())),
                }
            }
            // Shared through Redis, or (no Redis configured: one node, or a local rule) not.
            (mode, exact) => {
                let id = self.table.key_id(key);
                let (shared, fail_closed) = match (mode, exact) {
                    (LimitMode::Sync, Some(_)) => (true, !rule.fail_open),
                    _ => (false, false),
                };
                let mut decision = self.table.reserve_at(id, key, limit, cost, now, shared, fail_closed);
                if shared && matches!(decision, Decision::Refused { .. }) {
                    // Refused by the implicit first lease of a key new to this node (less than
                    // the request, or nothing with a limit smaller than the node count): once,
                    // wait for Redis's answer on the whole limit (one round trip) and ask again.
                    let first = self.table.first_grant(id, self.exact_timeout);
                    if Box::pin(first).await {
                        decision = self.table.reserve_at(id, key, limit, cost, now, shared, fail_closed);
                    }
                }
                (decision, HeldIn::Table(id))
            }
        }
    }

    /// A slot of a key shared by every node: within this node's lease without asking anyone;
    /// past it, Redis is asked for more (one round trip); Redis unreachable, the rule's
    /// `on_redis_error` says whether this node serves on its own share of the capacity.
    async fn take_shared_slot(
        &self,
        shared: &SharedSlots,
        rule: &LimitRule,
        slot: SlotKey,
        key: &str,
        capacity: u64,
        max_waiters: usize,
    ) -> Result<Acquire, SlotRefused> {
        if shared.lease_stands(slot, capacity) {
            if let taken @ Acquire::Taken { .. } = self.slots.acquire_leased(slot, 0) {
                return Ok(taken);
            }
        }
        // `sync` keeps what a round used at most, so a steady load takes slots without asking;
        // `exact` holds only what runs. Another request of this node may take the slot just
        // leased before this one does: ask again while the cluster has room (a bounded number of times).
        let keep_peak = rule.mode != LimitMode::Exact;
        let mut attempts = 0;
        let grown = loop {
            attempts += 1;
            match shared.grow(slot, key, capacity, keep_peak).await {
                Ok(true) if attempts < 16 => match self.slots.acquire_leased(slot, 0) {
                    taken @ Acquire::Taken { .. } => return Ok(taken),
                    _ => continue,
                },
                other => break other,
            }
        };
        match grown {
            Ok(_) => Ok(self.slots.acquire_leased(slot, max_waiters)),
            // Redis answers, just not this time (slow): a slot that cannot be confirmed is not
            // taken — serving on a local share now could add it to what the others hold.
            Err(e) if self.table.store_ok() => {
                tracing::debug!(rule = %rule.name, error = %e, "limits: no slot confirmed in time");
                Ok(self.slots.acquire_leased(slot, max_waiters))
            }
            // Redis is down (the syncer's heartbeat says so): the rule's outage policy.
            Err(e) if rule.fail_open => {
                tracing::debug!(rule = %rule.name, error = %e, "limits: slots served on this node's share");
                let share = (capacity / self.table.nodes().max(1)).max(1);
                Ok(self.slots.acquire(slot, share, max_waiters))
            }
            Err(e) => {
                tracing::debug!(rule = %rule.name, error = %e, "limits: slots cannot be checked");
                Err(SlotRefused::Unavailable)
            }
        }
    }

    /// Give back every reservation (the request was refused by a later rule).
    fn release(&self, holds: Vec<Hold>, metrics: &Metrics) {
        for h in holds {
            self.adjust(&h, -(h.reserved as i64), metrics);
        }
    }

    /// Replace each reservation by the real cost: `used_tokens` for token buckets (`None`: the
    /// request was never answered, nothing is charged); a request counts as one either way,
    /// unless nothing was answered.
    pub fn settle(&self, holds: Vec<Hold>, used_tokens: Option<u64>, metrics: &Metrics) {
        for h in holds {
            let used = match (h.tokens, used_tokens) {
                (true, Some(t)) => t,
                (false, Some(_)) => 1,
                (_, None) => 0,
            };
            if h.tokens && h.at != HeldIn::Nowhere {
                h.counters.used.inc_by(used);
            }
            self.adjust(&h, used as i64 - h.reserved as i64, metrics);
        }
    }

    fn adjust(&self, h: &Hold, delta: i64, metrics: &Metrics) {
        if delta == 0 {
            return;
        }
        match &h.at {
            HeldIn::Table(id) => self.table.adjust_at(*id, delta, self.clock.now_ms()),
            HeldIn::Exact(key) => {
                if let Some(exact) = self.exact.clone() {
                    let (key, limit, timeout) = (key.clone(), h.limit, self.exact_timeout);
                    let errors = metrics.limit_settle_errors.clone();
                    tokio::spawn(async move {
                        if exact.adjust(&key, limit, delta, timeout).await.is_err() {
                            errors.inc();
                        }
                    });
                }
            }
            HeldIn::Nowhere => {}
        }
    }
}
