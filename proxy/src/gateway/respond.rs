//! The one exit for answers the gateway writes itself: local endpoints, errors and cache hits.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::{serve, Call, GatewayState};
use crate::context::{Outcome, RequestCtx};
use crate::error::ApiError;
use crate::pipeline::admit::Settlement;
use crate::pipeline::cache::replay::{self, ReplayFor};
use crate::pipeline::{Answer, CachedReply, Refused};

/// A response header built straight from a header map. Pingora's own builders keep a second,
/// case-preserving copy of every name and re-parse each name on insertion; header names going
/// to clients need neither (HTTP/1 names are case-insensitive; Pingora writes the usual
/// capitalisation of standard names anyway), and skipping both is a measurable share of a
/// small request's cost.
pub fn header(status: StatusCode, headers: HeaderMap) -> ResponseHeader {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    ResponseHeader::from(parts)
}

const X_TOLLGATE_MODEL: HeaderName = HeaderName::from_static("x-tollgate-model");
const X_TOLLGATE_ATTEMPTS: HeaderName = HeaderName::from_static("x-tollgate-attempts");
const X_TOLLGATE_SEARCH: HeaderName = HeaderName::from_static("x-tollgate-search");
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// `x-request-id` and the request's rate headers (`x-ratelimit-*`, `Retry-After`), replacing any
/// of the same name; once an upstream was tried, the model that answered and the attempts.
pub fn add_gateway_headers(headers: &mut HeaderMap, ctx: &RequestCtx) {
    if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    ctx.answer.rate_headers.write(headers);
    if let Some(v) = ctx.answer.cache.header() {
        headers.insert(HeaderName::from_static("x-tollgate-cache"), HeaderValue::from_static(v));
    }
    if let Some(s) = ctx.answer.cache_similarity {
        if let Ok(v) = HeaderValue::from_str(&format!("{s:.4}")) {
            headers.insert(HeaderName::from_static("x-tollgate-cache-similarity"), v);
        }
    }
    if let Some(route) = &ctx.guard.rerouted_to {
        if let Ok(v) = HeaderValue::from_str(&route.name) {
            headers.insert(HeaderName::from_static("x-tollgate-rerouted-to"), v);
        }
    }
    if ctx.answer.attempts > 0 {
        if let crate::context::ModelStage::Routed { route, .. } = &ctx.model {
            if let Some(v) = &route.name_header {
                headers.insert(X_TOLLGATE_MODEL, v.clone());
            }
        }
        let attempts = match ctx.answer.attempts {
            n @ 1..=9 => HeaderValue::from_static(DIGITS[n as usize]),
            n => HeaderValue::from(n),
        };
        headers.insert(X_TOLLGATE_ATTEMPTS, attempts);
    }
    if let Some(search) = &ctx.search {
        headers.insert(X_TOLLGATE_SEARCH, HeaderValue::from_static(search.status.name()));
    }
    if let Some(ns) = ctx.answer.cache_namespace {
        if let Ok(v) = HeaderValue::from_str(&format!("{ns:016x}")) {
            headers.insert(HeaderName::from_static("x-tollgate-cache-namespace"), v);
        }
    }
}

/// Write what a stage answered. An error first settles the request's ledger as not served (so a
/// client that retries at once finds its quota counts back) and reads what is left of the body
/// (so the client reads the answer, not a reset).
pub async fn answer(
    state: &GatewayState,
    session: &mut Session,
    call: &mut Call,
    answer: Answer,
) -> pingora::Result<()> {
    match answer {
        Answer::Local(body) => json(session, &mut call.ctx, StatusCode::OK, body).await,
        Answer::Cached(reply) => cached(state, session, call, *reply).await,
        Answer::Error(refused) => {
            let Refused { error: err, headers } = *refused;
            if err.code.is_downstream_limit() {
                state
                    .metrics
                    .downstream_refusals
                    .with_label_values(&[err.code.as_str()])
                    .inc();
                // A client refused for how it sends is not waited for again.
                session.set_keepalive(None);
            } else if !session.is_body_done() {
                serve::discard_body(session).await;
            }
            state.admission.settle(&mut call.ledger, Settlement::NotServed).await;
            call.ctx.answer.rate_headers.merge(headers);
            error(session, &mut call.ctx, err).await;
            Ok(())
        }
    }
}

/// Replay a cached answer. The request is settled as answered with no tokens: a hit costs the
/// provider nothing, so token limits are not charged (request counts and quotas are).
async fn cached(
    state: &GatewayState,
    session: &mut Session,
    call: &mut Call,
    reply: CachedReply,
) -> pingora::Result<()> {
    let answer = &reply.found.answer;
    let to = ReplayFor {
        model: &reply.model,
        entry: reply.found.entry,
        prompt_tokens: reply.prompt_tokens,
        include_usage: reply.include_usage,
    };
    let ctx = &mut call.ctx;
    ctx.answer.usage = Some(crate::api::Usage {
        prompt: reply.prompt_tokens,
        completion: answer.completion_tokens,
        total: reply.prompt_tokens + answer.completion_tokens,
        cached: reply.prompt_tokens,
    });
    state
        .admission
        .settle(&mut call.ledger, Settlement::Answered { tokens: Some(0) })
        .await;
    let (body, content_type) = if reply.stream {
        (replay::sse_body(answer, &to), "text/event-stream")
    } else {
        (replay::json_body(answer, &to), "application/json")
    };
    ctx.answer.ttft = Some(ctx.started.elapsed());
    if ctx.logs_answers() {
        let mut logged = crate::telemetry::conversation::LoggedAnswer::new(reply.stream);
        logged.push(&body);
        ctx.answer.logged = Some(Box::new(logged));
    }
    write_body(session, ctx, StatusCode::OK, content_type, body).await
}

/// Write a complete JSON response.
pub async fn json(session: &mut Session, ctx: &mut RequestCtx, status: StatusCode, body: Bytes) -> pingora::Result<()> {
    write_body(session, ctx, status, "application/json", body).await
}

/// Write a complete response of `content_type`.
async fn write_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> pingora::Result<()> {
    let mut headers = HeaderMap::with_capacity(6 + ctx.answer.rate_headers.len());
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    add_gateway_headers(&mut headers, ctx);
    ctx.answer.status = status.as_u16();
    session
        .write_response_header(Box::new(header(status, headers)), false)
        .await?;
    ctx.answer.bytes_out += body.len() as u64;
    session.write_response_body(Some(body), true).await
}

/// Answer `err` to the client. Failing to write means the client is gone; nothing else to do.
pub async fn error(session: &mut Session, ctx: &mut RequestCtx, err: ApiError) {
    ctx.answer.error = Some(err.code);
    ctx.answer.outcome = Outcome::Refused;
    if json(session, ctx, err.status(), err.body()).await.is_err() {
        ctx.answer.outcome = Outcome::ClientGone;
    }
}
