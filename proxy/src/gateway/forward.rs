//! Forwarding: the attempt plan tried in order. Each attempt rewrites the body for its target,
//! sends it, and either relays the answer or says why another target should be tried; the plan
//! and the typed [`UpstreamError`] decide, not the loop. Nothing is retried once a byte reached
//! the client.

use bytes::Bytes;
use pingora::proxy::Session;

use super::relay::{self, Relayed};
use super::{Call, GatewayState};
use crate::context::ModelStage;
use crate::error::ApiError;
use crate::pipeline::attempts::{AttemptPlan, UpstreamError};
use crate::pipeline::request::Admitted;
use crate::pipeline::response::CountCompletion;
use crate::pipeline::safety::output::OutputGuard;
use crate::pipeline::{body, Step};
use crate::upstream;

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
    let mut last_error = None;
    while let Some(attempt) = plan.next_attempt() {
        let target = attempt.target;
        let provider = target.provider.name.as_str();
        call.ctx.answer.attempts += 1;
        call.ctx.model = ModelStage::Routed {
            route: attempt.route.clone(),
            target: Some(attempt.index),
        };
        let upstream_body = body::rewrite(
            body,
            &admitted.view,
            &target.model_json,
            admitted.force_usage,
            &admitted.edits,
        );
        let head = upstream::request_head(
            session.req_header(),
            target,
            &path_and_query,
            upstream_body.len(),
            &call.ctx.request_id,
        );
        let head = match head {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let peer = upstream::peer(&target.provider, &state.upstream);
        let attempts = &state.metrics.upstream_attempts;
        let failure = match upstream::send(&state.upstreams, &peer, &head, &upstream_body).await {
            Err(e) => {
                tracing::warn!(request_id = %call.ctx.request_id, provider, error = ?e, "upstream attempt failed");
                e
            }
            Ok(up) => {
                let status = UpstreamError::Status(up.status());
                if status.is_retryable() && !attempt.is_last {
                    tracing::warn!(request_id = %call.ctx.request_id, provider, status = up.status().as_u16(), "upstream answered a retryable status; trying the next target");
                    upstream::release(&state.upstreams, &peer, up);
                    status
                } else {
                    // The provider's answer, whatever its status, goes to the client.
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
                    match relay::relay(state, &peer, up, strip, count, guard, session, call).await {
                        Ok(Relayed::Done) => {
                            attempts.with_label_values(&[provider, "answered"]).inc();
                            return Ok(Ok(()));
                        }
                        Ok(Relayed::BrokeBeforeBody(why)) => {
                            tracing::warn!(request_id = %call.ctx.request_id, provider, error = %why, "upstream attempt failed");
                            UpstreamError::BrokeBeforeBody(why)
                        }
                        Err(e) => return Ok(Err(e)),
                    }
                }
            }
        };
        attempts.with_label_values(&[provider, failure.outcome()]).inc();
        last_error = Some(failure);
    }
    let error = last_error.map_or_else(
        || ApiError::bad_gateway("No upstream could be reached."),
        |e| e.to_api_error(),
    );
    Err(error.into())
}
