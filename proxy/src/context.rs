//! What is known about one request: written by the stages as it goes, read by the access log and
//! the metrics at its end. Plain facts only: what the request still *holds* (quota counts, limit
//! reservations) is its admission ledger, kept beside this by the Pingora layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tollgate_tokenize::Count;

use crate::api::{Endpoint, Usage};
use crate::config::consumers::Consumer;
use crate::config::Route;
use crate::error::ErrorCode;
use crate::rate_headers::RateHeaders;

/// How far model resolution got.
#[derive(Debug, Clone, Default)]
pub enum ModelStage {
    /// No model involved (health, `/v1/models`) or the body was never read.
    #[default]
    None,
    /// The client asked for a model that is not configured (kept for the log only).
    Unknown(String),
    /// Routed: the route (public name, targets) and the target of the last attempt (`None`
    /// until one is made: a request refused at admission is still booked under its model).
    Routed { route: Arc<Route>, target: Option<usize> },
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

/// What the request's body said, written by the parse and admit stages.
#[derive(Debug, Default)]
pub struct PromptFacts {
    /// Bytes of the request body.
    pub bytes_in: u64,
    /// The client asked for a stream.
    pub stream: bool,
    /// The end user named by the request (`user` in the body).
    pub user: Option<String>,
    /// Prompt tokens counted by the gateway (before forwarding), exact or estimated.
    pub counted: Option<Count>,
    /// The request body, kept only when the caller's consumer logs prompts; redacted by the
    /// guard stage ([`redact`](crate::pipeline::safety::redact)) when the model has rules.
    pub logged_body: Option<Bytes>,
}

/// How the request was answered, written by the forwarding and the relay (or by the answer the
/// gateway wrote itself).
#[derive(Debug, Default)]
pub struct AnswerFacts {
    /// The status sent to the client (0 until a response header is written).
    pub status: u16,
    /// The error the gateway answered, if it answered one itself.
    pub error: Option<ErrorCode>,
    pub outcome: Outcome,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time to the first body byte sent to the client.
    pub ttft: Option<Duration>,
    /// Time spent waiting on providers: sending to them, waiting for and reading their answers,
    /// backing off between attempts (the rest of the latency is the gateway's own).
    pub waited: Duration,
    /// Tokens as the provider reported them.
    pub usage: Option<Usage>,
    /// Completion tokens counted by the gateway when the provider reported no usage (exact with
    /// the route's tokenizer, else estimated).
    pub completion_counted: Option<Count>,
    pub bytes_out: u64,
    /// The `x-ratelimit-*` (and a refusal's `Retry-After`) headers of the response, whatever it is.
    pub rate_headers: RateHeaders,
    /// What the answer cache did with the request.
    pub cache: crate::pipeline::cache::CacheOutcome,
    /// The similarity of a semantic hit's cached question.
    pub cache_similarity: Option<f32>,
    /// The cache namespace of a cacheable request, for flushing it (`DELETE /admin/cache`).
    pub cache_namespace: Option<u64>,
    /// The model asked for, when a model of its fallback chain answered instead.
    pub fallback_from: Option<Arc<Route>>,
    /// The attempts that failed before the answer, in order.
    pub failed_attempts: Vec<FailedAttempt>,
    /// The answer as the client got it, kept for the audit line when the consumer logs answers.
    pub logged: Option<Box<crate::telemetry::conversation::LoggedAnswer>>,
}

/// An upstream attempt that did not give the answer: where, and why (never a secret, never an
/// address).
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    pub provider: String,
    pub target_model: String,
    /// The failure's kind (`unreachable`, `timeout`, `retryable_status`, ...).
    pub reason: &'static str,
    /// The provider's status, when it answered one.
    pub status: Option<u16>,
}

/// Which way the text went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
    /// Search results on their way into the prompt.
    Search,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
            Direction::Search => "search",
        }
    }
}

