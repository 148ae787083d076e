//! Request quotas at admission: every quota of the caller's consumer is counted for this request
//! in its current calendar window; over the limit is a 429 naming the quota.
//!
//! Counts live in Redis when `--redis-url` is set (atomic, shared by every node: N calls allowed
//! across all nodes, the N+1th refused on any), in memory otherwise. With Redis unreachable each
//! quota says whether to serve anyway or refuse; the outage is logged once and counted.
//!
//! A quota counts calls that were served: a request refused by the gateway after its quotas
//! counted it (by another of its quotas, a rate limit, or because no provider could be reached)
//! gets its counts back ([`QuotaStore::refund`]). A provider's own answer, error or not, counts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tollgate_limits::redis_key::push_part;
use tollgate_limits::{Clock, LocalCounters, RedisCounters, Window};

use super::Refusal;
use crate::config::consumers::Consumer;
use crate::config::quotas::{Quota, QuotaScope, UserSource};
use crate::error::{ApiError, ErrorCode};
use crate::rate_headers::{Counter, RateHeaders, Unit};
use crate::telemetry::Metrics;

/// Where counts are kept.
pub enum Backend {
    Local(LocalCounters),
    Redis(RedisCounters),
}

/// One count a request added, kept until the request ends in case it must be given back.
#[derive(Debug)]
pub struct Charge {
    key: String,
    end_ms: u64,
}

/// What admission says when every quota let the request through.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The tightest quota after this request, for `x-ratelimit-*-requests` headers.
    pub tightest: Option<Counter>,
    /// The counts this request added.
    pub charges: Vec<Charge>,
}

/// Counts requests against quotas.
pub struct QuotaStore {
    backend: Backend,
    clock: Arc<dyn Clock>,
    /// [`HEAD`], with the namespace when there is one.
    head: String,
    redis_down: AtomicBool,
}

/// Who a quota counts for this request.
pub fn identity(scope: &QuotaScope, key_id: &str, body_user: Option<&str>, headers: &HeaderMap) -> String {
    let tagged = |tag: &str, id: &str| {
        let mut s = String::with_capacity(tag.len() + id.len());
        s.push_str(tag);
        s.push_str(id);
        s
    };
    let by_key = || tagged("key:", key_id);
    match scope {
        QuotaScope::Consumer => "*".to_string(),
        QuotaScope::Key | QuotaScope::User(UserSource::Key) => by_key(),
        QuotaScope::User(UserSource::Body) => body_user
            .filter(|u| !u.is_empty())
            .map(|u| tagged("user:", u))
            .unwrap_or_else(by_key),
        QuotaScope::User(UserSource::Header(name)) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|u| !u.is_empty())
            .map(|u| format!("user:{}", u.chars().take(128).collect::<String>()))
            .unwrap_or_else(by_key),
    }
}

/// The counter key of a quota window: its parts (consumer, quota, identity) in one `{hash tag}`
/// (a Redis Cluster keeps a counter on one slot), client-chosen text that could break the key's
/// shape replaced by its digest — the form [`tagged_key`] gives. The consumer and quota parts
/// are fixed at load ([`key_prefix`](crate::config::quotas::key_prefix)); each request adds its identity and window.
pub fn counter_key(head: &str, prefix: &str, identity: &str, window: &Window) -> String {
    let mut num = itoa::Buffer::new();
    let start = num.format(window.start_ms);
    let mut key = String::with_capacity(head.len() + prefix.len() + identity.len() + 2 + start.len());
    key.push_str(head);
    key.push_str(prefix);
    push_part(&mut key, identity);
    key.push_str("}:");
    key.push_str(start);
    key
}

/// The start of every quota counter key without a namespace.
pub const HEAD: &str = "tollgate:quota:";

impl QuotaStore {
    /// `namespace` (may be empty) separates this cluster's counts from another's in one Redis.
    pub fn new(backend: Backend, clock: Arc<dyn Clock>, namespace: &str) -> Self {
        let head = match namespace {
            "" => HEAD.to_string(),
            ns => format!("{HEAD}{ns}:"),
        };
        QuotaStore {
            backend,
            clock,
            head,
            redis_down: AtomicBool::new(false),
        }
    }

