//! What a refused request is told (an OpenAI-style 429 with the limit, what is left and when
//! it resets) and what is counted of it.

use tollgate_limits::{Decision, Limit};

use super::super::Refusal;
use super::KeySources;
use crate::config::rate_limits::LimitRule;
use crate::error::{ApiError, ErrorCode};
use crate::rate_headers::{Counter, RateHeaders, Unit};
use crate::telemetry::Metrics;

/// Count a refusal by `rule` of a request of `sources`' consumer.
pub(super) fn rejected(metrics: &Metrics, rule: &LimitRule, kind: &str, sources: &KeySources<'_>) {
    let consumer = sources.consumer.unwrap_or(crate::telemetry::usage_metrics::NO_CONSUMER);
    metrics
        .usage
        .limit_rejections
        .with_label_values(&[rule.name.as_str(), kind, consumer])
        .inc();
}

pub(super) fn refusal(
    rule: &LimitRule,
    limit: Limit,
    tokens: bool,
    cost: u64,
    prompt: u64,
    decision: Decision,
) -> Refusal {
    let unit = if tokens { "tokens" } else { "requests" };
    let needs = if tokens {
        format!(
            "This request reserves {cost} tokens ({prompt} prompt + {} completion)",
            cost - prompt.min(cost)
        )
    } else {
        "This request needs 1 request".to_string()
    };
    match decision {
        Decision::Refused {
            remaining,
            retry_after_ms,
        } => {
            let secs = retry_after_ms.div_ceil(1_000).max(1);
            let error = ApiError::new(ErrorCode::RateLimitExceeded,
                format!(
                    "Rate limit `{}` reached: {} {unit} per {}. {needs}; {remaining} remain. Retry in {secs} s.",
                    rule.name, limit.capacity, rule.per
                ),
            );
            let headers = RateHeaders::refusal(
                if tokens { Unit::Tokens } else { Unit::Requests },
                Counter {
                    limit: limit.capacity,
                    remaining,
                    reset_ms: limit.ms_to_refill(limit.capacity_f() - remaining as f64),
                },
                secs,
            );
            Refusal { error, headers }
        }
        Decision::TooLarge => Refusal {
            error: ApiError::new(ErrorCode::RequestExceedsLimit,
                format!(
                    "{needs}, more than the {} {unit} per {} that rate limit `{}` allows at all; lower `max_tokens` or shorten the prompt.",
                    limit.capacity, rule.per, rule.name
                ),
            ),
            headers: RateHeaders::default(),
        },
        _ => Refusal {
            error: ApiError::new(ErrorCode::LimitStoreUnavailable,
                format!(
                    "Rate limit `{}` cannot be checked right now; try again shortly.",
                    rule.name
                ),
            ),
            headers: RateHeaders::retry_after(1),
        },
    }
}

/// A concurrency rule's refusal: 429, the rule named, and a short jittered `Retry-After` (a
/// slot frees when some answer ends, which no clock predicts; jitter keeps refused clients from
/// coming back in step).
pub(super) fn concurrency_refusal(rule: &LimitRule, capacity: u64, in_use: u64) -> Refusal {
    let secs = 1 + u64::from(rand::random::<u8>() % 2);
    let waited = if rule.queue.is_zero() {
        String::new()
    } else {
        format!(" (waited {} ms for one)", rule.queue.as_millis())
    };
    let error = ApiError::new(
        ErrorCode::ConcurrencyLimitExceeded,
        format!(
            "Concurrency limit `{}` reached: {capacity} requests in flight at once, and none is free{waited}. Retry in {secs} s.",
            rule.name
        ),
    );
    let counter = Counter {
        limit: capacity,
        remaining: capacity.saturating_sub(in_use),
        reset_ms: 0,
    };
    Refusal {
        error,
        headers: RateHeaders::refusal(Unit::Concurrent, counter, secs),
    }
}
