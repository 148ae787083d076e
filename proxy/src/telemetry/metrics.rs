//! Prometheus series, served as text on the admin listener's `/metrics`.
//!
//! Label sets are bounded: `model` is a configured public name (or `unknown` / `-`), `provider`
//! a configured provider name, `status` an HTTP status. Nothing a client sends becomes a label.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tollgate_limits::{BucketTable, SyncStats};

/// The gateway's metrics, owned by the server and shared by reference (no global registry).
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Requests by the target that answered (provider and its model) and status.
    pub target_requests: IntCounterVec,
    pub target_duration: HistogramVec,
    pub ttft: HistogramVec,
    pub tokens: IntCounterVec,
    pub upstream_attempts: IntCounterVec,
    /// Idle provider connections in the keep-alive pool (set by the pool's sweeper, every few seconds).
    pub upstream_idle: IntGauge,
    pub reloads: IntCounterVec,
    pub config_version: IntGauge,
    pub access_log_dropped: IntCounter,
    pub quota_rejections: IntCounterVec,
    pub quota_store_errors: IntCounter,
    pub prompt_tokens_counted: IntCounterVec,
    pub limit_decisions: IntCounterVec,
    pub limit_tokens: IntCounterVec,
    pub limit_settle_errors: IntCounter,
    pub limit_hot_keys: IntCounterVec,
    /// Concurrency slots taken now, by rule.
    pub limit_slots_in_use: IntGaugeVec,
    /// Time requests waited in a concurrency rule's queue, by rule (admitted or not).
    pub limit_queue_seconds: HistogramVec,
    /// Refusals of how clients send (head and body deadlines and sizes, connections), by code.
    pub downstream_refusals: IntCounterVec,
    /// TLS certificate reloads, by result (ok, refused).
    pub tls_reloads: IntCounterVec,
    /// The answer cache's series.
    pub cache: CacheMetrics,
    /// Fallbacks, retry budgets and target health.
    pub resilience: ResilienceMetrics,
    /// The search stage's series.
    pub search: super::search_metrics::SearchMetrics,
    /// Tokens and cost by consumer, limit refusals by consumer, the gateway's overhead.
    pub usage: super::usage_metrics::UsageMetrics,
    /// The trace exporter's drops and posts.
    pub trace: super::trace::TraceMetrics,
    /// Content safety rules that fired, by direction, risk type, rule, action and consumer.
    pub guardrail_events: IntCounterVec,
    limit_state: LimitState,
    /// Where the cache's entry series read their state at scrape time (see
    /// [`Metrics::watch_cache`]).
    cache_source: std::sync::OnceLock<Box<dyn Fn() -> tollgate_semantic::StoreStats + Send + Sync>>,
    /// Where the limit series read their state at scrape time (set once at start, see
    /// [`Metrics::watch_limits`]).
    limit_sources: std::sync::OnceLock<(Arc<BucketTable>, Option<Arc<SyncStats>>)>,
}

/// One public model's series, looked up once per model rather than on every request.
#[derive(Debug, Clone)]
pub struct ModelSeries {
    /// Requests answered 200 (other statuses are looked up by label).
    pub ok: IntCounter,
    pub duration: prometheus::Histogram,
    pub ttft: prometheus::Histogram,
    /// Prompt tokens the gateway counted: exactly, then estimated.
    pub prompt_counted: [IntCounter; 2],
    /// Tokens by kind: prompt, completion, cached.
    pub tokens: [IntCounter; 3],
    /// The gateway's own time of requests that reached a provider.
    pub overhead: prometheus::Histogram,
    /// By target, in the route's order (empty for series looked up by name only).
    pub targets: Vec<TargetSeries>,
}

/// One target's series: requests answered 200, and their latency.
#[derive(Debug, Clone)]
pub struct TargetSeries {
    pub ok: IntCounter,
    pub duration: prometheus::Histogram,
}

/// Outcomes of a rate limit decision, in the order of [`RuleCounters::decisions`].
pub const LIMIT_OUTCOMES: [&str; 5] = ["admitted", "refused", "too_large", "unavailable", "fail_open"];

