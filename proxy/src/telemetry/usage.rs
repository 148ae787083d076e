//! The usage ledger behind `GET /admin/usage`: requests, tokens and cost per UTC hour, consumer
//! and public model.
//!
//! Each node books its finished requests in memory. Without Redis that is the ledger (this
//! node's traffic, kept `--usage-retention-days`). With Redis, every second a node adds what it
//! booked to one Redis hash per hour (a Lua script of `HINCRBY`/`HINCRBYFLOAT`, the hash
//! expiring after the retention) and the API reads those hashes, so every node answers the
//! same. Labels are configured names only (`-` for a caller without a consumer); in Redis field
//! names `%` and `|` are escaped, so any name reads back as it was.
//!
//! A write is applied once even when it is sent twice: each carries this process's sequence
//! number, which the script applies only when it is past the last one the hash has from this
//! process. A write that failed or timed out (it may have landed) is sent again as it was before
//! anything newer, and until it is confirmed new requests accumulate in memory (bounded: one row
//! per hour, consumer and model), so a Redis outage loses nothing and counts nothing twice.
//!
//! Booking a request allocates nothing once its hour, consumer and model have a row.

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

/// Rows by hour, then consumer, then model: a request finds its row by `&str` (no key to build),
/// hashed with foldhash (booking a request hashes five times).
type Rows = foldhash::HashMap<u64, Consumers>;
type Consumers = foldhash::HashMap<Arc<str>, foldhash::HashMap<Arc<str>, Totals>>;

pub struct UsageLedger {
    /// This node's rows (without Redis: the ledger; with Redis: not yet flushed).
    rows: Mutex<Rows>,
    retention_hours: u64,
    redis: Option<RedisUsage>,
}

struct RedisUsage {
    client: Client,
    prefix: String,
    timeout: Duration,
    /// The hash field holding the last sequence number applied from this process.
    seq_field: String,
    /// Writes sent and not confirmed, sent again (in order) before anything new.
    unconfirmed: tokio::sync::Mutex<Unconfirmed>,
}

#[derive(Default)]
struct Unconfirmed {
    next_seq: u64,
    /// (hash key, script arguments), in the order they were first sent.
    writes: Vec<(String, Vec<String>)>,
}

/// Apply a write to the hash KEYS[1] once: ARGV[1] the hash's lifetime in seconds after its last
/// write, ARGV[2] this process's sequence field, ARGV[3] the write's sequence number (skipped when
/// not past the field's), then (field, delta) pairs; fields ending in `|cost:<currency>` are
/// floats.
const FLUSH_SCRIPT: &str = r"
local seq = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
if seq > last then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  for i = 4, #ARGV, 2 do
    if string.find(ARGV[i], '|cost:', 1, true) then
      redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
    else
      redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// A name as a Redis field part: `%` and `|` escaped.
fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['%', '|']) {
        name.replace('%', "%25").replace('|', "%7C").into()
    } else {
        name.into()
    }
}

/// A field part as the name it escapes.
fn unescape(part: &str) -> std::borrow::Cow<'_, str> {
    if part.contains('%') {
        part.replace("%7C", "|").replace("%25", "%").into()
    } else {
        part.into()
    }
}

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
            rows: Mutex::new(Rows::default()),
            retention_hours: retention_days.max(1) * 24,
            redis: redis.map(|(client, prefix, timeout)| RedisUsage {
                client,
                prefix,
                timeout,
                // This process's own, so a restarted node (whatever its name) starts afresh.
                seq_field: format!("seq:{:016x}", rand::random::<u64>()),
                unconfirmed: tokio::sync::Mutex::new(Unconfirmed {
                    next_seq: 1,
                    writes: Vec::new(),
                }),
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
        let consumer = match ctx.names().consumer {
            "" => "-",
            name => name,
        };
        let usage = ctx.answer_usage();
        let hour = hour_now();
        let Ok(mut rows) = self.rows.lock() else { return };
        let Some(t) = row(rows.entry(hour).or_default(), consumer, &route.name) else {
            return;
        };
        t.requests += 1;
        if let Some(u) = usage {
            t.prompt += u.prompt;
            t.completion += u.completion;
            t.cached += u.cached;
            if let Some(price) = ctx.price() {
                t.add_cost(&price.currency, price.cost(&u));
            }
        }
    }

    /// This node's rows from hour `from` to hour `to` (inclusive).
    pub fn local(&self, from: u64, to: u64) -> Vec<(RowKey, Totals)> {
        let Ok(rows) = self.rows.lock() else { return Vec::new() };
        flatten(&rows, |h| (from..=to).contains(&h))
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
                let key = (*hour, Arc::from(unescape(consumer)), Arc::from(unescape(model)));
                let row = out.entry(key).or_default();
                match metric {
                    "requests" => row.requests += value.parse().unwrap_or(0),
                    "prompt" => row.prompt += value.parse().unwrap_or(0),
                    "completion" => row.completion += value.parse().unwrap_or(0),
                    "cached" => row.cached += value.parse().unwrap_or(0),
                    m => {
                        if let Some(currency) = m.strip_prefix("cost:") {
                            row.add_cost(&unescape(currency), value.parse().unwrap_or(0.0));
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
                        rows.retain(|h, _| *h >= oldest);
                    }
                }
            }
        }
    }

    /// Send what was not confirmed, in order; then, if all of it is, this node's rows since.
    async fn flush(&self, redis: &RedisUsage) {
        let mut unconfirmed = redis.unconfirmed.lock().await;
        while let Some((key, args)) = unconfirmed.writes.first() {
            if !self.write(redis, key, args).await {
                // Redis is away: new rows keep accumulating in memory meanwhile.
                return;
            }
            unconfirmed.writes.remove(0);
        }
        let pending = match self.rows.lock() {
            Ok(mut rows) if !rows.is_empty() => std::mem::take(&mut *rows),
            _ => return,
        };
        let ttl = (self.retention_hours * 3600).to_string();
        for (hour, consumers) in &pending {
            let seq = unconfirmed.next_seq;
            unconfirmed.next_seq += 1;
            let mut args = vec![ttl.clone(), redis.seq_field.clone(), seq.to_string()];
            for (consumer, models) in consumers {
                for (model, t) in models {
                    let field = |metric: &str| format!("{}|{}|{metric}", escape(consumer), escape(model));
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
                        args.push(field(&format!("cost:{}", escape(currency))));
                        args.push(format!("{v:.12}"));
                    }
                }
            }
            let key = format!("{}:{hour}", redis.prefix);
            if unconfirmed.writes.is_empty() && self.write(redis, &key, &args).await {
                continue;
            }
            // Sent again, as it is, at the next flush (the hash skips it if it landed).
            unconfirmed.writes.push((key, args));
        }
    }

    /// One write; whether Redis confirmed it.
    async fn write(&self, redis: &RedisUsage, key: &str, args: &[String]) -> bool {
        let call = redis
            .client
            .eval::<i64, _, _, _>(FLUSH_SCRIPT, key.to_string(), args.to_vec());
        let written = matches!(tokio::time::timeout(redis.timeout * 4, call).await, Ok(Ok(_)));
        if !written {
            tracing::warn!(key, "usage: could not write to Redis; sent again at the next flush");
        }
        written
    }
}

