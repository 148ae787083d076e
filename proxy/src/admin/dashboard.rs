//! `GET /dashboard`: a live page served by the gateway itself (one static HTML file with its
//! script, no build step), refreshed every 5 s from `GET /admin/dashboard.json`: the series it
//! shows (requests, latency and time to first token, overhead, tokens and cost per consumer and
//! model, requests, errors, latency and answers from the cache or a fallback per consumer, cache
//! lookups, rejections, guardrail events, fallbacks) and the targets' health.
//!
//! The page holds no data and is served to anyone who reaches the admin listener; the JSON
//! needs the admin token when one is configured (the page asks for it, or takes it from
//! `#token=` in its address, and keeps it in the tab's session storage), and is open otherwise,
//! as `/metrics` is.

use http::{Response, StatusCode};
use tollgate_limits::clock::{Clock, SystemClock};

use super::{reply, upstreams, AdminApp};

const PAGE: &str = include_str!("dashboard.html");

/// The families the page reads.
const FAMILIES: &[&str] = &[
    "tollgate_requests_total",
    "tollgate_request_duration_seconds",
    "tollgate_ttft_seconds",
    "tollgate_overhead_seconds",
    "tollgate_consumer_tokens_total",
    "tollgate_cost_total",
    "tollgate_cache_lookups_total",
    "tollgate_limit_rejections_total",
    "tollgate_quota_rejections_total",
    "tollgate_guardrail_events_total",
    "tollgate_fallbacks_total",
    "tollgate_consumer_requests_total",
    "tollgate_consumer_request_duration_seconds",
    "tollgate_consumer_ttft_seconds",
];

pub fn page() -> Response<Vec<u8>> {
    let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", PAGE.as_bytes().to_vec());
    r.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

pub fn data(app: &AdminApp) -> Response<Vec<u8>> {
    let body = serde_json::json!({
        "time": SystemClock.now_ms(),
        "config_version": app.snapshot.load().version,
        "metrics": app.metrics.families_json(FAMILIES),
        "upstreams": upstreams::rows(app),
    });
    reply(StatusCode::OK, "application/json", body.to_string().into_bytes())
}
