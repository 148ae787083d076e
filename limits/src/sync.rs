//! The background sync of shared limits through Redis (see [`crate::table`] for the scheme).
//!
//! Every `interval` (and at once when a new key appears) the syncer sends one script call per
//! due key; the script refills the key's free pool on Redis's clock, books the node's report,
//! and answers with the node's top-up towards its demand-weighted share. Requests never wait
//! on this: when Redis is slow a round just takes longer; when it is unreachable the table is
//! told so (rules then serve on local state or refuse, each as configured), the reports are kept,
//! and the next successful round books everything used meanwhile, so counts re-converge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::scripts::Script;

use crate::table::{BucketTable, Grant, Report};
use crate::Clock;

/// Books one node's report of a key and answers its top-up. Hash fields: `f` free pool, `t`
/// last refill, `c` creation time; per node `o:` balance, `d:` demand, `s:` last seen.
const SYNC_SCRIPT: &str = r"
local key = KEYS[1]
local node = ARGV[1]
local balance = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
local granted = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local rate = tonumber(ARGV[6])
local release = ARGV[7] == '1'
local stale = tonumber(ARGV[8])
local dead = tonumber(ARGV[9])
local ttl = tonumber(ARGV[10])
local nodes = tonumber(ARGV[11])
local young = tonumber(ARGV[12])
local wanted = tonumber(ARGV[13])
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local f, t, c
local o, d, s = {}, {}, {}
local h = redis.call('HGETALL', key)
for i = 1, #h, 2 do
  local k, v = h[i], tonumber(h[i + 1])
  if k == 'f' then f = v elseif k == 't' then t = v elseif k == 'c' then c = v
  else
    local p, n = string.sub(k, 1, 2), string.sub(k, 3)
    if p == 'o:' then o[n] = v elseif p == 'd:' then d[n] = v elseif p == 's:' then s[n] = v end
  end
end
if f == nil then
  -- A new key, or Redis lost its state: all that is known to be used is what this node used
  -- since its last report, and what it holds is its balance.
  f = cap - balance - used + granted; t = now; c = now
end
for n, seen in pairs(s) do
  if n ~= node and now - seen > dead then
    f = f + (o[n] or 0)
    o[n] = nil; d[n] = nil; s[n] = nil
    redis.call('HDEL', key, 'o:' .. n, 'd:' .. n, 's:' .. n)
  end
end
f = f - granted
o[node] = balance
local held = 0
for _, v in pairs(o) do held = held + v end
if now > t then
  local room = cap - held
  if f < room then f = math.min(room, f + (now - t) * rate) end
  t = now
end
local top, w = 0, 0
if release then
  f = f + balance
  top = -balance
  o[node] = nil; d[node] = nil; s[node] = nil
  redis.call('HDEL', key, 'o:' .. node, 'd:' .. node, 's:' .. node)
else
  d[node] = (d[node] or 0) * 0.5 + math.max(used, 0) + wanted
  s[node] = now
  local m = cap * 0.02 + 1
  local sum, present = 0, 0
  for n, seen in pairs(s) do
    present = present + 1
    if n == node or now - seen <= stale then sum = sum + (d[n] or 0) + m end
  end
  w = (d[node] + m) / sum
  local avail = f
  for _, v in pairs(o) do avail = avail + v end
  local target = math.max(0, math.floor(w * avail))
  -- A node is not made to give back below an equal share of the capacity: what it holds, it
  -- may well be about to use (a node that just started on a key has little demand yet).
  target = math.max(target, math.min(balance, math.floor(cap / nodes)))
  top = target - balance
  if top > 0 then
    local hold = 0
    if now - c < young and nodes > present then hold = (nodes - present) * math.floor(cap / nodes) end
    top = math.max(0, math.min(top, f - hold))
  end
  f = f - top
  o[node] = balance + top
  redis.call('HSET', key, 'o:' .. node, tostring(o[node]), 'd:' .. node, tostring(d[node]), 's:' .. node, now)
end
redis.call('HSET', key, 'f', tostring(f), 't', t, 'c', c)
redis.call('PEXPIRE', key, ttl)
local global = f
for _, v in pairs(o) do global = global + v end
return {tostring(top), tostring(w), tostring(global)}
";

