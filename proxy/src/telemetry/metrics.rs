//! Prometheus series, served as text on the admin listener's `/metrics`.
//!
//! Label sets are bounded: `model` is a configured public name (or `unknown` / `-`), `provider`
//! a configured provider name, `status` an HTTP status. Nothing a client sends becomes a label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The gateway's metrics, owned by the server and shared by reference (no global registry).
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub ttft: HistogramVec,
    pub tokens: IntCounterVec,
    pub upstream_attempts: IntCounterVec,
    pub reloads: IntCounterVec,
    pub config_version: IntGauge,
    pub access_log_dropped: IntCounter,
    pub quota_rejections: IntCounterVec,
    pub quota_store_errors: IntCounter,
    pub prompt_tokens_counted: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
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
                "Tokens reported by providers, by model and kind (prompt, completion, cached)",
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
        registry.register(Box::new(quota_rejections.clone()))?;
        registry.register(Box::new(quota_store_errors.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            ttft,
            tokens,
            upstream_attempts,
            reloads,
            config_version,
            access_log_dropped,
            quota_rejections,
            quota_store_errors,
            prompt_tokens_counted,
        })
    }

    /// The exposition text.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
