//! A request's way through the gateway: classify, read and parse the body, route, try targets
//! in order (fallback on connect errors, timeouts, 429 and 5xx while nothing has reached the
//! client), then relay the response chunk by chunk, reading usage on the way.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use pingora::proxy::Session;

use super::relay::{self, CountCompletion, Relayed};
use super::{respond, GatewayState};
use crate::config::{Route, Snapshot};
use crate::context::{Caller, ModelStage, RequestCtx};
use crate::error::ApiError;
use crate::pipeline::auth::Identified;
use crate::pipeline::body::{self, Edit, RequestView};
use crate::pipeline::endpoint::{classify, Endpoint};
use crate::pipeline::route::attempt_order;
use crate::pipeline::{auth, params, tokens};
use crate::ratelimit;
use crate::upstream;

/// Longest time spent discarding the rest of a refused oversized body.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve one request completely.
pub async fn serve(state: &GatewayState, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    ctx.request_id = request_id(session.req_header().headers.get("x-request-id"));
    let endpoint = {
        let req = session.req_header();
        classify(req.method.as_str(), req.uri.path())
    };
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(err) => {
            discard_body(session).await;
            respond::error(session, ctx, err).await;
            return Ok(());
        }
    };
    ctx.endpoint = Some(endpoint);
    let snapshot = state.snapshot.load();
    let caller = if matches!(endpoint, Endpoint::Health | Endpoint::Ready) {
        None
    } else {
        match identify(state, &snapshot, endpoint, session, ctx) {
            Ok(c) => c,
            Err(err) => {
                discard_body(session).await;
                respond::error(session, ctx, err).await;
                return Ok(());
            }
        }
    };
    match endpoint {
        Endpoint::Health => {
            respond::json(session, ctx, StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}")).await
        }
        Endpoint::Ready => {
            let body = format!("{{\"status\":\"ready\",\"config_version\":{}}}", snapshot.version);
            respond::json(session, ctx, StatusCode::OK, Bytes::from(body)).await
        }
        Endpoint::Models => {
            let body = caller.map_or_else(|| snapshot.models_body.clone(), |k| k.consumer.models_body.clone());
            respond::json(session, ctx, StatusCode::OK, body).await
        }
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            proxy(state, &snapshot, caller.as_ref(), endpoint, session, ctx).await
        }
    }
}