/// Marks this node alive and answers how many nodes are.
const HEARTBEAT_SCRIPT: &str = r"
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
";

/// Where the node registry lives by default (one hash tag: one Cluster slot).
pub const NODES_KEY: &str = "tollgate:limits:{nodes}";

/// Tunables of the syncer.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// This node's name in Redis (unique per process).
    pub node_id: String,
    /// Time between sync rounds.
    pub interval: Duration,
    /// Longest wait for one script answer.
    pub timeout: Duration,
    /// Most keys reported per round (the rest go next round).
    pub max_keys_per_round: usize,
    /// The sorted set of live nodes (gateways sharing limits share this key).
    pub nodes_key: String,
}

/// What the syncer has done, for metrics.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub rounds: AtomicU64,
    pub failures: AtomicU64,
    pub keys_synced: AtomicU64,
    /// Duration of the last successful round, microseconds (the lag of shared state).
    pub last_round_us: AtomicU64,
    /// Live nodes seen at the last heartbeat.
    pub nodes: AtomicU64,
    /// 1 when the last round reached Redis.
    pub up: AtomicU64,
    /// 0 when Redis (or a proxy in front of it) refuses scripts.
    pub scripts_ok: AtomicU64,
    /// Concurrency slot lease calls ([`crate::shared_slots`]) answered, and those that failed
    /// or timed out.
    pub slot_lease_calls: AtomicU64,
    pub slot_lease_failures: AtomicU64,
}

/// Keeps a [`BucketTable`]'s shared keys in step with Redis.
pub struct Syncer {
    table: Arc<BucketTable>,
    client: Client,
    clock: Arc<dyn Clock>,
    opts: SyncOptions,
    sync_script: Script,
    heartbeat_script: Script,
    last_full_scan_ms: AtomicU64,
    pub stats: Arc<SyncStats>,
}

impl Syncer {
    pub fn new(table: Arc<BucketTable>, client: Client, clock: Arc<dyn Clock>, opts: SyncOptions) -> Self {
        Syncer {
            table,
            client,
            clock,
            opts,
            sync_script: Script::from_lua(SYNC_SCRIPT),
            heartbeat_script: Script::from_lua(HEARTBEAT_SCRIPT),
            last_full_scan_ms: AtomicU64::new(0),
            stats: Arc::new(SyncStats {
                scripts_ok: AtomicU64::new(1),
                ..SyncStats::default()
            }),
        }
    }

    /// Check that Redis runs our scripts (a proxy may refuse them). Called at start; the
    /// caller reports a failure loudly — limits then follow their outage policy, they are never
    /// quietly enforced per node.
    pub async fn check_scripts(&self) -> Result<u64, String> {
        let r = self.heartbeat().await;
        match &r {
            Ok(_) => self.stats.scripts_ok.store(1, Ordering::Relaxed),
            Err(e) if is_script_refusal(e) => self.stats.scripts_ok.store(0, Ordering::Relaxed),
            Err(_) => {}
        }
        r
    }

