//! A request's way through the gateway, top to bottom: the stages of
//! [`pipeline::request`](crate::pipeline::request) in order, with the I/O between them (the body
//! read here, the attempts in [`forward`](super::forward)). Any stage may end the request with an
//! [`Answer`]; [`respond::answer`] is where every such answer is written.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::{forward, respond, BodyLimits, Call, GatewayState};
use crate::error::{ApiError, ErrorCode};
use crate::pipeline::attempts::AttemptPlan;
use crate::pipeline::cache::{self, Lookup};
use crate::pipeline::request::{self, Incoming, Peer};
use crate::pipeline::safety::{self, InputVerdict};
use crate::pipeline::{Answer, CachedReply, Step};
use crate::search;
use crate::upstream::moderation;

/// Longest time spent discarding the rest of a refused oversized body.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `request_filter`'s answer: the request was served (`true`), unless the connection failed.
pub async fn filter(state: &GatewayState, session: &mut Session, call: &mut Call) -> pingora::Result<bool> {
    serve(state, session, call).await.map(|()| true)
}

/// Serve one request completely.
pub async fn serve(state: &GatewayState, session: &mut Session, call: &mut Call) -> pingora::Result<()> {
    call.ctx.request_id = request_id(session.req_header().headers.get("x-request-id"));
    if let Some(tracer) = &state.tracer {
        let headers = &session.req_header().headers;
        call.ctx.trace = crate::telemetry::trace::Trace::begin(headers, tracer.sample, call.ctx.started);
    }
    match stages(state, session, call).await {
        Ok(forwarded) => forwarded,
        Err(answer) => respond::answer(state, session, call, answer).await,
    }
}

/// The request's stages in order: an answer of the gateway's own (`Err`), or the result of
/// forwarding it (`Ok`, an error there meaning the client connection failed).
async fn stages(state: &GatewayState, session: &mut Session, call: &mut Call) -> Step<pingora::Result<()>> {
    let live = state.live.load();
    let ready = !state.drain.is_draining();
    call.ctx.stage("authenticate");
    let opened = request::open(
        &live,
        &state.keys,
        ready,
        &state.head_limits,
        &incoming(session),
        &mut call.ctx,
    )?;
    call.ctx.stage("read_body");
    let body = read_body(session, state.max_body_bytes, &state.body_limits).await?;
    call.ctx.stage("admission");
    let parsed = request::parse(&live, &opened, &body, &mut call.ctx)?;
    let req = incoming(session);
    let mut admitted = request::admit(
        &state.admission,
        &live,
        &opened,
        parsed,
        &body,
        &req,
        &mut call.ctx,
        &mut call.ledger,
    )
    .await?;
    let consumer = opened.caller.as_ref().map(|c| c.consumer.name.as_str());
    call.ctx.stage("guardrails");
    let guarded = guard_input(state, &live, consumer, &body, &mut admitted, &mut call.ctx).await?;
    let searches = live.search.as_deref().and_then(|policy| {
        let headers = &session.req_header().headers;
        search::asked(
            policy,
            &admitted.route.name,
            consumer,
            admitted.online,
            &admitted.view,
            &body,
            headers,
        )
    });
    // An answer grounded in today's search results is not a cached answer to the question.
    let cacheable = guarded == Guarded::No && searches.is_none();
    if !cacheable {
        call.ctx.answer.cache = cache::CacheOutcome::Skipped;
    }
    if let (Some(policy), Some(cache), true) = (live.cache.as_deref(), state.cache.as_deref(), cacheable) {
        call.ctx.stage("cache_lookup");
        let req = cache::CacheRequest {
            endpoint: opened.endpoint,
            body: &body,
            view: &admitted.view,
            edits: &admitted.edits,
            headers: &session.req_header().headers,
            consumer,
        };
        match cache::lookup(cache, policy, &req).await {
            Lookup::Pass(outcome) => call.ctx.answer.cache = outcome,
            Lookup::Miss(outcome, pending) => {
                call.ctx.answer.cache = outcome;
                call.ctx.answer.cache_namespace = Some(pending.namespace.0);
                call.cache_pending = Some(pending);
            }
            Lookup::Hit(_, found) if !output_guard_passes(&live, &admitted.route, consumer, &found) => {
                // The cached answer would not pass today's output rules: ask the provider.
                call.ctx.answer.cache = cache::CacheOutcome::Skipped;
            }
            Lookup::Hit(outcome, found) => {
                call.ctx.answer.cache = outcome;
                call.ctx.answer.cache_similarity = found.similarity;
                call.ctx.answer.cache_namespace = Some(found.namespace.0);
                let reply = CachedReply {
                    found,
                    stream: admitted.view.stream,
                    include_usage: admitted.view.include_usage,
                    model: admitted.view.model.clone(),
                    prompt_tokens: call.ctx.prompt.counted.map_or(0, |c| c.tokens() as u64),
                };
                call.live = Some(live);
                return Err(Answer::Cached(Box::new(reply)));
            }
        }
    }
    if let (Some(policy), Some(ask)) = (live.search.as_deref(), &searches) {
        call.ctx.stage("search");
        Box::pin(search_stage(
            state,
            &live,
            policy,
            ask,
            consumer,
            &body,
            &mut admitted,
            call,
        ))
        .await;
    }
    let route = call
        .ctx
        .guard
        .rerouted_to
        .clone()
        .unwrap_or_else(|| admitted.route.clone());
    call.live = Some(live.clone());
    let caller = opened.caller.as_ref();
    let plan = AttemptPlan::new(&live, &route, rand::random(), |r| {
        caller.is_none_or(|c| c.consumer.may_use_route(r))
    });
    forward::forward(state, plan, &admitted, &body, session, call).await
}