/// Check the caller's key and its right to call `endpoint`; records the caller in `ctx`.
fn identify(
    state: &GatewayState,
    snapshot: &Snapshot,
    endpoint: Endpoint,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<Option<Identified>, ApiError> {
    let entry = auth::authenticate(snapshot.consumers.as_ref(), &state.keys, &session.req_header().headers)
        .inspect_err(|_| ctx.caller = Caller::Unidentified)?;
    let Some(entry) = entry else { return Ok(None) };
    ctx.caller = Caller::Consumer {
        consumer: entry.consumer.clone(),
        key_id: entry.key_id.clone(),
    };
    auth::authorize_endpoint(&entry, endpoint)?;
    Ok(Some(entry))
}

/// A client-supplied request id if it is short and plain, else a fresh one.
fn request_id(given: Option<&http::HeaderValue>) -> String {
    if let Some(v) = given {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c)) {
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    fresh_request_id(rand::random::<u128>())
}

/// 32 lowercase hex digits of `n` (written by hand: the formatter costs ~1k instructions here,
/// on every request that arrives without an id).
fn fresh_request_id(n: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits: Vec<u8> = (0..32).rev().map(|i| HEX[((n >> (i * 4)) & 0xf) as usize]).collect();
    String::from_utf8(digits).unwrap_or_default()
}

async fn proxy(
    state: &GatewayState,
    snapshot: &Snapshot,
    caller: Option<&Identified>,
    endpoint: Endpoint,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let body = match read_body(session, state.max_body_bytes).await {
        Ok(b) => b,
        Err(err) => {
            discard_body(session).await;
            respond::error(session, ctx, err).await;
            return Ok(());
        }
    };
    ctx.bytes_in = body.len() as u64;
    let view = match body::parse(&body) {
        Ok(v) => v,
        Err(err) => {
            respond::error(session, ctx, err).await;
            return Ok(());
        }
    };
    ctx.stream = view.stream;
    ctx.user = view.user.clone();
    let Some(route) = snapshot.route(&view.model) else {
        let err = ApiError::unknown_model(&view.model);
        ctx.model = ModelStage::unknown(&view.model);
        respond::error(session, ctx, err).await;
        return Ok(());
    };
    let mut edits = Vec::new();
    if let Some(entry) = caller {
        if entry.consumer.log_prompts {
            ctx.logged_body = Some(body.clone());
        }
        let checked = auth::authorize_route(entry, route)
            .and_then(|()| params::apply(&body, &view.members, &entry.consumer.params.for_model(&view.model)));
        match checked {
            Ok(e) => edits = e,
            Err(err) => {
                ctx.model = ModelStage::unknown(&view.model);
                respond::error(session, ctx, err).await;
                return Ok(());
            }
        }
        if !entry.consumer.quotas.is_empty() {
            let admitted = Box::pin(state.quotas.admit(
                &entry.consumer,
                &entry.key_id,
                view.user.as_deref(),
                &session.req_header().headers,
                &state.metrics,
            ))
            .await;
            match admitted {
                Ok(a) => {
                    ctx.rate_headers.requests = a.tightest;
                    ctx.quota_charges = a.charges;
                }
                Err(refusal) => {
                    ctx.rate_headers.merge(refusal.headers);
                    respond::error(session, ctx, refusal.error).await;
                    return Ok(());
                }
            }
        }
    }
    ctx.prompt_count = Some(tokens::count_prompt(&body, &view, route.counter.as_ref()));
    if !snapshot.limits.is_empty() {
        // Boxed (here and for quotas): features a request may not use keep their state out of
        // every request's future, which is moved as a whole.
        if let Err(refusal) = Box::pin(admit_limits(state, snapshot, caller, endpoint, &view, session, ctx)).await {
            state.refund_quotas(ctx).await;
            ctx.rate_headers.merge(refusal.headers);
            respond::error(session, ctx, refusal.error).await;
            return Ok(());
        }
    }
    let force_usage = endpoint != Endpoint::Embeddings && body::needs_forced_usage(&view);
    let out = Outbound {
        body: &body,
        view: &view,
        edits: &edits,
        force_usage,
    };
    forward_with_fallback(state, route, out, session, ctx).await
}

/// Reserve against every rate limit that selects this request; the holds go in `ctx` (settled
/// when the request ends), the `x-ratelimit-*` headers with them (a quota's `-requests`
/// headers stay unless a request limit is tighter).
async fn admit_limits(
    state: &GatewayState,
    snapshot: &Snapshot,
    caller: Option<&Identified>,
    endpoint: Endpoint,
    view: &RequestView,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<(), crate::quota::Refusal> {
    let req = session.req_header();
    let client_ip = || {
        let forwarded: Vec<&str> = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        snapshot.trusted_proxies.client_ip(peer, &forwarded)
    };
    let facts = ratelimit::Facts {
        consumer: caller.map(|c| c.consumer.name.as_str()),
        key_id: caller.map(|c| &*c.key_id),
        user: view.user.as_deref(),
        model: &view.model,
        client_ip: &client_ip,
        headers: &req.headers,
        query: req.uri.query(),
    };
    let max_tokens = match (endpoint, caller) {
        (Endpoint::Embeddings, _) => Some(0),
        (_, Some(c)) => params::effective_max_tokens(&c.consumer.params.for_model(&view.model), view.max_tokens),
        (_, None) => view.max_tokens,
    };
    let demand = ratelimit::Demand {
        prompt_tokens: ctx.prompt_count.map_or(0, |c| c.tokens() as u64),
        max_tokens,
        choices: view.choices,
    };
    let (holds, headers) = state
        .limits
        .admit(&snapshot.limits, &facts, demand, &state.metrics)
        .await?;
    ctx.limit_holds = holds;
    ctx.rate_headers.tighten(headers);
    Ok(())
}

/// Read and discard what the client is still sending (bounded in time) before answering an
/// error, so the client reads the answer instead of a connection reset; the connection is only
/// kept when the body was read to its end.
async fn discard_body(session: &mut Session) {
    if expects_continue(session) && !session.is_body_done() && session.body_bytes_read() == 0 {
        // The client waits for `100 Continue` before sending: it will send nothing; close after
        // the answer rather than wait for a body that is not coming.
        session.set_keepalive(None);
        return;
    }
    match tokio::time::timeout(DRAIN_LIMIT, session.drain_request_body()).await {
        Ok(Ok(())) => {}
        _ => session.set_keepalive(None),
    }
}

fn expects_continue(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Read the whole request body, refusing it past `max` bytes.
async fn read_body(session: &mut Session, max: usize) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::too_large(max));
    }
    if expects_continue(session) {
        // Clients such as curl wait (about a second) for this before sending a large body.
        session.write_continue_response().await.map_err(|e| {
            ApiError::bad_request(
                "body_read_failed",
                format!("Could not read the request body: {}", e.etype().as_str()),
            )
        })?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(max));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(ApiError::too_large(max));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(ApiError::bad_request(
                    "body_read_failed",
                    format!("Could not read the request body: {}", e.etype().as_str()),
                ))
            }
        }
    }
}

