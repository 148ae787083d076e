//! The request metrics written when a request ends: by the model's series when it was routed
//! (looked up once per config), by label otherwise.

use std::time::Duration;

use super::metrics::ModelSeries;
use super::Metrics;
use crate::context::RequestCtx;

/// Book a finished request in the metrics; `series` are its routed model's, if it was routed.
pub fn update(ctx: &RequestCtx, series: Option<&ModelSeries>, metrics: &Metrics, latency: Duration) {
    match series {
        Some(series) => update_model_series(ctx, series, metrics, latency),
        None => update_by_label(ctx, metrics, latency),
    }
    metrics.usage.requested(ctx, latency);
    if let Some(u) = ctx.answer_usage() {
        metrics
            .usage
            .used(Some(ctx.names().consumer), ctx.model_label(), ctx.price(), &u);
    }
}

/// A routed request: its model's series were looked up once per config, by route.
fn update_model_series(ctx: &RequestCtx, s: &ModelSeries, metrics: &Metrics, latency: Duration) {
    if ctx.answer.status == 200 {
        s.ok.inc();
    } else {
        let mut status_buf = [0u8; 3];
        metrics
            .requests
            .with_label_values(&[ctx.model_label(), status_str(ctx.answer.status, &mut status_buf)])
            .inc();
    }
    s.duration.observe(latency.as_secs_f64());
    if let Some(t) = ctx.answer.ttft {
        s.ttft.observe(t.as_secs_f64());
    }
    if ctx.answer.attempts > 0 {
        s.overhead
            .observe(latency.saturating_sub(ctx.answer.waited).as_secs_f64());
    }
    if let crate::context::ModelStage::Routed { route, target: Some(i) } = &ctx.model {
        if let (Some(t), Some(target)) = (s.targets.get(*i), route.targets.get(*i)) {
            if ctx.answer.status == 200 {
                t.ok.inc();
            } else {
                let mut status_buf = [0u8; 3];
                metrics
                    .target_requests
                    .with_label_values(&[
                        target.provider.name.as_str(),
                        target.model.as_str(),
                        status_str(ctx.answer.status, &mut status_buf),
                    ])
                    .inc();
            }
            t.duration.observe(latency.as_secs_f64());
        }
    }
    if let Some(c) = ctx.prompt.counted {
        s.prompt_counted[usize::from(c.is_estimate())].inc_by(c.tokens() as u64);
    }
    // As the provider reported them, else the gateway's own counts (exact, or estimated for a
    // model without a tokenizer; the access line says which).
    if let Some(u) = ctx.answer_usage() {
        let [prompt, completion, cached] = &s.tokens;
        prompt.inc_by(u.prompt);
        completion.inc_by(u.completion);
        if u.cached > 0 {
            cached.inc_by(u.cached);
        }
    }
}

/// A request that was not routed (unknown model, refused before routing): series by label.
fn update_by_label(ctx: &RequestCtx, metrics: &Metrics, latency: Duration) {
    let model = ctx.model_label();
    let mut status_buf = [0u8; 3];
    metrics
        .requests
        .with_label_values(&[model, status_str(ctx.answer.status, &mut status_buf)])
        .inc();
    metrics
        .duration
        .with_label_values(&[model])
        .observe(latency.as_secs_f64());
    if let Some(t) = ctx.answer.ttft {
        metrics.ttft.with_label_values(&[model]).observe(t.as_secs_f64());
    }
    if let Some(c) = ctx.prompt.counted {
        let method = if c.is_estimate() { "estimate" } else { "exact" };
        metrics
            .prompt_tokens_counted
            .with_label_values(&[model, method])
            .inc_by(c.tokens() as u64);
    }
    // As the provider reported them, else the gateway's own counts.
    if let Some(u) = ctx.answer_usage() {
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

fn status_str(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    *buf = [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ];
    std::str::from_utf8(buf).unwrap_or("000")
}
