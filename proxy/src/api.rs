//! The OpenAI-compatible API's own vocabulary, shared by every layer: the endpoints the gateway
//! serves and the token usage of an answer. Plain data, no behaviour beyond naming.

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
    Models,
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// Whether the request is proxied to a provider (and so carries a JSON body with `model`).
    pub fn is_proxied(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings
        )
    }

    /// A short stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Health => "healthz",
            Endpoint::Ready => "readyz",
            Endpoint::Models => "models",
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// Tokens of one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached: u64,
}

impl Usage {
    /// The tokens a limit is charged: the total, or prompt and completion when they say more.
    pub fn charged(&self) -> u64 {
        self.total.max(self.prompt + self.completion)
    }
}