/// What is sent upstream, before the per-target model rewrite.
struct Outbound<'a> {
    body: &'a Bytes,
    view: &'a RequestView,
    /// The caller's parameter policy, as splices.
    edits: &'a [Edit],
    /// Ask upstream for usage the client did not ask for (and strip it from the stream).
    force_usage: bool,
}

async fn forward_with_fallback(
    state: &GatewayState,
    route: &std::sync::Arc<Route>,
    out: Outbound<'_>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let Outbound {
        body,
        view,
        edits,
        force_usage,
    } = out;
    let order = attempt_order(route, rand::random());
    let path_and_query = session
        .req_header()
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| session.req_header().uri.path().to_string());
    let mut last_error = ApiError::bad_gateway("No upstream could be reached.");
    for (n, &idx) in order.iter().enumerate() {
        let target = &route.targets[idx];
        let is_last = n + 1 == order.len();
        ctx.attempts += 1;
        ctx.model = ModelStage::Routed {
            route: route.clone(),
            target: idx,
        };
        let upstream_body = body::rewrite(body, view, &target.model_json, force_usage, edits);
        let head = upstream::request_head(
            session.req_header(),
            target,
            &path_and_query,
            upstream_body.len(),
            &ctx.request_id,
        )?;
        let peer = upstream::peer(&target.provider, &state.upstream);
        let attempts = &state.metrics.upstream_attempts;
        match upstream::send(&state.upstreams, &peer, &head, &upstream_body).await {
            Err(e) => {
                attempts.with_label_values(&[&target.provider.name, e.outcome()]).inc();
                tracing::warn!(request_id = %ctx.request_id, provider = %target.provider.name, error = ?e, "upstream attempt failed");
                last_error = e.to_api_error();
            }
            Ok(up) => {
                let status = up.status().as_u16();
                if !is_last && (status == 429 || status >= 500) {
                    attempts
                        .with_label_values(&[&target.provider.name, "retryable_status"])
                        .inc();
                    tracing::warn!(request_id = %ctx.request_id, provider = %target.provider.name, status, "upstream answered a retryable status; trying the next target");
                    upstream::release(&state.upstreams, &peer, up);
                    continue;
                }
                let strip = force_usage && view.stream;
                let count = match &route.counter {
                    Some((tok, _)) => CountCompletion::With(tok.clone()),
                    None if !ctx.limit_holds.is_empty() => CountCompletion::Estimate,
                    None => CountCompletion::No,
                };
                match relay::relay(state, &peer, up, strip, count, session, ctx).await? {
                    Relayed::Done => {
                        attempts.with_label_values(&[&target.provider.name, "answered"]).inc();
                        return Ok(());
                    }
                    Relayed::BrokeBeforeBody(why) => {
                        attempts
                            .with_label_values(&[&target.provider.name, "broken_before_body"])
                            .inc();
                        tracing::warn!(request_id = %ctx.request_id, provider = %target.provider.name, error = %why, "upstream attempt failed");
                        last_error = ApiError::bad_gateway(why);
                    }
                }
            }
        }
    }
    state.refund_quotas(ctx).await;
    respond::error(session, ctx, last_error).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_32_hex_digits_of_the_random_value() {
        for n in [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(fresh_request_id(n), format!("{n:032x}"));
        }
    }

    #[test]
    fn client_request_ids_are_kept_only_when_short_and_plain() {
        let v = http::HeaderValue::from_static("req-42_a.b:c");
        assert_eq!(request_id(Some(&v)), "req-42_a.b:c");
        let bad = http::HeaderValue::from_static("has space");
        let id = request_id(Some(&bad));
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
