//! The answer cache shared through Redis (`--redis-url`): what one node caches, every node
//! answers from within a second, and a new or restarted node starts warm.
//!
//! - **Entries**: each cached answer is one Redis string (question, vector, answer, metadata in a
//!   small binary form, [`encode`]) under `{base}:e:{model}:{namespace}:{exact}` with the
//!   entry's remaining time as its expiry, so Redis forgets what the nodes forget.
//! - **News**: after writing an entry a node appends its key to the stream `{base}:log`
//!   (trimmed to about `log_len` items). Every node follows the stream with a blocking read and
//!   loads the entries it names that it did not write itself.
//! - **Warm-up**: at start, and again after any lost connection (news may have been missed), a
//!   node scans the entry keys and loads every live entry it does not hold.
//! - **Flushes**: `DELETE /admin/cache` deletes the matching keys and appends a flush to the
//!   stream, which every node applies to its memory.
//!
//! Writes leave the request path through a bounded queue to one writer task; when the queue is
//! full the entry stays on this node only and the drop is counted. An entry made with another
//! embedding model (its name is in the entry) is loaded for exact repeats only: its vector would
//! not compare with this node's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::{ClusterHash, CustomCommand, Expiration, Value};
use tokio::sync::mpsc;
use tollgate_semantic::{ExactKey, Flush, Namespace, NewEntry};

use super::answer::CachedAnswer;
use super::{now_ms, AnswerCache};
use crate::telemetry::metrics::CacheMetrics;

/// Entries waiting for the writer; more are kept on this node only.
const WRITE_QUEUE: usize = 4096;
/// Keys per SCAN page and per MGET while warming up.
const WARM_BATCH: usize = 256;
/// How long a blocking read of the stream waits for news.
const BLOCK_MS: u64 = 1000;

/// How this node shares its cache.
#[derive(Clone)]
pub struct SharedOptions {
    /// Key prefix: `tollgate:cache`, or `tollgate:cache:{--redis-namespace}`.
    pub base: String,
    /// This node, so it skips its own news.
    pub node: String,
    /// The embedding model's name, stored with each vector.
    pub embedder: String,
    /// Stream items kept (approximately).
    pub log_len: u64,
    pub timeout: Duration,
}

/// An entry on its way to Redis.
pub struct Outgoing {
    pub namespace: Namespace,
    pub model: String,
    pub exact: ExactKey,
    pub question: Option<(String, Vec<f32>)>,
    pub answer: Arc<CachedAnswer>,
    pub expires_at_ms: u64,
}

/// This node's side of the sharing: the writer's queue, and a client for flushes.
pub struct Shared {
    opts: SharedOptions,
    client: Client,
    writes: mpsc::Sender<Outgoing>,
    metrics: CacheMetrics,
}

impl Shared {
    /// Start the writer and the follower on `rt`; the follower warms `cache` up first.
    pub fn start(
        client: &Client,
        opts: SharedOptions,
        cache: std::sync::Weak<AnswerCache>,
        metrics: CacheMetrics,
        rt: &tokio::runtime::Handle,
    ) -> Shared {
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        rt.spawn(write_forever(client.clone(), opts.clone(), queue, metrics.clone()));
        let reader = client.clone_new();
        rt.spawn(follow_forever(reader, opts.clone(), cache, metrics.clone()));
        Shared {
            opts,
            client: client.clone(),
            writes,
            metrics,
        }
    }

    /// Queue `entry` for Redis; never waits.
    pub fn publish(&self, entry: Outgoing) {
        if self.writes.try_send(entry).is_err() {
            self.metrics.redis.with_label_values(&["write", "dropped"]).inc();
        }
    }