    /// Count this request against every quota of `consumer`: the tightest state and the counts
    /// added, or a refusal (and then no quota keeps a count of this request).
    pub async fn admit(
        &self,
        consumer: &Consumer,
        key_id: &str,
        body_user: Option<&str>,
        headers: &HeaderMap,
        metrics: &Metrics,
    ) -> Result<Admitted, Refusal> {
        let mut admitted = Admitted {
            tightest: None,
            charges: Vec::with_capacity(consumer.quotas.len()),
        };
        for quota in &consumer.quotas {
            let now = self.clock.now_ms();
            let window = quota.calendar.window(now, quota.period);
            let who = identity(&quota.scope, key_id, body_user, headers);
            let key = counter_key(&self.head, &quota.key_prefix, &who, &window);
            let count = match &self.backend {
                Backend::Local(c) => c.incr(&key, window.end_ms, now),
                // Boxed: the Redis client's future is kilobytes; inline it would grow every
                // request's future, counted in Redis or not.
                Backend::Redis(r) => match Box::pin(r.incr(&key, window.end_ms)).await {
                    Ok(n) => {
                        if self.redis_down.swap(false, Ordering::Relaxed) {
                            tracing::warn!("quota store: redis is answering again");
                        }
                        n
                    }
                    Err(e) => {
                        metrics.quota_store_errors.inc();
                        if !self.redis_down.swap(true, Ordering::Relaxed) {
                            tracing::error!(error = %e, "quota store: redis unreachable; quotas follow their on_redis_error policy");
                        }
                        if quota.fail_open {
                            continue;
                        }
                        self.refund(std::mem::take(&mut admitted.charges), metrics).await;
                        return Err(Refusal {
                            error: ApiError::new(
                                ErrorCode::QuotaStoreUnavailable,
                                format!(
                                    "The quota `{}` cannot be checked right now; try again shortly.",
                                    quota.name
                                ),
                            ),
                            headers: RateHeaders::retry_after(1),
                        });
                    }
                },
            };
            let state = Counter {
                limit: quota.limit,
                remaining: quota.limit.saturating_sub(count),
                reset_ms: window.remaining_ms(now),
            };
            admitted.charges.push(Charge {
                key,
                end_ms: window.end_ms,
            });
            if count > quota.limit {
                metrics
                    .quota_rejections
                    .with_label_values(&[&consumer.name, &quota.name])
                    .inc();
                self.refund(std::mem::take(&mut admitted.charges), metrics).await;
                return Err(refusal(consumer, quota, &who, state));
            }
            state.keep_tighter(&mut admitted.tightest);
        }
        Ok(admitted)
    }

    /// Give back the counts of a request that was not served. Best effort: a count Redis could
    /// not take back stays (and is counted as a store error).
    pub async fn refund(&self, charges: Vec<Charge>, metrics: &Metrics) {
        if charges.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        // A window that is over keeps its count: nothing it decides any more.
        for c in charges.into_iter().filter(|c| c.end_ms > now) {
            match &self.backend {
                Backend::Local(l) => l.decr(&c.key, c.end_ms, now),
                Backend::Redis(r) => {
                    if Box::pin(r.decr(&c.key)).await.is_err() {
                        metrics.quota_store_errors.inc();
                    }
                }
            }
        }
    }
}

fn refusal(consumer: &Consumer, quota: &Quota, who: &str, state: Counter) -> Refusal {
    let whom = match &quota.scope {
        QuotaScope::Consumer => "this consumer".to_string(),
        _ => who.replacen(':', " `", 1) + "`",
    };
    let secs = state.reset_ms.div_ceil(1000);
    let error = ApiError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "Quota `{}` of `{}` exceeded: {} requests per {} for {whom}. It resets in {secs} s.",
            quota.name,
            consumer.name,
            quota.limit,
            quota.period.name()
        ),
    );
    let headers = RateHeaders::refusal(Unit::Requests, state, secs.max(1));
    Refusal { error, headers }
}

/// Connect a Redis client on `rt` (a runtime that lives as long as the process) and wait
/// briefly for the first connection. An unreachable Redis is logged, not fatal.
pub fn start_redis(url: &str, timeout: Duration, rt: &tokio::runtime::Handle) -> anyhow::Result<RedisCounters> {
    let counters = RedisCounters::new(url, timeout)?;
    let c = counters.clone();
    match rt.block_on(async move { c.connect(Duration::from_secs(2)).await }) {
        Ok(()) => tracing::info!("connected to redis"),
        Err(e) => tracing::error!(error = %e, "redis not reachable at start; retrying in the background"),
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::quotas::key_prefix;
    use http::{HeaderName, HeaderValue};
    use tollgate_limits::redis_key::tagged_key;

    #[test]
    fn identities_follow_the_configured_source() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("bob"));
        let header = QuotaScope::User(UserSource::Header(HeaderName::from_static("x-user")));
        assert_eq!(
            identity(&QuotaScope::User(UserSource::Body), "k1", Some("alice"), &h),
            "user:alice"
        );
        assert_eq!(identity(&QuotaScope::User(UserSource::Body), "k1", None, &h), "key:k1");
        assert_eq!(identity(&header, "k1", Some("alice"), &h), "user:bob");
        assert_eq!(identity(&header, "k1", None, &HeaderMap::new()), "key:k1");
        assert_eq!(identity(&QuotaScope::Key, "k1", Some("alice"), &h), "key:k1");
        assert_eq!(identity(&QuotaScope::Consumer, "k1", Some("alice"), &h), "*");
    }

    #[test]
    fn counter_keys_keep_their_shape_whatever_the_user_sends() {
        let w = Window {
            start_ms: 1000,
            end_ms: 2000,
        };
        let prefix = key_prefix("dept-a", "daily");
        assert_eq!(
            counter_key(HEAD, &prefix, "user:alice", &w),
            "tollgate:quota:{dept-a/daily/user:alice}:1000"
        );
        let k = counter_key("tollgate:quota:prod:", &prefix, "user:}{evil", &w);
        assert!(k.starts_with("tollgate:quota:prod:{dept-a/daily/"), "{k}");
        assert_eq!(k.matches('{').count(), 1);
        assert_eq!(k.matches('}').count(), 1);
        // The same keys as the general builder gives (counters survive the change of builder),
        // also when consumer or quota names are digested.
        let long = "q".repeat(200);
        for (c, q, who) in [
            ("dept-a", "daily", "user:}{evil"),
            ("a/b", long.as_str(), "key:k1"),
            ("x", "y", "*"),
        ] {
            assert_eq!(
                counter_key(HEAD, &key_prefix(c, q), who, &w),
                tagged_key("tollgate:quota:", &[c, q, who], ":1000")
            );
        }
    }
}
