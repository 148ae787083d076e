//! The one per-request context, carried through every phase and read by the access log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::consumers::Consumer;
use crate::pipeline::endpoint::Endpoint;
use crate::sse::Usage;

/// How far model resolution got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ModelStage {
    /// No model involved (health, `/v1/models`) or the body was never read.
    #[default]
    None,
    /// The client asked for a model that is not configured (kept for the log only).
    Unknown(String),
    /// Routed: the public name, and the provider + provider model of the last attempt.
    Routed {
        public: String,
        provider: String,
        target_model: String,
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
    /// Headers added to the response, whatever it is (e.g. `x-ratelimit-*`).
    pub extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
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
    /// Completion tokens counted by the gateway when the provider reported no usage.
    pub completion_count: Option<usize>,
    pub bytes_in: u64,
    pub bytes_out: u64,
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
            extra_headers: Vec::new(),
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
        }
    }

    /// The public model name for metric labels: bounded to configured names.
    pub fn model_label(&self) -> &str {
        match &self.model {
            ModelStage::Routed { public, .. } => public,
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
