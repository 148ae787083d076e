//! Forwarding: the attempt plan tried in order. Each attempt rewrites the body for its target,
//! sends it within the model's timeouts, and either relays the answer or says why another
//! attempt should follow; the plan (fallback chain, health, budget) and the typed
//! [`UpstreamError`] decide, not the loop. What each attempt taught (a failure, a success, a
//! provider's "retry after") goes into the target's health. Nothing is retried once a byte
//! reached the client.

use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use tollgate_limits::clock::{Clock, SystemClock};

use super::relay::{self, Relayed};
use super::{Call, GatewayState};
use crate::config::fallback::says_context_too_long;
use crate::config::Route;
use crate::context::{FailedAttempt, ModelStage};
use crate::error::{ApiError, ErrorCode};
use crate::pipeline::attempts::{Attempt, AttemptPlan, UpstreamError};
use crate::pipeline::health::retry_after_ms;
use crate::pipeline::request::Admitted;
use crate::pipeline::response::CountCompletion;
use crate::pipeline::safety::output::OutputGuard;
use crate::pipeline::{body, Answer, Refused, Step};
use crate::rate_headers::RateHeaders;
use crate::upstream::{self, Response, UpstreamOptions};

/// Most of an error body read to see whether it says the context is too long.
const ERROR_PEEK: usize = 64 * 1024;