/// One content safety rule that fired on a request: what it found (the kind, never the text) and what it did.
#[derive(Debug, Clone)]
pub struct GuardEvent {
    pub direction: Direction,
    pub rule: Arc<crate::config::guardrails::GuardRule>,
    /// The risk type (`deny_list`, `email`, `injection`, ...).
    pub risk: &'static str,
    pub action: crate::config::guardrails::Action,
    /// For injection: the heuristic that fired.
    pub heuristic: Option<&'static str>,
    /// Matches of this rule and risk in the request.
    pub count: u32,
}

/// What content safety did with a request.
#[derive(Debug, Default)]
pub struct GuardFacts {
    /// Every rule that fired, with its action.
    pub events: Vec<GuardEvent>,
    /// The public model an input rule rerouted the request to.
    pub rerouted_to: Option<Arc<Route>>,
}

/// How the search went, as the `x-tollgate-search` response header says it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SearchStatus {
    /// No search results were added (not needed, or nothing could be searched).
    #[default]
    Skipped,
    /// Some engines failed; what the others found was added.
    Partial,
    Ok,
}

impl SearchStatus {
    pub fn name(self) -> &'static str {
        match self {
            SearchStatus::Skipped => "skipped",
            SearchStatus::Partial => "partial",
            SearchStatus::Ok => "ok",
        }
    }
}

/// What the search stage found out, for the access line, metrics and the response header.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SearchFacts {
    pub status: SearchStatus,
    /// Why nothing was added (`not_needed`, `planner_failed`, `planner_invalid`,
    /// `engines_failed`, `no_results`, `no_question`, `timeout`), or `""`.
    pub reason: &'static str,
    pub queries: u32,
    /// Engine calls that failed or timed out.
    pub engines_failed: u32,
    pub results: u32,
    pub passages: u32,
    /// Passages left out because an input rule that blocks or reroutes fired on them.
    pub passages_dropped: u32,
    /// Result pages read in full, taken from this node's cache, refused (SSRF guard, scheme)
    /// and failed; bytes read.
    pub pages_fetched: u32,
    pub pages_cached: u32,
    pub pages_refused: u32,
    pub pages_failed: u32,
    pub page_bytes: u64,
    /// Tokens of the context message (route's tokenizer, else estimated).
    pub tokens_added: u32,
    pub took: Duration,
    /// The time of its phases: asking the engines, reading pages, ranking and fitting (the
    /// planner's is in `planner`).
    pub engines_took: Duration,
    pub pages_took: Duration,
    pub rank_took: Duration,
    /// Ranking by meaning (`[search.rerank]`): `ok`, or why the passages were ranked by their
    /// words alone (`shed`: the embedding queue was too long; `timeout`; `failed`); `""` when
    /// off or nothing was ranked.
    pub rerank: &'static str,
    /// Time spent embedding the question and the passages (within `rank_took`).
    pub rerank_took: Duration,
    /// Each engine call: engine name and outcome (`ok`, `error`, `timeout`).
    pub calls: Vec<(String, &'static str)>,
    /// The planner call, when the search was planned.
    pub planner: Option<PlannerFacts>,
}

/// The planner call of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerFacts {
    /// The planner's public model.
    pub model: String,
    /// The provider's usage of the planner's answer.
    pub usage: Option<Usage>,
    pub attempts: u32,
    pub took: Duration,
}

