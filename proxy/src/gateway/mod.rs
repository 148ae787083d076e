//! The Pingora layer: one `impl ProxyHttp`, each phase a few lines of I/O around the
//! Pingora-free stages of [`pipeline`](crate::pipeline).
//!
//! Tollgate answers every request from `request_filter`: it reads the body itself and forwards it
//! through [`upstream`](crate::upstream) (see there for why), so `upstream_peer` is never
//! reached. [`serve`] runs the request's stages in order; [`forward`] tries the attempt plan;
//! [`relay`] streams the chosen answer through the response chain; [`respond`] is the one exit
//! that writes what the gateway answers itself.

pub mod forward;
pub mod relay;
pub mod respond;
pub mod serve;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::context::{ModelStage, RequestCtx};
use crate::live::{Live, LiveCell};
use crate::pipeline::admit::{Admission, Ledger, Settlement};
use crate::telemetry::access::AccessLog;
use crate::telemetry::Metrics;
use crate::upstream::UpstreamOptions;

/// Shared by every worker thread; the config inside is swapped on reload.
pub struct GatewayState {
    /// The config being served.
    pub live: Arc<LiveCell>,
    pub upstreams: crate::upstream::Connections,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub admission: Admission,
    pub keys: Arc<crate::api_keys::KeyRegistry>,
    pub max_body_bytes: usize,
    pub upstream: UpstreamOptions,
    /// Requests in flight, and whether SIGTERM has come.
    pub drain: Arc<crate::drain::Drain>,
    pub head_limits: crate::pipeline::head::HeadLimits,
    pub body_limits: BodyLimits,
    /// The answer cache of this node (used when the config has a `[cache]` section).
    pub cache: Option<Arc<crate::pipeline::cache::AnswerCache>>,
    /// Search engine answers and result pages of this node (see `[search] cache_ttl_seconds`).
    pub search_cache: Arc<crate::search::cache::SearchCache>,
    /// The sentence embedder's pool of search's ranking (`[search.rerank]`), when the config at
    /// start has it and the model loaded.
    pub search_embedder: Option<Arc<tollgate_semantic::EmbedPool>>,
    /// The trace exporter, when traces are exported.
    pub tracer: Option<crate::telemetry::trace::Tracer>,
    /// Requests, tokens and cost per hour, consumer and model (`GET /admin/usage`).
    pub usage: Arc<crate::telemetry::usage::UsageLedger>,
}

/// How long a request body may take to arrive (CLI flags).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The whole body, from the end of the head.
    pub timeout: std::time::Duration,
    /// Bytes per second the body must average once [`BodyLimits::grace`] has passed (0: off).
    pub min_rate: u64,
    pub grace: std::time::Duration,
}

/// One request through the gateway, Pingora's per-request context: what is known of it (read by
/// the access log) and what it holds until it ends (its admission ledger).
#[derive(Default)]
pub struct Call {
    pub ctx: RequestCtx,
    pub ledger: Ledger,
    /// The config it was forwarded under (whose series its metrics go to).
    pub live: Option<Arc<Live>>,
    /// Counts the request as in flight (a draining gateway exits when none is left).
    pub flight: Option<crate::drain::Flight>,
    /// The cache entry to write once the answer is complete (a cache miss).
    pub cache_pending: Option<Box<crate::pipeline::cache::Pending>>,
    /// The search stage's references list (a JSON array) for the answer to carry.
    pub references: Option<bytes::Bytes>,
}

/// `make()`'s value written into a box allocated first (so it can be built there, not copied).
fn in_box<T>(make: impl FnOnce() -> T) -> Box<T> {
    let slot = Box::new_uninit();
    Box::write(slot, make())
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
    type CTX = Call;

    /// An HTTP/1.1 request head was read (the edge handed its connection's phase over): its
    /// deadline stops, the body's begins.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _call: &mut Call,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Ok(phase) = prev.downcast::<Arc<crate::edge::stream::ConnPhase>>() {
            phase.head_done();
        }
    }

    fn new_ctx(&self) -> Call {
        Call {
            flight: Some(self.state.drain.enter()),
            ..Call::default()
        }
    }

    /// Runs once the request header is read. Serves the whole request: local endpoints, or the
    /// body read, parsed, admitted and forwarded with fallback, the response streamed back.
    /// Always `Ok(true)` (response sent) unless the connection must be dropped.
    ///
    /// Written out rather than as an `async fn`: the request's future (a few KB) is built
    /// straight into its box, where the generated form builds it on the stack and copies it.
    fn request_filter<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        session: &'life1 mut Session,
        call: &'life2 mut Call,
    ) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
        Call: Send + Sync,
    {
        Box::into_pin(in_box(|| serve::filter(&self.state, session, call)))
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(&self, _session: &mut Session, _call: &mut Call) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "tollgate forwards requests from request_filter",
        )
    }

    /// Runs when a phase returned an error. Once a response has started, the connection is just
    /// dropped (a cut stream must not look complete); before that, the client gets a JSON 500.
    async fn fail_to_proxy(&self, session: &mut Session, _e: &Error, call: &mut Call) -> FailToProxy {
        let code = if session.response_written().is_some() {
            0
        } else {
            respond::error(session, &mut call.ctx, crate::error::ApiError::internal()).await;
            500
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// The gateway logs its own failures with context; Pingora's generic line would repeat them.
    fn suppress_error_log(&self, _session: &Session, _call: &Call, _error: &Error) -> bool {
        true
    }

    /// Runs last, for every request: whatever the request still holds is settled, then the
    /// access line and the request metrics.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, call: &mut Call) {
        call.ctx.client_ip = match &call.live {
            Some(live) => serve::client_ip(session, live),
            None => serve::client_ip(session, &self.state.live.load()),
        };
        if let (Some(logged), ModelStage::Routed { route, .. }) = (&mut call.ctx.answer.logged, &call.ctx.model) {
            let guards = call.live.as_ref().and_then(|live| live.guards_of(route));
            let consumer = match &call.ctx.caller {
                crate::context::Caller::Consumer { consumer, .. } => Some(consumer.name.as_str()),
                _ => None,
            };
            logged.settle(guards.map(|g| g.as_ref()), consumer);
        }
        let how = Settlement::of(&call.ctx);
        self.state.admission.settle(&mut call.ledger, how).await;
        let metrics = &self.state.metrics;
        let series = match (&call.ctx.model, &call.live) {
            (ModelStage::Routed { route, .. }, Some(live)) => live.model_series(route, metrics),
            _ => None,
        };
        self.state.access_log.record(&call.ctx, series, metrics);
        self.state.usage.record(&call.ctx);
        if let (Some(tracer), Some(mut trace)) = (&self.state.tracer, call.ctx.trace.take()) {
            tracer.finish(&call.ctx, &mut trace);
        }
    }
}
