//! What requests used, per consumer: tokens by consumer, model and kind, their cost from the
//! models' price table, rate-limit refusals by rule and consumer, requests by consumer, model,
//! status class and source (provider, fallback, cache, gateway), latency and time to first token
//! by consumer; and the gateway's own share of each forwarded request's time (its overhead). Labels are configured names (consumers, models,
//! rules), `-` for a caller without a consumer, and fixed words.

use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::metrics::LATENCY_BUCKETS;
use crate::api::Usage;
use crate::config::routes::Price;

/// The label of a request without a configured consumer.
pub const NO_CONSUMER: &str = "-";

/// Cheap to clone: each is a handle.
#[derive(Clone)]
pub struct UsageMetrics {
    /// Tokens by consumer, public model and kind (prompt, completion, cached).
    pub consumer_tokens: IntCounterVec,
    /// Cost by consumer, public model and currency (models with a `price`).
    pub cost: CounterVec,
    /// Rate limit refusals by rule, kind (requests, tokens, concurrent) and consumer.
    pub limit_rejections: IntCounterVec,
    /// The gateway's own time of a forwarded request: its latency less the time it waited on
    /// providers, by public model.
    pub overhead: HistogramVec,
    /// Requests of configured consumers by consumer, public model, status class and source.
    pub consumer_requests: IntCounterVec,
    /// Latency and time to first token of configured consumers' requests, by consumer.
    pub consumer_duration: HistogramVec,
    pub consumer_ttft: HistogramVec,
}

/// What answered a request, for `tollgate_consumer_requests_total`.
pub fn source(ctx: &crate::context::RequestCtx) -> &'static str {
    use crate::pipeline::cache::CacheOutcome;
    match (ctx.answer.cache, ctx.answer.attempts, &ctx.answer.fallback_from) {
        (CacheOutcome::Hit | CacheOutcome::SemanticHit, _, _) => "cache",
        (_, 0, _) => "gateway",
        (_, _, Some(_)) => "fallback",
        (_, _, None) => "provider",
    }
}

/// A status as its class (`2xx`, `4xx`, `5xx`; `other`, e.g. a client gone before any answer).
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// From 50 µs: a forwarded request's own time is usually well under a millisecond.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl UsageMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = UsageMetrics {
            consumer_tokens: IntCounterVec::new(
                Opts::new(
                    "tollgate_consumer_tokens_total",
                    "Tokens by consumer (- without one), public model and kind (prompt, completion, cached), as tollgate_tokens_total counts them",
                ),
                &["consumer", "model", "kind"],
            )?,
            cost: CounterVec::new(
                Opts::new(
                    "tollgate_cost_total",
                    "Cost of tokens by consumer (- without one), public model and currency, from the model's price per million tokens (prompt at input, provider-cached prompt at cached, completion at output)",
                ),
                &["consumer", "model", "currency"],
            )?,
            limit_rejections: IntCounterVec::new(
                Opts::new(
                    "tollgate_limit_rejections_total",
                    "Requests refused by a rate limit, by rule, kind (requests, tokens, concurrent) and consumer (- without one)",
                ),
                &["rule", "kind", "consumer"],
            )?,
            overhead: HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_overhead_seconds",
                    "Tollgate's own time of a request that reached a provider: its latency less the time spent waiting on providers (sending, waiting for and reading their answers, backing off between attempts), by public model",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
                &["model"],
            )?,
            consumer_requests: IntCounterVec::new(
                Opts::new(
                    "tollgate_consumer_requests_total",
                    "Requests of configured consumers by consumer, public model, status class (2xx, 4xx, 5xx, other) and source (provider; fallback: another model of the chain answered; cache; gateway: answered by the gateway itself, e.g. a refusal)",
                ),
                &["consumer", "model", "class", "source"],
            )?,
            consumer_duration: HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_consumer_request_duration_seconds",
                    "Latency of configured consumers' requests, by consumer",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["consumer"],
            )?,
            consumer_ttft: HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_consumer_ttft_seconds",
                    "Time to the first body byte of configured consumers' requests, by consumer",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["consumer"],
            )?,
        };
        registry.register(Box::new(m.consumer_requests.clone()))?;
        registry.register(Box::new(m.consumer_duration.clone()))?;
        registry.register(Box::new(m.consumer_ttft.clone()))?;
        registry.register(Box::new(m.consumer_tokens.clone()))?;
        registry.register(Box::new(m.cost.clone()))?;
        registry.register(Box::new(m.limit_rejections.clone()))?;
        registry.register(Box::new(m.overhead.clone()))?;
        Ok(m)
    }

    /// Book a finished request of a configured consumer (requests without one are in the
    /// per-model series only).
    pub fn requested(&self, ctx: &crate::context::RequestCtx, latency: std::time::Duration) {
        let crate::context::Caller::Consumer { consumer, .. } = &ctx.caller else {
            return;
        };
        let name = consumer.name.as_str();
        self.consumer_requests
            .with_label_values(&[name, ctx.model_label(), status_class(ctx.answer.status), source(ctx)])
            .inc();
        self.consumer_duration
            .with_label_values(&[name])
            .observe(latency.as_secs_f64());
        if let Some(t) = ctx.answer.ttft {
            self.consumer_ttft.with_label_values(&[name]).observe(t.as_secs_f64());
        }
    }

    /// Book `usage` of public model `model` (priced by `price`) to `consumer`.
    pub fn used(&self, consumer: Option<&str>, model: &str, price: Option<&Price>, usage: &Usage) {
        let consumer = consumer.filter(|c| !c.is_empty()).unwrap_or(NO_CONSUMER);
        for (kind, n) in [
            ("prompt", usage.prompt),
            ("completion", usage.completion),
            ("cached", usage.cached),
        ] {
            if n > 0 {
                self.consumer_tokens
                    .with_label_values(&[consumer, model, kind])
                    .inc_by(n);
            }
        }
        if let Some(p) = price {
            self.cost
                .with_label_values(&[consumer, model, p.currency.as_str()])
                .inc_by(p.cost(usage));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_prices_cached_prompt_tokens_apart() {
        let p = Price {
            input: 2.5,
            output: 10.0,
            cached: 1.25,
            currency: "USD".into(),
        };
        let u = Usage {
            prompt: 1_000_000,
            completion: 500_000,
            total: 1_500_000,
            cached: 400_000,
        };
        // 600k at 2.5, 400k at 1.25, 500k at 10 per million.
        assert!((p.cost(&u) - (1.5 + 0.5 + 5.0)).abs() < 1e-9);
        let m = UsageMetrics::new(&Registry::new()).unwrap();
        m.used(None, "m", Some(&p), &u);
        m.used(Some("team-a"), "m", None, &u);
        assert_eq!(
            m.consumer_tokens.with_label_values(&["-", "m", "cached"]).get(),
            400_000
        );
        assert_eq!(
            m.consumer_tokens.with_label_values(&["team-a", "m", "prompt"]).get(),
            1_000_000
        );
        assert!((m.cost.with_label_values(&["-", "m", "USD"]).get() - 7.0).abs() < 1e-9);
    }
}
