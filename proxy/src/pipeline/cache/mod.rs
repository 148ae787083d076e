//! The cache stages: the lookup before any upstream is touched, and what the response side
//! records once an answer is complete.
//!
//! The lookup runs after admission: exact key first, then (when the request has a user question
//! and the embedding pool has room) the question's nearest cached neighbours in its namespace,
//! through the false-hit guards of `tollgate-semantic`. A hit is answered by the gateway, as JSON
//! or as a replayed stream; a miss carries a [`Pending`] entry to the response side, which stores
//! the answer if it is complete and plain ([`answer`]).
//!
//! Not cached: other endpoints than chat completions, models outside `[cache] models`, `n > 1`,
//! a `temperature` above `max_temperature`, tools or functions offered, tool or function results
//! in the messages, `Cache-Control: no-store`. `Cache-Control: no-cache` skips the lookup and
//! refreshes the entry. `x-tollgate-cache-threshold` may raise the similarity a hit needs.

pub mod answer;
pub mod key;
pub mod replay;
pub mod shared;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use tollgate_semantic::{EmbedPool, ExactKey, Namespace, NewEntry, Question, Store};

use self::answer::CachedAnswer;
use crate::api::Endpoint;
use crate::config::cache::CachePolicy;
use crate::json_spans::text_of;
use crate::pipeline::body::{Edit, Prompt, RequestView};
use crate::telemetry::metrics::CacheMetrics;

/// The cache of this node: entries, the embedding pool when the model loaded, and the sharing
/// through Redis when there is one.
pub struct AnswerCache {
    pub store: Store<CachedAnswer>,
    pub pool: Option<Arc<EmbedPool>>,
    pub embed_wait: Duration,
    pub metrics: CacheMetrics,
    /// Set once at start with `--redis-url`.
    pub shared: OnceLock<shared::Shared>,
}

impl AnswerCache {
    /// Drop the entries past their time, every `every`, for as long as the cache lives.
    pub async fn expire_forever(cache: std::sync::Weak<AnswerCache>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let Some(cache) = cache.upgrade() else { return };
            cache.store.remove_expired(now_ms());
        }
    }
}

/// What a lookup ended with, for the access log, the metrics and the response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheOutcome {
    /// The cache is off for this request's model or endpoint.
    #[default]
    Off,
    /// Not cacheable (see the module docs) or `no-store`.
    Skipped,
    Miss,
    /// The semantic step was skipped: the embedding pool was full or too slow.
    Shed,
    Hit,
    SemanticHit,
}

impl CacheOutcome {
    pub fn name(self) -> &'static str {
        match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Skipped => "skipped",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Shed => "shed",
            CacheOutcome::Hit => "hit",
            CacheOutcome::SemanticHit => "semantic-hit",
        }
    }

    /// The `x-tollgate-cache` header's value, when there is one.
    pub fn header(self) -> Option<&'static str> {
        match self {
            CacheOutcome::Off => None,
            CacheOutcome::Hit => Some("hit"),
            CacheOutcome::SemanticHit => Some("semantic-hit"),
            CacheOutcome::Miss | CacheOutcome::Shed => Some("miss"),
            CacheOutcome::Skipped => Some("skip"),
        }
    }
}

/// An entry to write once the answer is complete.
pub struct Pending {
    pub exact: ExactKey,
    pub namespace: Namespace,
    pub model: String,
    pub question: Option<(String, Vec<f32>)>,
    pub ttl_ms: u64,
}

/// A cached answer found for this request.
pub struct Found {
    pub answer: Arc<CachedAnswer>,
    pub namespace: Namespace,
    pub entry: u64,
    pub similarity: Option<f32>,
}

/// The lookup's result.
pub enum Lookup {
    /// Nothing to do (off, skipped): forward, record nothing.
    Pass(CacheOutcome),
    /// Forward; write `Pending` when the answer is complete.
    Miss(CacheOutcome, Box<Pending>),
    Hit(CacheOutcome, Found),
}

/// The request as the lookup reads it.
pub struct CacheRequest<'a> {
    pub endpoint: Endpoint,
    pub body: &'a [u8],
    pub view: &'a RequestView,
    pub edits: &'a [Edit],
    pub headers: &'a HeaderMap,
    pub consumer: Option<&'a str>,
}

