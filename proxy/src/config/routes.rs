//! Routes: a public model name, the targets (provider + provider's model name) that serve it,
//! and the tokenizer its prompts are counted with; and the `/v1/models` list of such names.

use std::sync::Arc;

use bytes::Bytes;
use tollgate_tokenize::{ChatTemplate, Tokenizer};

use super::fallback::{HealthPolicy, RetryPolicy, Timeouts};
use super::providers::Provider;
use crate::pipeline::health::{RetryBudget, TargetHealth};

/// One place a public model can be served.
#[derive(Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    /// The provider's own model name.
    pub model: String,
    /// `model` as a JSON string literal, ready to splice into a body.
    pub model_json: Bytes,
    pub weight: u32,
    /// What this node has learnt of the target (kept across reloads while the target stays).
    pub health: Arc<TargetHealth>,
}

/// A public model name and where it can be served.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// `name` as a response header value (`x-tollgate-model`), when it can be one.
    pub name_header: Option<http::HeaderValue>,
    /// Position among the public model names (file order): indexes per-consumer allow tables.
    pub index: usize,
    pub targets: Vec<Target>,
    pub total_weight: u64,
    /// The tokenizer and chat template prompts are counted with; `None` means estimate.
    pub counter: Option<(Arc<Tokenizer>, ChatTemplate)>,
    /// Public models tried after this one's targets, by route index, in order.
    pub fallbacks: Vec<usize>,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub health: HealthPolicy,
    /// The retry budget of requests to this model (kept across reloads).
    pub budget: Arc<RetryBudget>,
    /// What its tokens cost (`price` of the model), when configured.
    pub price: Option<Price>,
}

/// Prices of a model's tokens, per million, in `currency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cached: f64,
    pub currency: String,
}

impl Price {
    /// The cost of `usage`: prompt tokens at the input price (those served from the provider's
    /// prompt cache at the cached price), completion tokens at the output price.
    pub fn cost(&self, usage: &crate::api::Usage) -> f64 {
        let cached = usage.cached.min(usage.prompt);
        ((usage.prompt - cached) as f64 * self.input
            + cached as f64 * self.cached
            + usage.completion as f64 * self.output)
            / 1e6
    }
}

/// The `GET /v1/models` body listing `names`.
pub fn render_models<'a>(names: impl Iterator<Item = &'a String>) -> Bytes {
    let data: Vec<serde_json::Value> = names
        .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}