    /// Delete the entries `scope` names from Redis and tell the other nodes; the count deleted.
    pub async fn flush(&self, scope: &Flush) -> Result<usize, fred::error::Error> {
        // The keys to delete, and the scope as the other nodes read it (`flush_scope`).
        let base = glob_escape(&self.opts.base);
        let (pattern, scope_field) = match scope {
            Flush::All => (format!("{base}:e:*"), "all".to_string()),
            Flush::Model(m) => (format!("{base}:e:{:016x}:*", model_hash(m)), format!("model:{m}")),
            Flush::Namespace(ns) => (format!("{base}:e:*:{:016x}:*", ns.0), format!("ns:{:016x}", ns.0)),
        };
        let mut deleted = 0;
        let mut cursor = "0".to_string();
        loop {
            let (next, keys) = scan_page(&self.client, &cursor, &pattern, self.opts.timeout).await?;
            if !keys.is_empty() {
                deleted += keys.len();
                timed(self.opts.timeout, self.client.unlink::<i64, _>(keys)).await?;
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        append_news(&self.client, &self.opts, "flush", scope_field.into_bytes()).await?;
        self.metrics.redis.with_label_values(&["flush", "ok"]).inc();
        Ok(deleted)
    }
}

/// The Redis key of an entry.
fn entry_key(base: &str, model: &str, namespace: Namespace, exact: &ExactKey) -> String {
    use std::fmt::Write as _;
    let mut key = format!("{base}:e:{:016x}:{:016x}:", model_hash(model), namespace.0);
    for b in exact.0 {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// FNV-1a of the model name: keys stay short and glob-safe whatever the name holds.
fn model_hash(model: &str) -> u64 {
    model.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, fred::error::Error>>,
) -> Result<T, fred::error::Error> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(fred::error::Error::new(
            fred::error::ErrorKind::Timeout,
            "redis timed out",
        )),
    }
}

fn command(name: &'static str, blocking: bool) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, blocking)
}

async fn append_news(
    client: &Client,
    opts: &SharedOptions,
    op: &str,
    value: Vec<u8>,
) -> Result<(), fred::error::Error> {
    let args: Vec<Value> = vec![
        format!("{}:log", opts.base).into(),
        "MAXLEN".into(),
        "~".into(),
        Value::Integer(opts.log_len as i64),
        "*".into(),
        "op".into(),
        op.to_string().into(),
        "node".into(),
        opts.node.clone().into(),
        "v".into(),
        Value::Bytes(Bytes::from(value)),
    ];
    timed(opts.timeout, client.custom::<Value, _>(command("XADD", false), args))
        .await
        .map(|_| ())
}

async fn write_forever(
    client: Client,
    opts: SharedOptions,
    mut queue: mpsc::Receiver<Outgoing>,
    metrics: CacheMetrics,
) {
    while let Some(entry) = queue.recv().await {
        let result = write_one(&client, &opts, &entry).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics.redis.with_label_values(&["write", label]).inc();
        if let Err(e) = result {
            tracing::debug!(error = %e, "semantic cache: an entry was not written to redis");
        }
    }
}

async fn write_one(client: &Client, opts: &SharedOptions, entry: &Outgoing) -> Result<(), fred::error::Error> {
    let now = now_ms();
    let ttl = entry.expires_at_ms.saturating_sub(now);
    if ttl == 0 {
        return Ok(());
    }
    let key = entry_key(&opts.base, &entry.model, entry.namespace, &entry.exact);
    let value = encode(entry, &opts.embedder, now);
    timed(
        opts.timeout,
        client.set::<Value, _, _>(
            key.as_str(),
            Value::Bytes(Bytes::from(value)),
            Some(Expiration::PX(ttl as i64)),
            None,
            false,
        ),
    )
    .await?;
    append_news(client, opts, "put", key.into_bytes()).await
}

/// Follow the stream forever, warming up first and again after every failure.
async fn follow_forever(
    client: Client,
    opts: SharedOptions,
    cache: std::sync::Weak<AnswerCache>,
    metrics: CacheMetrics,
) {
    let _connection = client.connect();
    let _ = tokio::time::timeout(Duration::from_secs(2), client.wait_for_connect()).await;
    let mut failures = 0u32;
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        let result = follow(&client, &opts, &cache, &metrics, &mut failures).await;
        if let Err(e) = result {
            metrics.redis.with_label_values(&["read", "error"]).inc();
            if failures == 0 {
                tracing::warn!(error = %e, "semantic cache: lost the redis stream; warming up again once it answers");
            }
            failures = failures.saturating_add(1);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn follow(
    client: &Client,
    opts: &SharedOptions,
    cache: &std::sync::Weak<AnswerCache>,
    metrics: &CacheMetrics,
    failures: &mut u32,
) -> Result<(), fred::error::Error> {
    let log = format!("{}:log", opts.base);
    let mut last = last_news_id(client, &log, opts.timeout).await?;
    let warmed = warm_up(client, opts, cache, metrics).await?;
    tracing::info!(
        entries = warmed,
        after_failures = *failures,
        "semantic cache: warmed up from redis"
    );
    *failures = 0;
    loop {
        let args: Vec<Value> = vec![
            "COUNT".into(),
            Value::Integer(WARM_BATCH as i64),
            "BLOCK".into(),
            Value::Integer(BLOCK_MS as i64),
            "STREAMS".into(),
            log.clone().into(),
            last.clone().into(),
        ];
        let reply = timed(
            opts.timeout + Duration::from_millis(BLOCK_MS),
            client.custom::<Value, _>(command("XREAD", true), args),
        )
        .await?;
        let news = parse_xread(reply);
        let Some(cache) = cache.upgrade() else { return Ok(()) };
        let mut keys = Vec::new();
        for item in news {
            last = item.id;
            if item.node == opts.node {
                continue;
            }
            match item.op.as_str() {
                "put" => keys.push(item.value),
                "flush" => {
                    if let Some(scope) = flush_scope(&item.value) {
                        cache.store.flush(&scope);
                    }
                }
                _ => {}
            }
        }
        if !keys.is_empty() {
            load(client, opts, &cache, metrics, keys, true).await?;
        }
    }
}

/// The id of the newest stream item ("0-0" when there is none): news after it is followed.
async fn last_news_id(client: &Client, log: &str, timeout: Duration) -> Result<String, fred::error::Error> {
    let args: Vec<Value> = vec![
        log.to_string().into(),
        "+".into(),
        "-".into(),
        "COUNT".into(),
        Value::Integer(1),
    ];
    let reply = timed(timeout, client.custom::<Value, _>(command("XREVRANGE", false), args)).await?;
    Ok(reply
        .into_array()
        .into_iter()
        .next()
        .and_then(|item| item.into_array().into_iter().next())
        .and_then(|id| id.as_str().map(|s| s.to_string()))
        .unwrap_or_else(|| "0-0".to_string()))
}

async fn warm_up(
    client: &Client,
    opts: &SharedOptions,
    cache: &std::sync::Weak<AnswerCache>,
    metrics: &CacheMetrics,
) -> Result<usize, fred::error::Error> {
    let pattern = format!("{}:e:*", glob_escape(&opts.base));
    let mut cursor = "0".to_string();
    let mut loaded = 0;
    loop {
        let (next, keys) = scan_page(client, &cursor, &pattern, opts.timeout).await?;
        if !keys.is_empty() {
            let Some(cache) = cache.upgrade() else {
                return Ok(loaded);
            };
            loaded += load(client, opts, &cache, metrics, keys, false).await?;
        }
        if next == "0" {
            return Ok(loaded);
        }
        cursor = next;
    }
}

async fn scan_page(
    client: &Client,
    cursor: &str,
    pattern: &str,
    timeout: Duration,
) -> Result<(String, Vec<Bytes>), fred::error::Error> {
    let args: Vec<Value> = vec![
        cursor.to_string().into(),
        "MATCH".into(),
        pattern.to_string().into(),
        "COUNT".into(),
        Value::Integer(WARM_BATCH as i64),
    ];
    let reply = timed(timeout, client.custom::<Value, _>(command("SCAN", false), args)).await?;
    let mut parts = reply.into_array().into_iter();
    let next = parts
        .next()
        .and_then(|c| c.as_str().map(|s| s.to_string()))
        .unwrap_or_else(|| "0".to_string());
    let keys = parts
        .next()
        .map(|k| k.into_array().into_iter().filter_map(|k| k.into_bytes()).collect())
        .unwrap_or_default();
    Ok((next, keys))
}

/// Load the entries under `keys` that this node does not hold yet; how many were loaded.
/// `news`: they were just written, so the lag since then is recorded.
async fn load(
    client: &Client,
    opts: &SharedOptions,
    cache: &AnswerCache,
    metrics: &CacheMetrics,
    keys: Vec<Bytes>,
    news: bool,
) -> Result<usize, fred::error::Error> {
    let values: Vec<Value> = timed(opts.timeout, client.mget::<Vec<Value>, _>(keys)).await?;
    let now = now_ms();
    let mut loaded = 0;
    for value in values {
        let Some(entry) = value.as_bytes().and_then(decode) else {
            continue;
        };
        if news {
            metrics
                .sync_lag
                .observe(now.saturating_sub(entry.written_ms) as f64 / 1000.0);
        }
        if entry.expires_at_ms <= now
            || cache
                .store
                .expiry_of(&entry.exact)
                .is_some_and(|held| held >= entry.expires_at_ms)
        {
            continue;
        }
        let question = match entry.question {
            Some((text, vector)) if entry.embedder == opts.embedder => Some((text, vector)),
            _ => None,
        };
        let size = entry.answer.size();
        let inserted = cache.store.insert(NewEntry {
            namespace: entry.namespace,
            model: entry.model,
            exact: entry.exact,
            question,
            answer: Arc::new(entry.answer),
            answer_bytes: size,
            expires_at_ms: entry.expires_at_ms,
        });
        loaded += usize::from(inserted.is_some());
    }
    Ok(loaded)
}

fn flush_scope(value: &[u8]) -> Option<Flush> {
    let s = std::str::from_utf8(value).ok()?;
    if s == "all" {
        return Some(Flush::All);
    }
    if let Some(model) = s.strip_prefix("model:") {
        return Some(Flush::Model(model.to_string()));
    }
    let ns = s.strip_prefix("ns:")?;
    u64::from_str_radix(ns, 16).ok().map(|n| Flush::Namespace(Namespace(n)))
}

/// One item of the stream.
struct News {
    id: String,
    op: String,
    node: String,
    value: Bytes,
}

/// The items of an `XREAD` reply (RESP2: `[[stream, [[id, [field, value, ...]], ...]]]`).
fn parse_xread(reply: Value) -> Vec<News> {
    let mut out = Vec::new();
    for stream in reply.into_array() {
        let mut parts = stream.into_array().into_iter();
        let Some(items) = parts.nth(1) else { continue };
        for item in items.into_array() {
            let mut item = item.into_array().into_iter();
            let Some(id) = item.next().and_then(|v| v.as_str().map(|s| s.to_string())) else {
                continue;
            };
            let mut news = News {
                id,
                op: String::new(),
                node: String::new(),
                value: Bytes::new(),
            };
            let fields: Vec<Value> = item.next().map(|f| f.into_array()).unwrap_or_default();
            let mut fields = fields.into_iter();
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                match k.as_str().as_deref() {
                    Some("op") => news.op = v.as_str().map(|s| s.to_string()).unwrap_or_default(),
                    Some("node") => news.node = v.as_str().map(|s| s.to_string()).unwrap_or_default(),
                    Some("v") => news.value = v.into_bytes().unwrap_or_default(),
                    _ => {}
                }
            }
            out.push(news);
        }
    }
    out
}

/// An entry as Redis holds it.
#[derive(Debug, PartialEq)]
struct Decoded {
    namespace: Namespace,
    exact: ExactKey,
    model: String,
    embedder: String,
    question: Option<(String, Vec<f32>)>,
    answer: CachedAnswer,
    expires_at_ms: u64,
    written_ms: u64,
}

const MAGIC: &[u8; 4] = b"TGC1";

fn encode(entry: &Outgoing, embedder: &str, written_ms: u64) -> Vec<u8> {
    let vector_len = entry.question.as_ref().map_or(0, |(q, v)| q.len() + v.len() * 4);
    let mut out = Vec::with_capacity(128 + entry.answer.size() + vector_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&entry.namespace.0.to_le_bytes());
    out.extend_from_slice(&entry.exact.0);
    out.extend_from_slice(&entry.expires_at_ms.to_le_bytes());
    out.extend_from_slice(&written_ms.to_le_bytes());
    put_str(&mut out, &entry.model);
    put_str(&mut out, embedder);
    match &entry.question {
        Some((text, vector)) => {
            out.push(1);
            put_str(&mut out, text);
            out.extend_from_slice(&(vector.len() as u32).to_le_bytes());
            for x in vector {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        None => out.push(0),
    }
    put_str(&mut out, &entry.answer.content);
    put_str(&mut out, &entry.answer.finish_reason);
    out.extend_from_slice(&entry.answer.completion_tokens.to_le_bytes());
    out.extend_from_slice(&entry.answer.created.to_le_bytes());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads what [`encode`] wrote; `None` for anything else (another version, a cut value).
fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return None;
    }
    let namespace = Namespace(r.u64()?);
    let exact = ExactKey(r.take(32)?.try_into().ok()?);
    let expires_at_ms = r.u64()?;
    let written_ms = r.u64()?;
    let model = r.string()?;
    let embedder = r.string()?;
    let question = match r.take(1)?[0] {
        0 => None,
        1 => {
            let text = r.string()?;
            let dims = r.u32()? as usize;
            let raw = r.take(dims.checked_mul(4)?)?;
            let vector = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some((text, vector))
        }
        _ => return None,
    };
    let answer = CachedAnswer {
        content: r.string()?,
        finish_reason: r.string()?,
        completion_tokens: r.u64()?,
        created: r.u64()?,
    };
    r.0.is_empty().then_some(Decoded {
        namespace,
        exact,
        model,
        embedder,
        question,
        answer,
        expires_at_ms,
        written_ms,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(question: bool) -> Outgoing {
        Outgoing {
            namespace: Namespace(42),
            model: "qwen/chat*".to_string(),
            exact: ExactKey([9; 32]),
            question: question.then(|| ("How do I reset my password?".to_string(), vec![0.5, -0.25, 1.0])),
            answer: Arc::new(CachedAnswer {
                content: "Open settings, then 密码.".to_string(),
                finish_reason: "stop".to_string(),
                completion_tokens: 12,
                created: 1_700_000_000,
            }),
            expires_at_ms: 5_000,
        }
    }

    #[test]
    fn an_entry_reads_back_as_written_and_a_cut_or_foreign_value_is_refused() {
        for with_question in [true, false] {
            let e = outgoing(with_question);
            let bytes = encode(&e, "use-multilingual-v3", 1_234);
            let d = decode(&bytes).unwrap();
            assert_eq!(
                (d.namespace, d.exact, d.model.as_str()),
                (e.namespace, e.exact, e.model.as_str())
            );
            assert_eq!((d.expires_at_ms, d.written_ms), (5_000, 1_234));
            assert_eq!(d.embedder, "use-multilingual-v3");
            assert_eq!(d.question, e.question);
            assert_eq!(d.answer, *e.answer);
            for cut in [0, 3, 40, bytes.len() - 1] {
                assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_none());
        }
        assert!(decode(b"TGC2").is_none());
    }

    #[test]
    fn keys_keep_their_shape_and_flush_patterns_match_only_their_scope() {
        let key = entry_key("tollgate:cache", "qwen/chat*", Namespace(42), &ExactKey([0xab; 32]));
        let parts: Vec<&str> = key.split(':').collect();
        assert_eq!(parts.len(), 6, "{key}");
        assert_eq!((parts[0], parts[1], parts[2]), ("tollgate", "cache", "e"));
        assert_eq!(parts[4], "000000000000002a");
        assert_eq!(parts[5], "ab".repeat(32));
        assert_ne!(model_hash("a"), model_hash("b"));
        assert_eq!(glob_escape("ns*[x]?"), "ns\\*\\[x\\]\\?");
        assert_eq!(flush_scope(b"all"), Some(Flush::All));
        assert_eq!(flush_scope(b"model:m:1"), Some(Flush::Model("m:1".to_string())));
        assert_eq!(
            flush_scope(b"ns:000000000000002a"),
            Some(Flush::Namespace(Namespace(42)))
        );
        assert_eq!(flush_scope(b"ns:zz"), None);
    }

    #[test]
    fn stream_items_are_read_from_an_xread_reply() {
        let item = |id: &str, op: &str, node: &str, v: &str| {
            Value::Array(vec![
                id.to_string().into(),
                Value::Array(vec![
                    "op".into(),
                    op.to_string().into(),
                    "node".into(),
                    node.to_string().into(),
                    "v".into(),
                    Value::Bytes(Bytes::from(v.to_string())),
                ]),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            "tollgate:cache:log".into(),
            Value::Array(vec![item("1-0", "put", "a", "k1"), item("2-0", "flush", "b", "all")]),
        ])]);
        let news = parse_xread(reply);
        assert_eq!(news.len(), 2);
        assert_eq!(
            (news[0].id.as_str(), news[0].op.as_str(), news[0].node.as_str()),
            ("1-0", "put", "a")
        );
        assert_eq!(news[1].value, Bytes::from_static(b"all"));
        assert!(parse_xread(Value::Null).is_empty(), "no news within the block");
    }
}