/// The search stage: its context message and the removal of `web_search_options` join the
/// request's edits; its references wait for the answer. (Boxed at its call: most requests do
/// not search, and its state stays out of theirs.)
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the stage's inputs, spelled out"
)]
async fn search_stage(
    state: &GatewayState,
    live: &crate::live::Live,
    policy: &crate::config::search::SearchPolicy,
    ask: &search::Ask,
    consumer: Option<&str>,
    body: &Bytes,
    admitted: &mut request::Admitted,
    call: &mut Call,
) {
    let route = admitted.route.clone();
    let estimator = &state.admission.estimator;
    let count = |text: &str| match &route.counter {
        Some((tokenizer, _)) => tokenizer.count(text),
        None => estimator.count(text),
    };
    let env = search::Env {
        snapshot: live,
        conns: &state.upstreams,
        opts: &state.upstream,
        request_id: &call.ctx.request_id,
        count: &count,
        cache: &state.search_cache,
        now_ms: tollgate_limits::clock::Clock::now_ms(&tollgate_limits::clock::SystemClock),
        guards: live.guards_of(&route).map(|g| g.as_ref()),
        consumer,
        embedder: state.search_embedder.as_deref(),
    };
    let searched = search::run(&env, policy, &route.name, ask, body, &admitted.view).await;
    admitted.edits.extend(searched.edits);
    call.ctx.guard.events.extend(searched.guard_events);
    let planner = searched.facts.planner.as_ref().and_then(|p| live.route(&p.model));
    let planner_price = planner.as_ref().and_then(|r| r.price.as_ref());
    state
        .metrics
        .searched(&route.name, &searched.facts, consumer, planner_price);
    call.ctx.search = Some(Box::new(searched.facts));
    call.references = searched.references;
}

/// Whether the input guard changed where or what the request sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guarded {
    No,
    Masked,
    Rerouted,
}

/// The input guard stage: the in-process rules, then the moderation services (which read the
/// texts as masking left them). Block (an answer), mask (splices added to the request's edits) or
/// reroute (to another route, recorded in the request's facts).
async fn guard_input(
    state: &GatewayState,
    live: &crate::live::Live,
    consumer: Option<&str>,
    body: &Bytes,
    admitted: &mut request::Admitted,
    ctx: &mut crate::context::RequestCtx,
) -> Step<Guarded> {
    let Some(guards) = live.guards_of(&admitted.route) else {
        return Ok(Guarded::No);
    };
    if ctx.prompt.logged_body.is_some() {
        // Redacted before the rules decide: a blocked prompt is logged too, redacted as well.
        let logged = safety::redact::prompt(guards, consumer, body, &admitted.view);
        ctx.prompt.logged_body = Some(logged);
    }
    let (mut reroute, edits) =
        match safety::inspect_input(guards, consumer, body, &admitted.view, &mut ctx.guard.events)? {
            InputVerdict::Pass => (None, Vec::new()),
            InputVerdict::Masked(edits) => (None, edits),
            InputVerdict::Reroute(model) => (Some(model), Vec::new()),
        };
    for rule in guards.input.iter().filter(|r| r.covers_consumer(consumer)) {
        let Some(service) = rule.moderation() else { continue };
        let texts = safety::moderation_texts(rule, body, &admitted.view, &edits);
        if texts.is_empty() {
            continue;
        }
        let texts: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        let verdict = moderation::check(
            &state.upstreams,
            &state.upstream,
            service,
            &texts,
            "input",
            &ctx.request_id,
        )
        .await;
        if let Some(answer) = safety::on_moderation(rule, service, &verdict, &mut ctx.guard.events, &ctx.request_id) {
            return Err(answer.into());
        }
        if matches!(verdict, moderation::Verdict::Flagged(_)) && reroute.is_none() {
            reroute = rule.reroute_to.clone();
        }
    }
    if let Some(model) = reroute {
        let Some(route) = live.route(&model) else {
            return Err(ApiError::internal().into());
        };
        ctx.model = crate::context::ModelStage::Routed {
            route: route.clone(),
            target: None,
        };
        ctx.guard.rerouted_to = Some(route.clone());
        return Ok(Guarded::Rerouted);
    }
    if edits.is_empty() {
        return Ok(Guarded::No);
    }
    admitted.edits.extend(edits);
    Ok(Guarded::Masked)
}

