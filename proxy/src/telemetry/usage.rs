//! The usage ledger behind `GET /admin/usage`: requests, tokens and cost per UTC hour, consumer
//! and public model.
//!
//! Each node books its finished requests in memory. Without Redis that is the ledger (this
//! node's traffic, kept `--usage-retention-days`). With Redis, every second a node adds what it
//! booked to one Redis hash per hour (a Lua script of `HINCRBY`/`HINCRBYFLOAT`, the hash
//! expiring after the retention) and the API reads those hashes, so every node answers the
//! same. A failed flush keeps the deltas for the next one (bounded: one row per hour, consumer
//! and model). Labels are configured names only (`-` for a caller without a consumer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::clients::Client;
use fred::interfaces::LuaInterface;

use crate::context::{ModelStage, RequestCtx};

/// One row's sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    /// By currency.
    pub cost: Vec<(String, f64)>,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.prompt += other.prompt;
        self.completion += other.completion;
        self.cached += other.cached;
        for (c, v) in &other.cost {
            self.add_cost(c, *v);
        }
    }

    fn add_cost(&mut self, currency: &str, v: f64) {
        match self.cost.iter_mut().find(|(c, _)| c == currency) {
            Some((_, x)) => *x += v,
            None => self.cost.push((currency.to_string(), v)),
        }
    }
}

/// A row's key: UTC hour (hours since the epoch), consumer, public model.
pub type RowKey = (u64, Arc<str>, Arc<str>);

/// Where the rows are read from.
pub enum Source {
    Node,
    Redis,
}

pub struct UsageLedger {
    /// This node's rows (without Redis: the ledger; with Redis: not yet flushed).
    rows: Mutex<HashMap<RowKey, Totals>>,
    retention_hours: u64,
    redis: Option<RedisUsage>,
}

struct RedisUsage {
    client: Client,
    prefix: String,
    timeout: Duration,
}

/// Add each (field, delta) of ARGV[2..] to the hash KEYS[1]; fields ending in `cost:<currency>`
/// are floats. The hash expires ARGV[1] seconds after its last write.
const FLUSH_SCRIPT: &str = r"
for i = 2, #ARGV, 2 do
  if string.find(ARGV[i], '|cost:', 1, true) then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// Every field and value of each hash in KEYS, as one flat list per key.
const READ_SCRIPT: &str = r"
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGETALL', KEYS[i])
end
return out
";

pub fn hour_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 3600
}

impl UsageLedger {
    pub fn new(retention_days: u64, redis: Option<(Client, String, Duration)>) -> Arc<UsageLedger> {
        Arc::new(UsageLedger {
            rows: Mutex::new(HashMap::new()),
            retention_hours: retention_days.max(1) * 24,
            redis: redis.map(|(client, prefix, timeout)| RedisUsage {
                client,
                prefix,
                timeout,
            }),
        })
    }

    pub fn source(&self) -> Source {
        if self.redis.is_some() {
            Source::Redis
        } else {
            Source::Node
        }
    }

    /// Book a finished request to a configured model (others are not booked).
    pub fn record(&self, ctx: &RequestCtx) {
        let ModelStage::Routed { route, .. } = &ctx.model else {
            return;
        };
        let consumer = ctx.names().consumer;
        let consumer: Arc<str> = if consumer.is_empty() {
            Arc::from("-")
        } else {
            Arc::from(consumer)
        };
        let mut delta = Totals {
            requests: 1,
            ..Totals::default()
        };
        if let Some(u) = ctx.answer_usage() {
            delta.prompt = u.prompt;
            delta.completion = u.completion;
            delta.cached = u.cached;
            if let Some(price) = ctx.price() {
                delta.cost.push((price.currency.clone(), price.cost(&u)));
            }
        }
        let key = (hour_now(), consumer, Arc::from(route.name.as_str()));
        if let Ok(mut rows) = self.rows.lock() {
            rows.entry(key).or_default().add(&delta);
        }
    }

