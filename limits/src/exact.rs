//! Exact mode: one atomic script per request against a token bucket kept in Redis, for limits
//! that must hold exactly across nodes whatever the burst (at the price of a round trip on the
//! request's path, bounded by its own timeout).

use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use crate::bucket::{Decision, Limit};
use crate::redis::RequestPathClient;

/// Refill the bucket on Redis's clock, then take (`t`) the cost if it fits, or adjust (`a`) by a
/// signed amount. Answers `{admitted, level}`.
const EXACT_SCRIPT: &str = r"
local cap = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'l', 't')
local l, t = tonumber(h[1]), tonumber(h[2])
if l == nil then l = cap; t = now end
if now > t then
  if l < cap then l = math.min(cap, l + (now - t) * rate) end
  t = now
end
local ok = 1
if ARGV[1] == 't' then
  if amount <= l then l = l - amount else ok = 0 end
elseif amount >= 0 then
  l = l - amount
else
  l = math.min(math.max(cap, l), l - amount)
end
redis.call('HSET', KEYS[1], 'l', tostring(l), 't', t)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {ok, tostring(l)}
";

/// Token buckets held in Redis, decided there.
#[derive(Clone)]
pub struct ExactBuckets {
    /// Decisions are on the request path: their own connection, driven by the request runtime.
    client: RequestPathClient,
    script: Script,
}

impl ExactBuckets {
    pub fn new(client: Client) -> Self {
        ExactBuckets {
            client: RequestPathClient::new(client),
            script: Script::from_lua(EXACT_SCRIPT),
        }
    }

    /// Take `cost` from `key` if it fits, within `timeout`; `Unavailable` when Redis does not
    /// answer in time.
    pub async fn reserve(&self, key: &str, limit: Limit, cost: u64, timeout: Duration) -> Decision {
        if cost > limit.capacity {
            return Decision::TooLarge;
        }
        match self.call(key, limit, 't', cost as f64, timeout).await {
            Ok((true, level)) => Decision::Admitted {
                remaining: level.max(0.0) as u64,
            },
            Ok((false, level)) => Decision::Refused {
                remaining: level.max(0.0) as u64,
                retry_after_ms: limit.ms_to_refill(cost as f64 - level).max(1),
            },
            Err(e) => {
                tracing::debug!(error = %e, "limits: exact reservation failed");
                Decision::Unavailable
            }
        }
    }

    /// Charge `delta` more (negative: give back) to `key`.
    pub async fn adjust(&self, key: &str, limit: Limit, delta: i64, timeout: Duration) -> Result<(), String> {
        if delta == 0 {
            return Ok(());
        }
        self.call(key, limit, 'a', delta as f64, timeout).await.map(|_| ())
    }

    async fn call(
        &self,
        key: &str,
        limit: Limit,
        op: char,
        amount: f64,
        timeout: Duration,
    ) -> Result<(bool, f64), String> {
        let args = vec![
            op.to_string(),
            limit.capacity.to_string(),
            limit.rate_per_ms().to_string(),
            amount.to_string(),
            limit.period_ms.saturating_add(60_000).to_string(),
        ];
        let call =
            self.script
                .evalsha_with_reload::<(i64, String), _, _>(self.client.get(), vec![key.to_string()], args);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok((ok, level))) => Ok((ok == 1, level.parse::<f64>().map_err(|e| e.to_string())?)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }
}