/// One limit rule's series, looked up once per rule rather than on every request.
#[derive(Debug, Clone)]
pub struct RuleCounters {
    /// By kind (0 requests, 1 tokens, 2 concurrent), then by [`LIMIT_OUTCOMES`].
    pub decisions: [[IntCounter; 5]; 3],
    pub reserved: IntCounter,
    pub used: IntCounter,
    pub slots_in_use: IntGauge,
    pub queued: prometheus::Histogram,
}

impl Metrics {
    /// The series of public model `model`.
    pub fn model_series(&self, model: &str) -> ModelSeries {
        ModelSeries {
            ok: self.requests.with_label_values(&[model, "200"]),
            duration: self.duration.with_label_values(&[model]),
            ttft: self.ttft.with_label_values(&[model]),
            prompt_counted: ["exact", "estimate"].map(|m| self.prompt_tokens_counted.with_label_values(&[model, m])),
            tokens: ["prompt", "completion", "cached"].map(|k| self.tokens.with_label_values(&[model, k])),
            overhead: self.usage.overhead.with_label_values(&[model]),
            targets: Vec::new(),
        }
    }

    /// The series of `route`, its targets' included.
    pub fn route_series(&self, route: &crate::config::Route) -> ModelSeries {
        let mut s = self.model_series(&route.name);
        s.targets = route
            .targets
            .iter()
            .map(|t| {
                let (provider, target) = (t.provider.name.as_str(), t.model.as_str());
                TargetSeries {
                    ok: self.target_requests.with_label_values(&[provider, target, "200"]),
                    duration: self.target_duration.with_label_values(&[provider, target]),
                }
            })
            .collect();
        s
    }

    /// The series of limit rule `rule`.
    pub fn rule_counters(&self, rule: &str) -> RuleCounters {
        let d = |kind: &str| LIMIT_OUTCOMES.map(|o| self.limit_decisions.with_label_values(&[rule, kind, o]));
        RuleCounters {
            decisions: [d("requests"), d("tokens"), d("concurrent")],
            reserved: self.limit_tokens.with_label_values(&[rule, "reserved"]),
            used: self.limit_tokens.with_label_values(&[rule, "used"]),
            slots_in_use: self.limit_slots_in_use.with_label_values(&[rule]),
            queued: self.limit_queue_seconds.with_label_values(&[rule]),
        }
    }
}

/// Series copied from the limits table and syncer at scrape time. The Redis sync series are
/// registered only when limits are shared through Redis: without Redis they would read 0 ("sync
/// down", "scripts refused") on a gateway that is fine.
struct LimitState {
    keys: IntGauge,
    evictions: IntCounter,
    sync: SyncSeries,
}

struct SyncSeries {
    nodes: IntGauge,
    redis_up: IntGauge,
    scripts_ok: IntGauge,
    rounds: IntCounter,
    failures: IntCounter,
    keys_synced: IntCounter,
    round_seconds: Gauge,
    slot_lease_calls: IntCounter,
    slot_lease_failures: IntCounter,
}

impl LimitState {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let s = LimitState {
            keys: IntGauge::new("tollgate_limit_keys", "Limit keys held in this node's bucket table")?,
            evictions: IntCounter::new(
                "tollgate_limit_evictions_total",
                "Limit keys dropped from the table to bound its memory",
            )?,
            sync: SyncSeries::new()?,
        };
        registry.register(Box::new(s.keys.clone()))?;
        registry.register(Box::new(s.evictions.clone()))?;
        Ok(s)
    }

    fn update(&self, table: &BucketTable, sync: Option<&SyncStats>) {
        self.keys.set(table.len() as i64);
        catch_up(&self.evictions, table.stats.evictions.load(Ordering::Relaxed));
        if let Some(s) = sync {
            self.sync.update(s);
        }
    }
}

