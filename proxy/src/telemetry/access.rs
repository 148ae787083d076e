//! The access log: one structured line per request, and the metrics that go with it.
//!
//! Fields: request id, endpoint, model asked and used, provider, status, latency, TTFT, usage,
//! bytes, attempts, outcome. No header values, no body text, no key ever reaches this line.

use crate::context::{ModelStage, RequestCtx};
use crate::telemetry::Metrics;

/// Emit the access line for a finished request and update the request metrics.
pub fn record(ctx: &RequestCtx, metrics: &Metrics) {
    let latency = ctx.started.elapsed();
    let (asked, used, provider) = match &ctx.model {
        ModelStage::None => ("", "", ""),
        ModelStage::Unknown(m) => (m.as_str(), "", ""),
        ModelStage::Routed {
            public,
            provider,
            target_model,
        } => (public.as_str(), target_model.as_str(), provider.as_str()),
    };
    let usage = ctx.usage.unwrap_or_default();
    tracing::info!(
        target: "tollgate::access",
        request_id = %ctx.request_id,
        endpoint = ctx.endpoint.map(|e| e.name()).unwrap_or("-"),
        model = asked,
        target_model = used,
        provider = provider,
        stream = ctx.stream,
        status = ctx.status,
        error = ctx.error_code.unwrap_or(""),
        outcome = ctx.outcome.name(),
        attempts = ctx.attempts,
        latency_ms = latency.as_secs_f64() * 1000.0,
        ttft_ms = ctx.ttft.map(|t| t.as_secs_f64() * 1000.0).unwrap_or(-1.0),
        prompt_tokens = usage.prompt,
        completion_tokens = usage.completion,
        cached_tokens = usage.cached,
        total_tokens = usage.total,
        usage_known = ctx.usage.is_some(),
        bytes_in = ctx.bytes_in,
        bytes_out = ctx.bytes_out,
        "access"
    );

    let model = ctx.model_label();
    let mut status_buf = itoa_status(ctx.status);
    metrics
        .requests
        .with_label_values(&[model, status_str(&mut status_buf)])
        .inc();
    metrics
        .duration
        .with_label_values(&[model])
        .observe(latency.as_secs_f64());
    if let Some(t) = ctx.ttft {
        metrics.ttft.with_label_values(&[model]).observe(t.as_secs_f64());
    }
    if let Some(u) = ctx.usage {
        metrics.tokens.with_label_values(&[model, "prompt"]).inc_by(u.prompt);
        metrics
            .tokens
            .with_label_values(&[model, "completion"])
            .inc_by(u.completion);
        if u.cached > 0 {
            metrics.tokens.with_label_values(&[model, "cached"]).inc_by(u.cached);
        }
    }
}

fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

fn status_str(buf: &mut [u8; 3]) -> &str {
    std::str::from_utf8(buf).unwrap_or("000")
}