/// Whether a cached answer passes the output rules of `route` for `consumer` untouched.
fn output_guard_passes(
    live: &crate::live::Live,
    route: &crate::config::Route,
    consumer: Option<&str>,
    found: &cache::Found,
) -> bool {
    let Some(guards) = live.guards_of(route) else {
        return true;
    };
    safety::output::OutputGuard::new(guards, consumer).is_none_or(|g| g.passes(&found.answer.content))
}

/// The request header as the stages read it.
fn incoming(session: &Session) -> Incoming<'_> {
    let req = session.req_header();
    Incoming {
        method: &req.method,
        uri: &req.uri,
        headers: &req.headers,
        peer: session,
    }
}

/// The client's address as the access line shows it: behind trusted proxies, the one they
/// forwarded (the same address limits keyed by `ip` use).
pub fn client_ip(session: &Session, live: &crate::live::Live) -> Option<std::net::IpAddr> {
    let headers = &session.req_header().headers;
    live.trusted_proxies.client_ip_of(session.ip(), headers)
}

impl Peer for Session {
    fn ip(&self) -> Option<std::net::IpAddr> {
        self.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
    }
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

/// 32 lowercase hex digits of `n` (written by hand into a stack buffer: the formatter costs
/// ~1k instructions here, on every request that arrives without an id).
fn fresh_request_id(n: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> ((31 - i) * 4)) & 0xf) as usize];
    }
    std::str::from_utf8(&digits).unwrap_or_default().to_owned()
}

/// Read and discard what the client is still sending (bounded in time) before answering an
/// error, so the client reads the answer instead of a connection reset; the connection is only
/// kept when the body was read to its end.
pub async fn discard_body(session: &mut Session) {
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

/// Read the whole request body, refusing it past `max` bytes, or when it arrives slower than
/// `limits` allow (`408`).
async fn read_body(session: &mut Session, max: usize, limits: &BodyLimits) -> Result<Bytes, ApiError> {
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
            ApiError::new(
                ErrorCode::BodyReadFailed,
                format!("Could not read the request body: {}", e.etype().as_str()),
            )
        })?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(max));
    let started = tokio::time::Instant::now();
    let deadline = started + limits.timeout;
    loop {
        // The next chunk must come before the whole body's deadline, and before the body falls
        // below the minimum rate (counted from the end of the grace period).
        let by_rate = (limits.min_rate > 0)
            .then(|| started + limits.grace + Duration::from_secs_f64(buf.len() as f64 / limits.min_rate as f64));
        let until = by_rate.map_or(deadline, |r| r.min(deadline));
        let Ok(read) = tokio::time::timeout_at(until, session.read_request_body()).await else {
            let why = if until == deadline {
                format!(
                    "The request body did not arrive within {} seconds.",
                    limits.timeout.as_secs_f64()
                )
            } else {
                format!(
                    "The request body arrived slower than {} bytes per second.",
                    limits.min_rate
                )
            };
            return Err(ApiError::new(ErrorCode::RequestTimeout, why));
        };
        match read {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(ApiError::too_large(max));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::BodyReadFailed,
                    format!("Could not read the request body: {}", e.etype().as_str()),
                ))
            }
        }
    }
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