impl SyncSeries {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(SyncSeries {
            nodes: IntGauge::new(
                "tollgate_limit_sync_nodes",
                "Gateway nodes sharing limits through Redis",
            )?,
            redis_up: IntGauge::new(
                "tollgate_limit_sync_up",
                "1 when the last sync of shared limits reached Redis (only with --redis-url)",
            )?,
            scripts_ok: IntGauge::new(
                "tollgate_limit_redis_scripts_ok",
                "0 when Redis (or a proxy in front of it) refuses the limit scripts (only with --redis-url)",
            )?,
            rounds: IntCounter::new("tollgate_limit_sync_rounds_total", "Sync rounds of shared limits")?,
            failures: IntCounter::new(
                "tollgate_limit_sync_failures_total",
                "Sync rounds that could not reach Redis",
            )?,
            keys_synced: IntCounter::new("tollgate_limit_keys_synced_total", "Key reports booked in Redis")?,
            round_seconds: Gauge::new(
                "tollgate_limit_sync_round_seconds",
                "Duration of the last successful sync round (how stale shared state can be, beyond the interval)",
            )?,
            slot_lease_calls: IntCounter::new(
                "tollgate_limit_slot_lease_calls_total",
                "Concurrency slot leases asked of, renewed or given back to Redis",
            )?,
            slot_lease_failures: IntCounter::new(
                "tollgate_limit_slot_lease_failures_total",
                "Concurrency slot lease calls Redis did not answer in time (a request needing one takes no slot)",
            )?,
        })
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.nodes.clone()))?;
        registry.register(Box::new(self.redis_up.clone()))?;
        registry.register(Box::new(self.scripts_ok.clone()))?;
        registry.register(Box::new(self.rounds.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.keys_synced.clone()))?;
        registry.register(Box::new(self.round_seconds.clone()))?;
        registry.register(Box::new(self.slot_lease_calls.clone()))?;
        registry.register(Box::new(self.slot_lease_failures.clone()))?;
        Ok(())
    }

    fn update(&self, s: &SyncStats) {
        self.nodes.set(s.nodes.load(Ordering::Relaxed) as i64);
        self.redis_up.set(s.up.load(Ordering::Relaxed) as i64);
        self.scripts_ok.set(s.scripts_ok.load(Ordering::Relaxed) as i64);
        catch_up(&self.rounds, s.rounds.load(Ordering::Relaxed));
        catch_up(&self.failures, s.failures.load(Ordering::Relaxed));
        catch_up(&self.keys_synced, s.keys_synced.load(Ordering::Relaxed));
        self.round_seconds
            .set(s.last_round_us.load(Ordering::Relaxed) as f64 / 1e6);
        catch_up(&self.slot_lease_calls, s.slot_lease_calls.load(Ordering::Relaxed));
        catch_up(&self.slot_lease_failures, s.slot_lease_failures.load(Ordering::Relaxed));
    }
}

/// Bring a counter up to a total kept elsewhere.
fn catch_up(c: &IntCounter, now: u64) {
    c.inc_by(now.saturating_sub(c.get()));
}

/// The answer cache's series (cheap to clone: each is a handle).
#[derive(Clone)]
pub struct CacheMetrics {
    /// Lookups by outcome (hit, semantic-hit, miss, shed, skipped).
    pub lookups: IntCounterVec,
    entries: IntGauge,
    bytes: IntGauge,
    evictions: IntCounter,
    /// From submitting a question to the embedding pool to its vector (queue wait included).
    pub embed: prometheus::Histogram,
    /// A semantic search of the index with its guards.
    pub search: prometheus::Histogram,
    /// From a node writing an entry to Redis to another node loading it.
    pub sync_lag: prometheus::Histogram,
    /// Redis operations of the shared cache, by op (write, read, flush) and result (ok, error,
    /// dropped: the write queue was full).
    pub redis: IntCounterVec,
}

/// How the gateway rode out upstream failures (cheap to clone: each is a handle).
#[derive(Clone)]
pub struct ResilienceMetrics {
    /// Requests served by a fallback model, by requested and serving model.
    pub fallbacks: IntCounterVec,
    /// Retries refused by a model's retry budget, by model.
    pub budget_exhausted: IntCounterVec,
    /// Targets ejected by passive health checks, by provider and target model.
    pub ejections: IntCounterVec,
    /// Requests answered 503 at once because every target of the chain was out, by model.
    pub all_out: IntCounterVec,
}

