//! The config file as written: serde structs that refuse unknown fields and keep spans, so a
//! problem found later (a dangling reference, a duplicate) can name its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file. Read section by section, element by element ([`super::read`]), so an element
/// that cannot be read is reported and left out while the rest is still checked.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub admin: RawAdmin,
    pub providers: Vec<RawProvider>,
    pub models: Vec<RawModel>,
    /// Who may call the gateway. With none configured the API is open (no key needed).
    pub consumers: Vec<RawConsumer>,
    /// Hugging Face `tokenizer.json` files models can count with (`o200k` and `cl100k` are built in).
    pub tokenizers: Vec<RawTokenizer>,
    /// Token and request rate limits, any number; each applies to the requests it selects.
    pub limits: Vec<RawLimit>,
    pub network: RawNetwork,
    /// The answer cache; absent: off.
    pub cache: Option<super::cache::RawCache>,
    /// Content safety rules; none: off.
    pub guardrails: Vec<super::guardrails::RawGuardrail>,
    /// Grounding answers in search results; absent: off.
    pub search: Option<super::search::RawSearch>,
    /// Names of the elements left out because they could not be read (already reported), so a
    /// reference to one is not reported again as dangling.
    pub unreadable: Unreadable,
}

/// Names of unreadable elements, per section.
#[derive(Debug, Default)]
pub struct Unreadable {
    pub providers: Vec<String>,
    pub models: Vec<String>,
    pub consumers: Vec<String>,
    pub tokenizers: Vec<String>,
    pub limits: Vec<String>,
    pub guardrails: Vec<String>,
}

/// An element of an array section (`[[providers]]`, ...): it keeps its position in the file's
/// array, so messages name it right even when an element before it was left out.
pub trait Element {
    fn set_index(&mut self, index: usize);
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn set_index(&mut self, index: usize) {
                self.index = index;
            }
        }
    )*};
}
element!(RawProvider, RawModel, RawConsumer, RawTokenizer, RawLimit);

/// Where clients are, as far as the gateway can tell.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// Addresses or CIDR blocks of proxies in front of the gateway whose `X-Forwarded-For` is
    /// believed (e.g. a load balancer). Without any, the client IP is the connection's peer.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}