    async fn heartbeat(&self) -> Result<u64, String> {
        let stale_ms = (self.opts.interval.as_millis() as u64 * 10).max(3_000);
        let call = self.heartbeat_script.evalsha_with_reload::<i64, _, _>(
            &self.client,
            vec![self.opts.nodes_key.clone()],
            vec![self.opts.node_id.clone(), stale_ms.to_string()],
        );
        match tokio::time::timeout(self.opts.timeout, call).await {
            Ok(Ok(n)) => {
                let n = n.max(1) as u64;
                self.table.set_nodes(n);
                self.stats.nodes.store(n, Ordering::Relaxed);
                Ok(n)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.opts.timeout)),
        }
    }

    /// Sync forever.
    pub async fn run(self) {
        let mut last_heartbeat = Instant::now() - Duration::from_secs(10);
        let mut was_up = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.opts.interval) => {}
                _ = self.table.new_keys.notified() => {}
            }
            if last_heartbeat.elapsed() >= Duration::from_millis(500) {
                last_heartbeat = Instant::now();
                if let Err(e) = self.heartbeat().await {
                    tracing::debug!(error = %e, "limits: heartbeat failed");
                    self.table.set_store_ok(false);
                    self.stats.up.store(0, Ordering::Relaxed);
                }
            }
            let up = self.round().await;
            if up != was_up {
                if up {
                    tracing::warn!("limits: redis answers again; shared limits re-synced");
                } else {
                    tracing::error!(
                        "limits: redis unreachable; shared limits follow their on_redis_error policy until it returns"
                    );
                }
                was_up = up;
            }
        }
    }

    /// One sync round; whether Redis answered.
    pub async fn round(&self) -> bool {
        let started = Instant::now();
        let now = self.clock.now_ms();
        // Every key is scanned (for leases to refresh or give back) about once a second; other
        // rounds only take the keys queued with something to report.
        let full = now.saturating_sub(self.last_full_scan_ms.load(Ordering::Relaxed)) >= 1_000;
        if full {
            self.last_full_scan_ms.store(now, Ordering::Relaxed);
        }
        let reports = self.table.due_reports(now, self.opts.max_keys_per_round, full);
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        if reports.is_empty() {
            if !self.table.store_ok() {
                // Nothing to report: probe so the outage ends as soon as Redis is back.
                let ok = self.heartbeat().await.is_ok();
                self.table.set_store_ok(ok);
                self.stats.up.store(ok as u64, Ordering::Relaxed);
                return ok;
            }
            return true;
        }
        let calls = reports.iter().map(|r| self.send(r));
        let answers = futures::future::join_all(calls).await;
        let mut ok = true;
        let now = self.clock.now_ms();
        for (report, answer) in reports.iter().zip(answers) {
            match answer {
                Ok(grant) => self.table.apply(report, grant, now),
                Err(e) => {
                    if ok {
                        tracing::debug!(error = %e, "limits: sync failed");
                    }
                    if is_script_refusal(&e) {
                        self.stats.scripts_ok.store(0, Ordering::Relaxed);
                    }
                    ok = false;
                    self.table.restore(report);
                }
            }
        }
        self.table.set_store_ok(ok);
        self.stats.up.store(ok as u64, Ordering::Relaxed);
        if ok {
            self.stats
                .keys_synced
                .fetch_add(reports.len() as u64, Ordering::Relaxed);
            self.stats
                .last_round_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        } else {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    async fn send(&self, r: &Report) -> Result<Grant, String> {
        let interval_ms = self.opts.interval.as_millis() as u64;
        let stale_ms = (interval_ms * 20).max(2_000);
        let dead_ms = (stale_ms * 5).max(10_000);
        let ttl_ms = r.limit.period_ms.saturating_add(dead_ms);
        let young_ms = (interval_ms * 10).max(200);
        let args = vec![
            self.opts.node_id.clone(),
            r.balance.to_string(),
            r.used.to_string(),
            r.self_granted.to_string(),
            r.limit.capacity.to_string(),
            r.limit.rate_per_ms().to_string(),
            if r.release { "1" } else { "0" }.to_string(),
            stale_ms.to_string(),
            dead_ms.to_string(),
            ttl_ms.to_string(),
            self.table.nodes().to_string(),
            young_ms.to_string(),
            r.wanted.to_string(),
        ];
        let call =
            self.sync_script
                .evalsha_with_reload::<Vec<String>, _, _>(&self.client, vec![r.key.to_string()], args);
        let answer = match tokio::time::timeout(self.opts.timeout, call).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {:?}", self.opts.timeout)),
        };
        let num = |i: usize| answer.get(i).and_then(|v| v.parse::<f64>().ok());
        match (num(0), num(1), num(2)) {
            (Some(top_up), Some(weight), Some(global)) => Ok(Grant { top_up, weight, global }),
            _ => Err(format!("unexpected sync answer {answer:?}")),
        }
    }
}

/// Whether an error says scripts are refused (unknown command, NOSCRIPT that cannot be
/// reloaded, or a proxy's refusal), as opposed to Redis being unreachable.
pub fn is_script_refusal(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("unknown command") || e.contains("noscript") || e.contains("not allowed") || e.contains("disabled")
}