    /// This node's rows from hour `from` to hour `to` (inclusive).
    pub fn local(&self, from: u64, to: u64) -> Vec<(RowKey, Totals)> {
        let Ok(rows) = self.rows.lock() else { return Vec::new() };
        rows.iter()
            .filter(|((h, _, _), _)| (from..=to).contains(h))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The rows from hour `from` to hour `to` (inclusive): Redis's with Redis, else this node's.
    pub async fn rows(&self, from: u64, to: u64) -> Result<Vec<(RowKey, Totals)>, String> {
        let Some(redis) = &self.redis else {
            return Ok(self.local(from, to));
        };
        let hours: Vec<u64> = (from..=to).collect();
        let keys: Vec<String> = hours.iter().map(|h| format!("{}:{h}", redis.prefix)).collect();
        let call = redis
            .client
            .eval::<fred::types::Value, _, _, _>(READ_SCRIPT, keys, Vec::<String>::new());
        let reply = tokio::time::timeout(redis.timeout * 4, call)
            .await
            .map_err(|_| "Redis did not answer in time".to_string())?
            .map_err(|e| format!("Redis: {e}"))?;
        let mut out: HashMap<RowKey, Totals> = HashMap::new();
        let fred::types::Value::Array(per_hour) = reply else {
            return Ok(Vec::new());
        };
        for (hour, fields) in hours.iter().zip(per_hour) {
            let fred::types::Value::Array(flat) = fields else {
                continue;
            };
            for pair in flat.chunks(2) {
                let (Some(field), Some(value)) = (pair[0].as_string(), pair.get(1).and_then(|v| v.as_string())) else {
                    continue;
                };
                let mut parts = field.splitn(3, '|');
                let (Some(consumer), Some(model), Some(metric)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                let row = out.entry((*hour, Arc::from(consumer), Arc::from(model))).or_default();
                match metric {
                    "requests" => row.requests += value.parse().unwrap_or(0),
                    "prompt" => row.prompt += value.parse().unwrap_or(0),
                    "completion" => row.completion += value.parse().unwrap_or(0),
                    "cached" => row.cached += value.parse().unwrap_or(0),
                    m => {
                        if let Some(currency) = m.strip_prefix("cost:") {
                            row.add_cost(currency, value.parse().unwrap_or(0.0));
                        }
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Flush to Redis every `every` (with Redis), or drop rows past the retention (without),
    /// for as long as the ledger lives.
    pub async fn run(ledger: std::sync::Weak<UsageLedger>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let Some(ledger) = ledger.upgrade() else { return };
            match &ledger.redis {
                Some(redis) => ledger.flush(redis).await,
                None => {
                    let oldest = hour_now().saturating_sub(ledger.retention_hours);
                    if let Ok(mut rows) = ledger.rows.lock() {
                        rows.retain(|(h, _, _), _| *h >= oldest);
                    }
                }
            }
        }
    }

    async fn flush(&self, redis: &RedisUsage) {
        let pending: HashMap<RowKey, Totals> = match self.rows.lock() {
            Ok(mut rows) if !rows.is_empty() => std::mem::take(&mut *rows),
            _ => return,
        };
        let mut by_hour: HashMap<u64, Vec<String>> = HashMap::new();
        for ((hour, consumer, model), t) in &pending {
            let args = by_hour
                .entry(*hour)
                .or_insert_with(|| vec![(self.retention_hours * 3600).to_string()]);
            let field = |metric: &str| format!("{consumer}|{model}|{metric}");
            for (metric, n) in [
                ("requests", t.requests),
                ("prompt", t.prompt),
                ("completion", t.completion),
                ("cached", t.cached),
            ] {
                if n > 0 {
                    args.push(field(metric));
                    args.push(n.to_string());
                }
            }
            for (currency, v) in &t.cost {
                args.push(field(&format!("cost:{currency}")));
                args.push(format!("{v:.12}"));
            }
        }
        for (hour, args) in by_hour {
            let key = format!("{}:{hour}", redis.prefix);
            let call = redis.client.eval::<i64, _, _, _>(FLUSH_SCRIPT, key, args);
            let written = matches!(tokio::time::timeout(redis.timeout * 4, call).await, Ok(Ok(_)));
            if !written {
                // Kept for the next flush (a timed-out write may have landed: then it counts
                // twice; a lost one would count never).
                tracing::warn!(hour, "usage: could not write to Redis; kept for the next flush");
                if let Ok(mut rows) = self.rows.lock() {
                    for (k, t) in pending.iter().filter(|((h, _, _), _)| *h == hour) {
                        rows.entry(k.clone()).or_default().add(t);
                    }
                }
            }
        }
    }
}
