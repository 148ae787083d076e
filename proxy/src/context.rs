//! The one per-request context, carried through every phase and read by the access log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::consumers::Consumer;
use crate::pipeline::endpoint::Endpoint;
use crate::sse::Usage;

/// How far model resolution got.
#[derive(Debug, Clone, Default)]
pub enum ModelStage {
    /// No model involved (health, `/v1/models`) or the body was never read.
    #[default]
    None,
    /// The client asked for a model that is not configured (kept for the log only).
    Unknown(String),
    /// Routed: the route (public name, targets, metric series) and the target of the last attempt.
    Routed {
        route: std::sync::Arc<crate::config::Route>,
        target: usize,
    },
}

impl ModelStage {
    /// A model the request named but may not use, kept (shortened) for the log only.
    pub fn unknown(asked: &str) -> Self {
        ModelStage::Unknown(asked.chars().take(128).collect())
    }
}

/// How the response ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    Completed,
    /// The gateway answered the error itself (bad request, no upstream reachable, ...).
    Refused,
    /// The upstream failed after the response had started; the client saw a cut stream.
    UpstreamCut,
    /// The client went away before the end.
    ClientGone,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Refused => "refused",
            Outcome::UpstreamCut => "upstream_cut",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// Who is calling, once the key was checked.
#[derive(Debug, Clone, Default)]
pub enum Caller {
    /// The gateway has no consumers configured: the API is open.
    #[default]
    Open,
    /// Consumers are configured and the key was missing or unknown.
    Unidentified,
    /// A known key of a consumer.
    Consumer { consumer: Arc<Consumer>, key_id: Arc<str> },
}

/// Everything known about one request.
#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub endpoint: Option<Endpoint>,
    pub caller: Caller,
    /// The end user named by the request (`user` in the body).
    pub user: Option<String>,
    /// The request body, kept only when the caller's consumer allows logging prompts.
    pub logged_body: Option<Bytes>,
    /// Quota counts this request added; given back if the gateway ends up not serving it.
    pub quota_charges: Vec<crate::quota::Charge>,
    /// The `x-ratelimit-*` (and a refusal's `Retry-After`) headers of the response, whatever it is.
    pub rate_headers: crate::rate_headers::RateHeaders,
    pub model: ModelStage,
    pub stream: bool,
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub outcome: Outcome,
    pub attempts: u32,
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
    /// Prompt tokens counted by the gateway (before forwarding), exact or estimated.
    pub prompt_count: Option<tollgate_tokenize::Count>,
    /// Completion tokens counted by the gateway when the provider reported no usage (exact with
    /// the route's tokenizer, else estimated).
    pub completion_count: Option<tollgate_tokenize::Count>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Rate limit reservations, settled when the request ends.
    pub limit_holds: Vec<crate::ratelimit::Hold>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            request_id: String::new(),
            started: Instant::now(),
            endpoint: None,
            caller: Caller::Open,
            user: None,
            logged_body: None,
            quota_charges: Vec::new(),
            rate_headers: Default::default(),
            model: ModelStage::None,
            stream: false,
            status: 0,
            error_code: None,
            outcome: Outcome::Completed,
            attempts: 0,
            ttft: None,
            usage: None,
            prompt_count: None,
            completion_count: None,
            bytes_in: 0,
            bytes_out: 0,
            limit_holds: Vec::new(),
        }
    }

    /// What this request cost in tokens, for rate limits: the provider's usage; without it the
    /// gateway's own counts of the prompt and of what was streamed (a stream the client
    /// abandoned included); `None` when no provider answered successfully (nothing to charge).
    pub fn tokens_used(&self) -> Option<u64> {
        if !(200..300).contains(&self.status) {
            return None;
        }
        if let Some(u) = &self.usage {
            return Some(u.total.max(u.prompt + u.completion));
        }
        let prompt = self.prompt_count.map_or(0, |c| c.tokens() as u64);
        Some(prompt + self.completion_count.map_or(0, |c| c.tokens() as u64))
    }

    /// The public model name for metric labels: bounded to configured names.
    pub fn model_label(&self) -> &str {
        match &self.model {
            ModelStage::Routed { route, .. } => &route.name,
            ModelStage::Unknown(_) => "unknown",
            ModelStage::None => "-",
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