/// A rate limit rule: a token bucket (and/or a request bucket) per key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// Position in the file's array (set by the reader).
    #[serde(skip)]
    pub index: usize,
    /// Named in 429 messages, metrics and Redis keys.
    pub name: Spanned<String>,
    /// What the bucket is kept per: any of `consumer`, `key`, `user`, `model`, `ip`,
    /// `header:<name>`, `query:<name>`, `cookie:<name>`. Empty: one bucket for everything.
    #[serde(default)]
    pub by: Vec<Spanned<String>>,
    /// Tokens (prompt + completion) per period.
    pub tokens: Option<u64>,
    /// Requests per period.
    pub requests: Option<u64>,
    /// `second`, `minute`, `hour` or `day`: the bucket refills its capacity over this time
    /// (required with `tokens` or `requests`).
    pub per: Option<Spanned<String>>,
    /// Requests in flight at once (a stream holds its slot until it ends).
    pub concurrent: Option<Spanned<u64>>,
    /// With `concurrent`: how long a request may wait for a slot before it is refused (0, the
    /// default: refused at once).
    pub queue_ms: Option<Spanned<u64>>,
    /// Only requests of these consumers (names); absent: every request.
    pub consumers: Option<Vec<Spanned<String>>>,
    /// Only requests for these public models (names or globs); absent: every model.
    pub models: Option<Vec<Spanned<String>>>,
    /// `sync` (local decisions, shared through Redis in the background; the default), `exact`
    /// (one Redis script per request) or `local` (this node only).
    pub mode: Option<Spanned<String>>,
    /// With Redis unreachable: `allow` (serve on this node's share) or `deny` (503).
    #[serde(default = "default_on_redis_error")]
    pub on_redis_error: Spanned<String>,
    /// Completion tokens reserved for a request without `max_tokens`, and the most reserved
    /// for one with it (default: `--completion-reserve`).
    pub completion_reserve: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenizer {
    /// Position in the file's array (set by the reader).
    #[serde(skip)]
    pub index: usize,
    pub name: Spanned<String>,
    /// Path of the `tokenizer.json`, relative to the config file.
    pub file: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Bearer token for the admin API, as a secret reference (`env:NAME`, `file:/path`); its
    /// holder is named `admin` in audit lines.
    pub token: Option<Spanned<String>>,
    /// Named tokens, one per person or system, so audit lines say who acted.
    #[serde(default)]
    pub tokens: Vec<RawAdminToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminToken {
    pub name: Spanned<String>,
    /// A secret reference, like `admin.token`.
    pub token: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The OpenAI HTTP protocol: OpenAI, DeepSeek, Qwen/DashScope compatible mode, vLLM, ...
    Openai,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Position in the file's array (set by the reader).
    #[serde(skip)]
    pub index: usize,
    pub name: Spanned<String>,
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1`; requests to `/v1/x` go to `<base_url>/x`.
    pub base_url: Spanned<String>,
    /// Secret reference for the provider's key, sent as `Authorization: Bearer`.
    pub api_key: Option<Spanned<String>>,
    /// PEM file of CA certificates trusted for this provider (instead of the system's).
    pub ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Position in the file's array (set by the reader).
    #[serde(skip)]
    pub index: usize,
    /// The public name clients send as `model`.
    pub name: Spanned<String>,
    pub targets: Spanned<Vec<RawTarget>>,
    /// How prompts of this model are counted: `o200k`, `cl100k`, or a `[[tokenizers]]` name.
    /// Absent: an estimate, marked as such in logs and metrics.
    pub tokenizer: Option<Spanned<String>>,
    /// The chat template around messages: `openai`, `chatml`, `llama3`, `deepseek_v3`
    /// (default `openai` for the built-in tokenizers; required with a tokenizer file).
    pub chat_template: Option<Spanned<String>>,
    /// Public models tried, in order, when every target of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<Spanned<String>>,
    pub retry: Option<super::fallback::RawRetry>,
    pub timeouts: Option<super::fallback::RawTimeouts>,
    pub health: Option<super::fallback::RawHealth>,
    /// What this model's tokens cost, for `tollgate_cost_total` and the access line.
    pub price: Option<RawPrice>,
}

/// Prices per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: Spanned<f64>,
    pub output: Spanned<f64>,
    /// Prompt tokens served from the provider's prompt cache; default: `input`.
    pub cached: Option<Spanned<f64>>,
    #[serde(default = "default_currency")]
    pub currency: Spanned<String>,
}

fn default_currency() -> Spanned<String> {
    Spanned::new(0..0, "USD".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: Spanned<String>,
    /// The provider's own model name; defaults to the public name.
    pub model: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
}

fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// 1-based line of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A tenant of the gateway (a department, a team, an application).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    /// Position in the file's array (set by the reader).
    #[serde(skip)]
    pub index: usize,
    pub name: Spanned<String>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Public model names or globs (`*`, `?`) this consumer may use; absent means all.
    pub models: Option<Vec<Spanned<String>>>,
    /// Endpoints this consumer may call (`chat`, `completions`, `embeddings`, `models`); absent
    /// means all.
    pub endpoints: Option<Vec<Spanned<String>>>,
    pub params: Option<RawParams>,
    /// Free-form labels (team, cost centre) copied into audit lines.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Whether prompt text may appear in this consumer's audit lines.
    #[serde(default)]
    pub log_prompts: bool,
    /// Whether answer text may appear in this consumer's audit lines.
    #[serde(default)]
    pub log_answers: bool,
    /// Request quotas (e.g. 20 calls per user per day).
    #[serde(default)]
    pub quotas: Vec<RawQuota>,
}

/// A request quota of a consumer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// Named in the 429 message and in audit lines.
    pub name: Spanned<String>,
    /// Requests allowed per window.
    pub limit: u64,
    /// `minute`, `hour` or `day` (calendar windows).
    pub per: Spanned<String>,
    /// What is counted: `user` (each end user separately), `key`, or `consumer` (all together).
    #[serde(default = "default_quota_scope")]
    pub by: Spanned<String>,
    /// Where the user comes from when `by = "user"`: `body` (the `user` field), `header:<name>`,
    /// or `key`. A request that names no user is counted under its key.
    #[serde(default = "default_user_from")]
    pub user_from: Spanned<String>,
    /// Time zone of calendar windows: a UTC offset (`+08:00`) or a time zone name
    /// (`America/New_York`, daylight saving followed); default UTC.
    pub timezone: Option<Spanned<String>>,
    /// With Redis unreachable: `allow` (serve, counted nowhere) or `deny` (503).
    #[serde(default = "default_on_redis_error")]
    pub on_redis_error: Spanned<String>,
}

fn default_quota_scope() -> Spanned<String> {
    Spanned::new(0..0, "user".to_string())
}

fn default_user_from() -> Spanned<String> {
    Spanned::new(0..0, "body".to_string())
}

fn default_on_redis_error() -> Spanned<String> {
    Spanned::new(0..0, "allow".to_string())
}

/// An API key of a consumer, stored only as its hash.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// A name for the key that may be logged (never the key itself).
    pub id: Spanned<String>,
    /// `sha256:<64 hex>` of the key, as printed by `tollgate keys new`.
    pub hash: Spanned<String>,
}

/// What happens to a parameter outside its bounds.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamMode {
    /// Move the value to the nearest bound.
    #[default]
    Clamp,
    /// Refuse the request with a 400.
    Reject,
}

/// Parameter rules of a consumer; `models` refines them per model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParams {
    pub mode: Option<ParamMode>,
    /// Filled in when the request does not set them.
    #[serde(default)]
    pub defaults: BTreeMap<String, toml::Value>,
    /// Always set to these values, whatever the request says.
    #[serde(default)]
    pub overrides: BTreeMap<String, toml::Value>,
    /// `name = [min, max]` for numeric parameters.
    #[serde(default)]
    pub bounds: BTreeMap<String, Spanned<Vec<toml::Value>>>,
    /// Parameters a request may not carry at all.
    #[serde(default)]
    pub forbidden: Vec<String>,
    /// Refinements for the models matching a name or glob; the first match applies.
    #[serde(default)]
    pub models: Vec<RawParams>,
    /// Only in `models` entries: the model name or glob they apply to.
    pub model: Option<Spanned<String>>,
}