/// The row of `consumer` and `model` in one hour's rows (created on first use: the names are
/// copied then, and only then). Always `Some`.
fn row<'a>(hour: &'a mut Consumers, consumer: &str, model: &str) -> Option<&'a mut Totals> {
    if !hour.contains_key(consumer) {
        hour.insert(Arc::from(consumer), Default::default());
    }
    let models = hour.get_mut(consumer)?;
    if !models.contains_key(model) {
        models.insert(Arc::from(model), Totals::default());
    }
    models.get_mut(model)
}

/// The rows of the hours `keep` selects, one per hour, consumer and model.
fn flatten(rows: &Rows, keep: impl Fn(u64) -> bool) -> Vec<(RowKey, Totals)> {
    let mut out = Vec::new();
    for (&hour, consumers) in rows.iter().filter(|(h, _)| keep(**h)) {
        for (consumer, models) in consumers {
            for (model, t) in models {
                out.push(((hour, consumer.clone(), model.clone()), t.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(prefix: &str) -> Arc<UsageLedger> {
        let counters = tollgate_limits::RedisCounters::new("redis://127.0.0.1:6379", Duration::from_millis(500))
            .expect("a Redis URL");
        counters
            .connect(Duration::from_secs(2))
            .await
            .expect("these tests need a redis server on 127.0.0.1:6379");
        UsageLedger::new(
            1,
            Some((
                counters.client().clone(),
                prefix.to_string(),
                Duration::from_millis(500),
            )),
        )
    }

    #[tokio::test]
    async fn a_write_sent_again_counts_once_and_any_name_reads_back() {
        let prefix = format!("tollgate-test-{}-{}:usage", std::process::id(), line!());
        let ledger = open(&prefix).await;
        let Some(redis) = &ledger.redis else { panic!("no redis") };
        let hour = hour_now();
        let key = format!("{prefix}:{hour}");
        let (consumer, model) = ("team|a 100%", "gpt|4o");
        let field = |metric: &str| format!("{}|{}|{metric}", escape(consumer), escape(model));
        let write = |seq: u64| {
            vec![
                "3600".to_string(),
                redis.seq_field.clone(),
                seq.to_string(),
                field("requests"),
                "2".to_string(),
                field("prompt"),
                "30".to_string(),
                field("cost:US|D"),
                "0.5".to_string(),
            ]
        };
        // The first write landed but its answer was lost: it is sent again, then the next one.
        assert!(ledger.write(redis, &key, &write(1)).await);
        assert!(ledger.write(redis, &key, &write(1)).await);
        assert!(ledger.write(redis, &key, &write(2)).await);
        let rows = ledger.rows(hour, hour).await.expect("rows");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let ((_, c, m), t) = &rows[0];
        assert_eq!((&**c, &**m), (consumer, model));
        assert_eq!((t.requests, t.prompt), (4, 60));
        assert_eq!(t.cost, vec![("US|D".to_string(), 1.0)]);

        // Another process (a restarted node) starts its own sequence.
        let other = open(&prefix).await;
        let Some(other_redis) = &other.redis else {
            panic!("no redis")
        };
        let mut args = write(1);
        args[1] = other_redis.seq_field.clone();
        assert!(other.write(other_redis, &key, &args).await);
        let rows = other.rows(hour, hour).await.expect("rows");
        assert_eq!(rows[0].1.requests, 6);
        let _: i64 = fred::interfaces::KeysInterface::del(&redis.client, key)
            .await
            .expect("cleanup");
    }
}
