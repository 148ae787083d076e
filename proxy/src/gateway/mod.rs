//! The Pingora layer: one `impl ProxyHttp`, each phase a few lines.
//!
//! Tollgate answers every request from `request_filter`: it reads the body itself and forwards it
//! through [`upstream`](crate::upstream) (see there for why), so `upstream_peer` is never
//! reached. [`forward`] is the request's way through the pipeline; [`respond`] writes what the
//! gateway answers on its own.

pub mod forward;
pub mod relay;
pub mod respond;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::config::SnapshotCell;
use crate::context::RequestCtx;
use crate::telemetry::access::AccessLog;
use crate::telemetry::Metrics;
use crate::upstream::UpstreamOptions;

/// Shared by every worker thread; the config inside is swapped on reload.
pub struct GatewayState {
    pub snapshot: Arc<SnapshotCell>,
    pub upstreams: crate::upstream::Connections,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub quotas: crate::quota::QuotaStore,
    pub limits: crate::ratelimit::RateLimiter,
    pub keys: Arc<crate::keys::KeyRegistry>,
    pub max_body_bytes: usize,
    pub upstream: UpstreamOptions,
}

impl GatewayState {
    /// Give the request's quota counts back: the gateway is not serving it. Called before the
    /// refusal is written, so a client that retries at once finds them.
    pub async fn refund_quotas(&self, ctx: &mut RequestCtx) {
        if !ctx.quota_charges.is_empty() {
            let charges = std::mem::take(&mut ctx.quota_charges);
            Box::pin(self.quotas.refund(charges, &self.metrics)).await;
        }
    }

    /// Replace the request's rate limit reservations by what it used, once that is known (at
    /// the end of the upstream body, before the client sees it end; else in the last phase).
    pub fn settle_limits(&self, ctx: &mut RequestCtx) {
        if !ctx.limit_holds.is_empty() {
            let holds = std::mem::take(&mut ctx.limit_holds);
            self.limits.settle(holds, ctx.tokens_used(), &self.metrics);
        }
    }
}

/// The gateway service.
pub struct Gateway {
    state: Arc<GatewayState>,
}

impl Gateway {
    pub fn new(state: Arc<GatewayState>) -> Self {
        Gateway { state }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Runs once the request header is read. Serves the whole request: local endpoints, or the
    /// body read, parsed, routed and forwarded with fallback, the response streamed back.
    /// Always `Ok(true)` (response sent) unless the connection must be dropped.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        forward::serve(&self.state, session, ctx).await.map(|()| true)
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "tollgate forwards requests from request_filter",
        )
    }

    /// Runs when a phase returned an error. Once a response has started, the connection is just
    /// dropped (a cut stream must not look complete); before that, the client gets a JSON 500.
    async fn fail_to_proxy(&self, session: &mut Session, _e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let code = if session.response_written().is_some() {
            0
        } else {
            respond::error(session, ctx, crate::error::ApiError::internal()).await;
            500
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// The gateway logs its own failures with context; Pingora's generic line would repeat them.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// Runs last, for every request: the access line and the request metrics.
    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        self.state.settle_limits(ctx);
        if ctx.outcome == crate::context::Outcome::Refused {
            // Any refusal that did not give the counts back before answering.
            self.state.refund_quotas(ctx).await;
        }
        self.state.access_log.record(ctx, &self.state.metrics);
    }
}