/// Everything known about one request.
#[derive(Debug)]
pub struct RequestCtx {
    /// The client's `x-request-id` when plain and short, else a fresh one; sent upstream and back.
    pub request_id: String,
    pub started: Instant,
    pub endpoint: Option<Endpoint>,
    /// The client's address (behind trusted proxies, the one they forwarded), set when the
    /// request ends, for the access and audit lines.
    pub client_ip: Option<std::net::IpAddr>,
    pub caller: Caller,
    pub model: ModelStage,
    pub prompt: PromptFacts,
    pub answer: AnswerFacts,
    pub guard: GuardFacts,
    /// What the search stage did, when the request searched.
    pub search: Option<Box<SearchFacts>>,
    /// Its trace, when it is traced (an exporter is configured and the sampler chose it).
    pub trace: Option<Box<crate::telemetry::trace::Trace>>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            request_id: String::new(),
            started: Instant::now(),
            endpoint: None,
            client_ip: None,
            caller: Caller::Open,
            model: ModelStage::None,
            prompt: PromptFacts::default(),
            answer: AnswerFacts::default(),
            guard: GuardFacts::default(),
            search: None,
            trace: None,
        }
    }

    /// The answer's tokens: as the provider reported them, else the gateway's own counts
    /// (exact, or estimated for a model without a tokenizer).
    pub fn answer_usage(&self) -> Option<Usage> {
        if let Some(u) = self.answer.usage {
            return Some(u);
        }
        let completion = self.answer.completion_counted?.tokens() as u64;
        let prompt = self.prompt.counted.map_or(0, |c| c.tokens() as u64);
        Some(Usage {
            prompt,
            completion,
            total: prompt + completion,
            cached: 0,
        })
    }

    /// The price the answer is costed at: its model's, unless the answer came from the cache
    /// (no provider was asked).
    pub fn price(&self) -> Option<&crate::config::routes::Price> {
        match &self.model {
            ModelStage::Routed { route, .. } if self.answer.attempts > 0 => route.price.as_ref(),
            _ => None,
        }
    }

    /// Whether the caller's consumer has its answers logged (`log_answers`).
    pub fn logs_answers(&self) -> bool {
        matches!(&self.caller, Caller::Consumer { consumer, .. } if consumer.log_answers)
    }

    /// A traced request's stage `name` starts now (see [`crate::telemetry::trace`]).
    pub fn stage(&mut self, name: &'static str) {
        if let Some(t) = self.trace.as_mut() {
            t.stage(name);
        }
    }

    /// What this request cost in tokens, for rate limits: the provider's usage; without it the
    /// gateway's own counts of the prompt and of what was streamed (a stream the client
    /// abandoned included); plus a search planner's tokens; `None` when no provider answered
    /// successfully (nothing to charge).
    pub fn tokens_used(&self) -> Option<u64> {
        if !(200..300).contains(&self.answer.status) {
            return None;
        }
        // A search planner's call is part of the request: its tokens are charged with it.
        let planner = self
            .search
            .as_ref()
            .and_then(|s| s.planner.as_ref()?.usage)
            .map_or(0, |u| u.charged());
        if let Some(u) = &self.answer.usage {
            return Some(u.charged() + planner);
        }
        let prompt = self.prompt.counted.map_or(0, |c| c.tokens() as u64);
        Some(prompt + self.answer.completion_counted.map_or(0, |c| c.tokens() as u64) + planner)
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

/// The names a log line shows for a request (empty where there is none).
pub struct Names<'a> {
    pub consumer: &'a str,
    pub key_id: &'a str,
    pub asked: &'a str,
    pub used: &'a str,
    pub provider: &'a str,
}

impl RequestCtx {
    /// Consumer, key id, the model asked and the target model and provider used.
    pub fn names(&self) -> Names<'_> {
        let (consumer, key_id) = match &self.caller {
            Caller::Consumer { consumer, key_id } => (consumer.name.as_str(), key_id.as_ref()),
            Caller::Open | Caller::Unidentified => ("", ""),
        };
        let (asked, used, provider) = match &self.model {
            ModelStage::None => ("", "", ""),
            ModelStage::Unknown(m) => (m.as_str(), "", ""),
            ModelStage::Routed { route, target } => match target.and_then(|t| route.targets.get(t)) {
                Some(t) => (route.name.as_str(), t.model.as_str(), t.provider.name.as_str()),
                None => (route.name.as_str(), "", ""),
            },
        };
        Names {
            consumer,
            key_id,
            asked,
            used,
            provider,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