/// How long past `--cache-embed-wait-ms` a lookup waits for its own batch before giving up.
const OWN_BATCH_ALLOWANCE: Duration = Duration::from_millis(50);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The lookup stage.
pub async fn lookup(cache: &AnswerCache, policy: &CachePolicy, req: &CacheRequest<'_>) -> Lookup {
    if req.endpoint != Endpoint::ChatCompletions || !policy.covers(&req.view.model) {
        return Lookup::Pass(CacheOutcome::Off);
    }
    let control = cache_control(req.headers);
    if control.no_store || !cacheable(req.body, req.view, policy.max_temperature) {
        return Lookup::Pass(CacheOutcome::Skipped);
    }
    let consumer = if policy.per_consumer { req.consumer } else { None };
    let keys = key::keys(req.body, req.view, req.edits, consumer);
    let now = now_ms();
    let pending = |question: Option<(String, Vec<f32>)>| {
        Box::new(Pending {
            exact: keys.exact,
            namespace: keys.namespace,
            model: req.view.model.clone(),
            question,
            ttl_ms: policy.ttl_ms,
        })
    };
    if !control.no_cache {
        if let Some(hit) = cache.store.exact(&keys.exact, now) {
            return Lookup::Hit(
                CacheOutcome::Hit,
                Found {
                    answer: hit.answer,
                    namespace: keys.namespace,
                    entry: hit.id,
                    similarity: None,
                },
            );
        }
    }
    let (Some(question), true, Some(pool)) = (keys.question.clone(), policy.semantic, &cache.pool) else {
        return Lookup::Miss(CacheOutcome::Miss, pending(None));
    };
    let started = Instant::now();
    let Ok(receiver) = pool.submit_within(question.clone(), cache.embed_wait) else {
        return Lookup::Miss(CacheOutcome::Shed, pending(None));
    };
    // Queued within the budget; its own batch then takes a few milliseconds more.
    let vector = match tokio::time::timeout(cache.embed_wait + OWN_BATCH_ALLOWANCE, receiver).await {
        Ok(Ok(Ok(v))) => v,
        _ => return Lookup::Miss(CacheOutcome::Shed, pending(None)),
    };
    cache.metrics.embed.observe(started.elapsed().as_secs_f64());
    if !control.no_cache {
        let hits = match tightened(req.headers) {
            Some(min) => policy.hits.tightened(min),
            None => policy.hits,
        };
        let started = Instant::now();
        let read = Question::read(&question);
        let found = cache.store.semantic(keys.namespace, &vector, &read, &hits, now);
        cache.metrics.search.observe(started.elapsed().as_secs_f64());
        if let Some(hit) = found {
            return Lookup::Hit(
                CacheOutcome::SemanticHit,
                Found {
                    answer: hit.answer,
                    namespace: keys.namespace,
                    entry: hit.id,
                    similarity: hit.similarity,
                },
            );
        }
    }
    Lookup::Miss(CacheOutcome::Miss, pending(Some((question, vector))))
}

/// Write `answer` under `pending`, and to Redis when the cache is shared.
pub fn record(cache: &AnswerCache, pending: Pending, answer: CachedAnswer) {
    let size = answer.size();
    let answer = Arc::new(answer);
    let expires_at_ms = now_ms().saturating_add(pending.ttl_ms);
    let shared = cache.shared.get();
    let question_copy = shared.and_then(|_| pending.question.clone());
    let kept = cache.store.insert(NewEntry {
        namespace: pending.namespace,
        model: pending.model.clone(),
        exact: pending.exact,
        question: pending.question,
        answer: Arc::clone(&answer),
        answer_bytes: size,
        expires_at_ms,
    });
    if let (Some(shared), Some(_)) = (shared, kept) {
        shared.publish(shared::Outgoing {
            namespace: pending.namespace,
            model: pending.model,
            exact: pending.exact,
            question: question_copy,
            answer,
            expires_at_ms,
        });
    }
}

#[derive(Default)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
}

fn cache_control(headers: &HeaderMap) -> CacheControl {
    let mut c = CacheControl::default();
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for d in v.to_str().unwrap_or("").split(',') {
            match d.trim().to_ascii_lowercase().as_str() {
                "no-store" => c.no_store = true,
                "no-cache" => c.no_cache = true,
                _ => {}
            }
        }
    }
    c
}

/// `x-tollgate-cache-threshold`: a similarity from 0 to 1 a hit must reach (it only raises).
fn tightened(headers: &HeaderMap) -> Option<f32> {
    let v: f32 = headers
        .get("x-tollgate-cache-threshold")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (0.0..=1.0).contains(&v).then_some(v)
}

/// Whether an answer to this request may be reused: one choice, a temperature within bounds, no
/// tools offered, no tool or function results in the conversation.
fn cacheable(body: &[u8], view: &RequestView, max_temperature: f64) -> bool {
    if view.choices != 1 {
        return false;
    }
    for m in &view.members {
        let value = &body[m.value.clone()];
        match &body[m.key.clone()] {
            b"temperature" => {
                let t = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<f64>().ok());
                if t.is_some_and(|t| t > max_temperature) {
                    return false;
                }
            }
            b"tools" | b"functions" => {
                let empty = value.iter().filter(|b| !b.is_ascii_whitespace()).eq(b"[]".iter()) || value == b"null";
                if !empty {
                    return false;
                }
            }
            _ => {}
        }
    }
    if let Prompt::Chat(messages) = &view.prompt {
        let tool_turn = messages.iter().any(|m| {
            m.role
                .as_ref()
                .is_some_and(|r| matches!(text_of(body, r).as_ref(), "tool" | "function"))
        });
        if tool_turn {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::body::parse;

    fn ok(body: &str) -> bool {
        let view = parse(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        cacheable(body.as_bytes(), &view, 1.0)
    }

    #[test]
    fn what_is_not_cached() {
        let q = r#""messages":[{"role":"user","content":"hi"}]"#;
        assert!(ok(&format!(r#"{{"model":"m",{q}}}"#)));
        assert!(ok(&format!(r#"{{"model":"m",{q},"temperature":0.7,"tools":[]}}"#)));
        assert!(!ok(&format!(r#"{{"model":"m",{q},"n":2}}"#)));
        assert!(!ok(&format!(r#"{{"model":"m",{q},"temperature":1.5}}"#)));
        assert!(!ok(&format!(
            r#"{{"model":"m",{q},"tools":[{{"type":"function","function":{{"name":"f"}}}}]}}"#
        )));
        assert!(!ok(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"c","content":"42"}]}"#
        ));
    }

    #[test]
    fn cache_control_and_the_threshold_header_are_read() {
        let mut h = HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, "max-age=0, No-Cache".parse().unwrap());
        assert!(cache_control(&h).no_cache && !cache_control(&h).no_store);
        h.insert("x-tollgate-cache-threshold", "0.95".parse().unwrap());
        assert_eq!(tightened(&h), Some(0.95));
        h.insert("x-tollgate-cache-threshold", "7".parse().unwrap());
        assert_eq!(tightened(&h), None);
    }
}