impl ResilienceMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ResilienceMetrics {
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "tollgate_fallbacks_total",
                    "Requests answered by a fallback model, by the model asked for and the model that answered",
                ),
                &["from", "to"],
            )?,
            budget_exhausted: IntCounterVec::new(
                Opts::new(
                    "tollgate_retry_budget_exhausted_total",
                    "Retries not made because the model's retry budget was spent, by model",
                ),
                &["model"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new(
                    "tollgate_target_ejections_total",
                    "Targets ejected by passive health checks, by provider and the provider's model",
                ),
                &["provider", "target"],
            )?,
            all_out: IntCounterVec::new(
                Opts::new(
                    "tollgate_all_targets_out_total",
                    "Requests answered 503 at once because every target of the model's chain was ejected or asked to wait, by model",
                ),
                &["model"],
            )?,
        };
        registry.register(Box::new(m.fallbacks.clone()))?;
        registry.register(Box::new(m.budget_exhausted.clone()))?;
        registry.register(Box::new(m.ejections.clone()))?;
        registry.register(Box::new(m.all_out.clone()))?;
        Ok(m)
    }
}

const FAST_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

impl CacheMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let histogram = |name: &str, help: &str| {
            prometheus::Histogram::with_opts(HistogramOpts::new(name, help).buckets(FAST_BUCKETS.to_vec()))
        };
        let m = CacheMetrics {
            lookups: IntCounterVec::new(
                Opts::new(
                    "tollgate_cache_lookups_total",
                    "Answer cache lookups, by outcome (hit, semantic-hit, miss, shed: no embedding in time, skipped: not cacheable)",
                ),
                &["outcome"],
            )?,
            entries: IntGauge::new("tollgate_cache_entries", "Answer cache entries on this node")?,
            bytes: IntGauge::new("tollgate_cache_bytes", "Bytes of the answer cache's entries on this node")?,
            evictions: IntCounter::new(
                "tollgate_cache_evictions_total",
                "Answer cache entries evicted to stay within --cache-max-mb",
            )?,
            embed: histogram(
                "tollgate_cache_embed_seconds",
                "Time to embed a question for the semantic lookup, queue wait included",
            )?,
            search: histogram(
                "tollgate_cache_search_seconds",
                "Time of a semantic search of the cache index, guards included",
            )?,
            sync_lag: histogram(
                "tollgate_cache_sync_lag_seconds",
                "Time from a node writing a cache entry to Redis to this node loading it",
            )?,
            redis: IntCounterVec::new(
                Opts::new(
                    "tollgate_cache_redis_total",
                    "Redis operations of the shared answer cache, by op (write, read, flush) and result (ok, error, dropped)",
                ),
                &["op", "result"],
            )?,
        };
        registry.register(Box::new(m.lookups.clone()))?;
        registry.register(Box::new(m.entries.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.embed.clone()))?;
        registry.register(Box::new(m.search.clone()))?;
        registry.register(Box::new(m.sync_lag.clone()))?;
        registry.register(Box::new(m.redis.clone()))?;
        Ok(m)
    }

    fn update(&self, stats: &tollgate_semantic::StoreStats) {
        self.entries.set(stats.entries as i64);
        self.bytes.set(stats.bytes as i64);
        self.evictions
            .inc_by(stats.evictions.saturating_sub(self.evictions.get()));
    }
}

pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests answered, by public model and status",
            ),
            &["model", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Time from request to the last response byte",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let target_requests = IntCounterVec::new(
            Opts::new(
                "tollgate_target_requests_total",
                "Requests answered by a provider, by provider, target (the provider's model) and status",
            ),
            &["provider", "target", "status"],
        )?;
        let target_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_target_request_duration_seconds",
                "Time from request to the last response byte, by the provider and target that answered",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["provider", "target"],
        )?;
        registry.register(Box::new(target_requests.clone()))?;
        registry.register(Box::new(target_duration.clone()))?;
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_ttft_seconds",
                "Time from request to the first response body byte",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "tollgate_tokens_total",
                "Tokens by model and kind (prompt, completion, cached): as providers report them, or the gateway's own count (exact or estimated) when a provider reports none",
            ),
            &["model", "kind"],
        )?;
        let upstream_attempts = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_attempts_total",
                "Attempts to reach a provider, by outcome",
            ),
            &["provider", "outcome"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "tollgate_config_reloads_total",
                "Config reloads, by result (ok, refused)",
            ),
            &["result"],
        )?;
        let config_version = IntGauge::new("tollgate_config_version", "Version of the config snapshot serving")?;
        let upstream_idle = IntGauge::new(
            "tollgate_upstream_idle_connections",
            "Idle provider connections kept for reuse (sampled by the pool's sweeper)",
        )?;
        registry.register(Box::new(upstream_idle.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ttft.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(upstream_attempts.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        let access_log_dropped = IntCounter::new(
            "tollgate_access_log_dropped_total",
            "Access-log lines dropped because stdout did not keep up",
        )?;
        let quota_rejections = IntCounterVec::new(
            Opts::new("tollgate_quota_rejections_total", "Requests refused by a request quota"),
            &["consumer", "quota"],
        )?;
        let quota_store_errors = IntCounter::new(
            "tollgate_quota_store_errors_total",
            "Quota checks that could not reach Redis",
        )?;
        let prompt_tokens_counted = IntCounterVec::new(
            Opts::new(
                "tollgate_prompt_tokens_counted_total",
                "Prompt tokens counted by the gateway before forwarding, by model and method (exact, estimate)",
            ),
            &["model", "method"],
        )?;
        registry.register(Box::new(prompt_tokens_counted.clone()))?;
        let limit_decisions = IntCounterVec::new(
            Opts::new(
                "tollgate_limit_decisions_total",
                "Rate limit decisions, by rule, kind (tokens, requests, concurrent) and outcome (admitted, refused, too_large, unavailable, fail_open)",
            ),
            &["rule", "kind", "outcome"],
        )?;
        let limit_tokens = IntCounterVec::new(
            Opts::new(
                "tollgate_limit_tokens_total",
                "Tokens reserved at admission and actually used once known, by rule",
            ),
            &["rule", "kind"],
        )?;
        let limit_settle_errors = IntCounter::new(
            "tollgate_limit_settle_errors_total",
            "Exact-mode reconciliations that could not reach Redis",
        )?;
        registry.register(Box::new(limit_decisions.clone()))?;
        registry.register(Box::new(limit_tokens.clone()))?;
        registry.register(Box::new(limit_settle_errors.clone()))?;
        let limit_hot_keys = IntCounterVec::new(
            Opts::new(
                "tollgate_limit_hot_keys_total",
                "Times a limit key passed --limits-hot-key-rps requests in a second on this node, by rule",
            ),
            &["rule"],
        )?;
        registry.register(Box::new(limit_hot_keys.clone()))?;
        let limit_slots_in_use = IntGaugeVec::new(
            Opts::new(
                "tollgate_limit_slots_in_use",
                "Requests in flight under a concurrency rule on this node, by rule",
            ),
            &["rule"],
        )?;
        registry.register(Box::new(limit_slots_in_use.clone()))?;
        let limit_queue_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_limit_queue_seconds",
                "Time requests waited for a concurrency slot (queue_ms), by rule",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["rule"],
        )?;
        registry.register(Box::new(limit_queue_seconds.clone()))?;
        let downstream_refusals = IntCounterVec::new(
            Opts::new(
                "tollgate_downstream_refusals_total",
                "Clients refused for how they send (request_timeout, request_headers_too_large, uri_too_long, invalid_request_head, too_many_connections)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(downstream_refusals.clone()))?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "tollgate_tls_cert_reloads_total",
                "Reloads of the TLS listener's certificate, by result (ok, refused)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(tls_reloads.clone()))?;
        let guardrail_events = IntCounterVec::new(
            Opts::new(
                "tollgate_guardrail_events_total",
                "Matches of content safety rules, by direction (input, output, search: passages of search results), risk type (deny_list, regex, email, phone, card, cn_id, iban, secret, injection), rule, action taken and consumer",
            ),
            &["direction", "risk", "rule", "action", "consumer"],
        )?;
        registry.register(Box::new(guardrail_events.clone()))?;
        let cache = CacheMetrics::new(&registry)?;
        let resilience = ResilienceMetrics::new(&registry)?;
        let search = super::search_metrics::SearchMetrics::new(&registry)?;
        let usage = super::usage_metrics::UsageMetrics::new(&registry)?;
        let trace = super::trace::TraceMetrics::new(&registry)?;
        let limit_state = LimitState::new(&registry)?;
        registry.register(Box::new(quota_rejections.clone()))?;
        registry.register(Box::new(quota_store_errors.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            target_requests,
            target_duration,
            ttft,
            tokens,
            upstream_attempts,
            resilience,
            search,
            usage,
            trace,
            reloads,
            config_version,
            upstream_idle,
            access_log_dropped,
            quota_rejections,
            quota_store_errors,
            prompt_tokens_counted,
            limit_decisions,
            limit_tokens,
            limit_settle_errors,
            limit_hot_keys,
            limit_slots_in_use,
            limit_queue_seconds,
            downstream_refusals,
            tls_reloads,
            cache,
            guardrail_events,
            cache_source: std::sync::OnceLock::new(),
            limit_state,
            limit_sources: std::sync::OnceLock::new(),
        })
    }

    /// Read the limits' state at scrape time from `table`, and from `sync` when limits are
    /// shared through Redis (its series exist only then). Called once at start.
    pub fn watch_limits(&self, table: Arc<BucketTable>, sync: Option<Arc<SyncStats>>) {
        if sync.is_some() {
            if let Err(e) = self.limit_state.sync.register(&self.registry) {
                tracing::warn!(error = %e, "metrics: cannot register the limit sync series");
            }
        }
        let _ = self.limit_sources.set((table, sync));
    }

    /// Read the cache's entries, bytes and evictions at scrape time from `stats`. Called once.
    pub fn watch_cache(&self, stats: Box<dyn Fn() -> tollgate_semantic::StoreStats + Send + Sync>) {
        let _ = self.cache_source.set(stats);
    }

    /// The series of the families named `names` as JSON, for the dashboard:
    /// `{"<family>": [{"labels": {...}, "value": n}` (counters, gauges) or
    /// `{"labels": {...}, "buckets": [[le, cumulative], ...], "sum": s, "count": n}` (histograms)`]}`.
    pub fn families_json(&self, names: &[&str]) -> serde_json::Value {
        use prometheus::proto::MetricType;
        let mut out = serde_json::Map::new();
        for family in self.registry.gather() {
            if !names.contains(&family.get_name()) {
                continue;
            }
            let series: Vec<serde_json::Value> = family
                .get_metric()
                .iter()
                .map(|m| {
                    let labels: serde_json::Map<String, serde_json::Value> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.get_name().to_string(), l.get_value().into()))
                        .collect();
                    match family.get_field_type() {
                        MetricType::HISTOGRAM => {
                            let h = m.get_histogram();
                            let buckets: Vec<serde_json::Value> = h
                                .get_bucket()
                                .iter()
                                .map(|b| serde_json::json!([b.get_upper_bound(), b.get_cumulative_count()]))
                                .collect();
                            serde_json::json!({"labels": labels, "buckets": buckets, "sum": h.get_sample_sum(), "count": h.get_sample_count()})
                        }
                        MetricType::GAUGE => serde_json::json!({"labels": labels, "value": m.get_gauge().get_value()}),
                        _ => serde_json::json!({"labels": labels, "value": m.get_counter().get_value()}),
                    }
                })
                .collect();
            out.insert(family.get_name().to_string(), series.into());
        }
        serde_json::Value::Object(out)
    }

    /// The exposition text.
    pub fn render(&self) -> Vec<u8> {
        if let Some(stats) = self.cache_source.get() {
            self.cache.update(&stats());
        }
        if let Some((table, sync)) = self.limit_sources.get() {
            self.limit_state.update(table, sync.as_deref());
        }
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
