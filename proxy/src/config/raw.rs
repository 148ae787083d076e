//! The config file as written: serde structs that refuse unknown fields and keep spans, so a
//! problem found later (a dangling reference, a duplicate) can name its line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Bearer token for the admin API, as a secret reference (`env:NAME`, `file:/path`).
    pub token: Option<Spanned<String>>,
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
    /// The public name clients send as `model`.
    pub name: Spanned<String>,
    pub targets: Spanned<Vec<RawTarget>>,
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

/// A parse/shape error with its line, in one line.
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("line {}: {msg}", line_of(text, span.start)),
        None => msg,
    }
}