/// Try the plan's attempts until one answers; when none does, the last failure is the answer.
pub async fn forward(
    state: &GatewayState,
    mut plan: AttemptPlan<'_>,
    admitted: &Admitted,
    body: &Bytes,
    session: &mut Session,
    call: &mut Call,
) -> Step<pingora::Result<()>> {
    let req = session.req_header();
    let path_and_query = req
        .uri
        .path_and_query()
        .map_or_else(|| req.uri.path().to_string(), |p| p.as_str().to_string());
    let clock = SystemClock;
    let primary = plan.primary().clone();
    let total = primary.timeouts.total.or(state.upstream.total_timeout);
    let deadline = total.map(|t| tokio::time::Instant::from_std(call.ctx.started) + t);
    // The clock is read again only where time matters (a failure, a "retry after").
    let start = clock.now_ms();
    let mut attempt = match plan.first(start) {
        Ok(a) => a,
        Err(out) => return Err(all_out(state, &primary, out.retry_after_ms)),
    };
    let metrics = &state.metrics;
    // The failure before the current attempt (the answer if the plan ends without one).
    let mut last: Option<UpstreamError> = None;
    let failure = loop {
        if !attempt.backoff.is_zero() {
            let slept = tokio::time::Instant::now();
            let wake = slept + attempt.backoff;
            tokio::time::sleep_until(deadline.map_or(wake, |d| d.min(wake))).await;
            call.ctx.answer.waited += slept.elapsed();
        }
        let left = match deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now())) {
            Some(left) if left.is_zero() => {
                break UpstreamError::Timeout("the request's total timeout passed before an answer".into());
            }
            left => left,
        };
        let target = attempt.target;
        let provider = target.provider.name.as_str();
        call.ctx.answer.attempts += 1;
        call.ctx.model = ModelStage::Routed {
            route: attempt.route.clone(),
            target: Some(attempt.index),
        };
        let fallback_edits;
        let edits = if std::ptr::eq(attempt.route.as_ref(), admitted.route.as_ref()) {
            &admitted.edits
        } else {
            match edits_for(admitted, attempt.route, body, call) {
                Ok(e) => {
                    fallback_edits = e;
                    &fallback_edits
                }
                Err(why) => {
                    // The caller's parameter rules refuse this request on that model: skip it.
                    tracing::info!(request_id = %call.ctx.request_id, model = %attempt.route.name, error = %why.message, "fallback model skipped by the caller's parameter rules");
                    match plan.next_attempt(clock.now_ms()) {
                        Some(next) => {
                            attempt = next;
                            continue;
                        }
                        None => break last.unwrap_or(UpstreamError::Status(why.status())),
                    }
                }
            }
        };
        let upstream_body = body::rewrite(body, &admitted.view, &target.model_json, admitted.force_usage, edits);
        let operation = crate::telemetry::trace::operation(call.ctx.endpoint);
        let traceparent = call
            .ctx
            .trace
            .as_mut()
            .map(|t| t.attempt(operation, provider, &target.model));
        let head = upstream::request_head(
            session.req_header(),
            target,
            &path_and_query,
            upstream_body.len(),
            &call.ctx.request_id,
            traceparent.as_deref(),
        );
        let head = match head {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let opts = attempt_options(&state.upstream, attempt.route, left);
        let peer = upstream::peer(&target.provider, &opts);
        let sending = std::time::Instant::now();
        let sent = upstream::send(&state.upstreams, &peer, &head, &upstream_body).await;
        call.ctx.answer.waited += sending.elapsed();
        let failure = match sent {
            Err(e) => e,
            Ok(mut up) => {
                let answered = answered(up.status());
                let now = if answered && call.ctx.answer.attempts == 1 {
                    start
                } else {
                    clock.now_ms()
                };
                if matches!(up.status().as_u16(), 429 | 503) {
                    if let Some(ms) = retry_after_ms(up.headers(), now) {
                        target.health.retry_after(now, ms);
                    }
                }
                let failed = if answered {
                    None
                } else {
                    let reading = std::time::Instant::now();
                    let judged = judge(&mut up, &primary).await;
                    call.ctx.answer.waited += reading.elapsed();
                    judged.unwrap_or_else(Some)
                };
                match &failed {
                    Some(f) if f.is_target_failure() => eject_if(state, &attempt, now),
                    _ => target.health.succeeded(now),
                }
                let next = failed
                    .filter(|f| f.qualifies(&primary.retry.on))
                    .and_then(|f| plan.next_attempt(now).map(|next| (f, next)));
                if let Some((f, next)) = next {
                    tracing::warn!(request_id = %call.ctx.request_id, provider, status = up.status().as_u16(), reason = f.outcome(), "upstream attempt failed; trying the next");
                    upstream::release(&state.upstreams, &peer, up);
                    record_failure(state, call, &attempt, &f);
                    last = Some(f);
                    attempt = next;
                    continue;
                }
                // The provider's answer, whatever its status, goes to the client.
                budget_spent(state, &plan, &primary);
                up.set_read_timeout(opts.idle_timeout);
                let (strip, count, guard) = relay_parts(state, &attempt, &primary, admitted, call);
                match relay::relay(state, &peer, up, strip, count, guard, deadline, session, call).await {
                    Ok(Relayed::Done) => {
                        metrics
                            .upstream_attempts
                            .with_label_values(&[provider, "answered"])
                            .inc();
                        if attempt.fallback {
                            metrics
                                .resilience
                                .fallbacks
                                .with_label_values(&[primary.name.as_str(), attempt.route.name.as_str()])
                                .inc();
                        }
                        return Ok(Ok(()));
                    }
                    Ok(Relayed::BrokeBeforeBody(why)) => {
                        let f = UpstreamError::BrokeBeforeBody(why);
                        eject_if(state, &attempt, clock.now_ms());
                        f
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        tracing::warn!(request_id = %call.ctx.request_id, provider, error = ?failure, "upstream attempt failed");
        if failure.is_target_failure() && !matches!(failure, UpstreamError::BrokeBeforeBody(_)) {
            eject_if(state, &attempt, clock.now_ms());
        }
        record_failure(state, call, &attempt, &failure);
        if !failure.qualifies(&primary.retry.on) {
            break failure;
        }
        match plan.next_attempt(clock.now_ms()) {
            Some(next) => {
                attempt = next;
                last = Some(failure);
            }
            None => break failure,
        }
    };
    budget_spent(state, &plan, &primary);
    Err(failure.to_api_error().into())
}

/// Count a retry the model's budget refused (the plan then ended).
fn budget_spent(state: &GatewayState, plan: &AttemptPlan<'_>, primary: &Route) {
    if plan.ended_by_budget {
        state
            .metrics
            .resilience
            .budget_exhausted
            .with_label_values(&[primary.name.as_str()])
            .inc();
    }
}

/// The splices of a request sent to another model than the one admitted: the caller's
/// parameter rules for that model, then the input guard's masks.
fn edits_for(admitted: &Admitted, route: &Route, body: &Bytes, call: &Call) -> Result<Vec<body::Edit>, ApiError> {
    let mut edits = match &call.ctx.caller {
        crate::context::Caller::Consumer { consumer, .. } => {
            crate::pipeline::params::apply(body, &admitted.view.members, &consumer.params.for_model(&route.name))?
        }
        _ => Vec::new(),
    };
    edits.extend(admitted.edits[admitted.param_edits..].iter().cloned());
    Ok(edits)
}

/// A status that is an answer whatever the policy (not an error).
fn answered(status: http::StatusCode) -> bool {
    status.is_success() || status.is_informational() || status.is_redirection()
}

/// Whether an error answer is a failure, and which: a status, or a 4xx whose body says the
/// prompt is too long for the model (read only when the policy falls back on it). `Ok(None)`:
/// the answer stands.
async fn judge(up: &mut Response, primary: &Route) -> Result<Option<UpstreamError>, UpstreamError> {
    let status = up.status();
    if answered(status) {
        return Ok(None);
    }
    if primary.retry.on.context_length && matches!(status.as_u16(), 400 | 413 | 422) {
        let peek = up.prefetch(ERROR_PEEK).await.map_err(|e| {
            UpstreamError::BrokeBeforeBody(format!(
                "upstream failed while reading an error: {}",
                e.etype().as_str()
            ))
        })?;
        if says_context_too_long(&peek) {
            return Ok(Some(UpstreamError::ContextLength(status)));
        }
    }
    Ok(Some(UpstreamError::Status(status)))
}

/// The connection options of one attempt: the model's timeouts over the CLI's, the wait for
/// the header never past the request's total timeout.
fn attempt_options(defaults: &UpstreamOptions, route: &Route, left: Option<Duration>) -> UpstreamOptions {
    let t = &route.timeouts;
    let cap = |d: Duration| left.map_or(d, |l| d.min(l));
    UpstreamOptions {
        connect_timeout: cap(t.connect.unwrap_or(defaults.connect_timeout)),
        read_timeout: cap(t.first_byte.unwrap_or(defaults.read_timeout)),
        // Reused here for the gap between body reads (set once the header came).
        idle_timeout: t.idle.unwrap_or(defaults.read_timeout),
        total_timeout: defaults.total_timeout,
    }
}

/// What relaying the attempt's answer needs: whether to strip the usage chunk the gateway
/// asked for, how to count the completion, and the output guard of the attempt's model. A
/// fallback's answer is recorded as one.
fn relay_parts(
    state: &GatewayState,
    attempt: &Attempt<'_>,
    primary: &std::sync::Arc<Route>,
    admitted: &Admitted,
    call: &mut Call,
) -> (bool, CountCompletion, Option<OutputGuard>) {
    if attempt.fallback {
        call.ctx.answer.fallback_from = Some(primary.clone());
    }
    let strip = admitted.force_usage && admitted.view.stream;
    let count = match &attempt.route.counter {
        Some((tok, _)) => CountCompletion::With(tok.clone()),
        None => CountCompletion::Estimate(state.admission.estimator.clone()),
    };
    let consumer = match &call.ctx.caller {
        crate::context::Caller::Consumer { consumer, .. } => Some(consumer.name.as_str()),
        _ => None,
    };
    let guard = call
        .live
        .as_ref()
        .and_then(|l| l.guards_of(attempt.route))
        .and_then(|g| OutputGuard::new(g, consumer));
    (strip, count, guard)
}

/// A failure of the attempt's target counted; an ejection it caused is logged and counted.
fn eject_if(state: &GatewayState, attempt: &Attempt<'_>, now: u64) {
    let target = attempt.target;
    if target.health.failed(now, &attempt.route.health) {
        let provider = target.provider.name.as_str();
        tracing::warn!(provider, target = %target.model, cooldown_ms = target.health.ejected(now).unwrap_or(0), "target ejected after failures");
        state
            .metrics
            .resilience
            .ejections
            .with_label_values(&[provider, target.model.as_str()])
            .inc();
    }
}

fn record_failure(state: &GatewayState, call: &mut Call, attempt: &Attempt<'_>, failure: &UpstreamError) {
    let provider = attempt.target.provider.name.as_str();
    state
        .metrics
        .upstream_attempts
        .with_label_values(&[provider, failure.outcome()])
        .inc();
    let status = match failure {
        UpstreamError::Status(s) | UpstreamError::ContextLength(s) => Some(s.as_u16()),
        _ => None,
    };
    if let Some(t) = call.ctx.trace.as_mut() {
        t.end_attempt(Some(failure.outcome()), status);
    }
    call.ctx.answer.failed_attempts.push(FailedAttempt {
        provider: provider.to_string(),
        target_model: attempt.target.model.clone(),
        reason: failure.outcome(),
        status,
    });
}

/// Every target of the chain is out: 503 at once, with when to come back.
fn all_out(state: &GatewayState, route: &Route, retry_after_ms: u64) -> Answer {
    state
        .metrics
        .resilience
        .all_out
        .with_label_values(&[route.name.as_str()])
        .inc();
    let secs = retry_after_ms.div_ceil(1000).max(1);
    Answer::Error(Box::new(Refused {
        error: ApiError::new(
            ErrorCode::UpstreamsOut,
            format!(
                "Every upstream of model `{}` and its fallbacks is unavailable; retry in {secs} s.",
                route.name
            ),
        ),
        headers: RateHeaders::retry_after(secs),
    }))
}
