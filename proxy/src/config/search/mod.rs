//! `[search]`: grounding answers in search results (see `docs/search.md`). Which requests
//! search (models, consumers, per-request triggers), the engines asked, the planner model and
//! the token budget of the passages injected.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod engines;

pub use engines::{Backend, Engine, EngineKind, RawEngine};

use super::glob;
use super::problems::Problems;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// Off keeps the section in the file without using it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Public models (globs) whose requests may search when they ask. Default: every model.
    #[serde(default)]
    pub models: Vec<Spanned<String>>,
    /// Public models (globs) whose every request searches, asked or not.
    #[serde(default)]
    pub always: Vec<Spanned<String>>,
    /// Consumers who may search (names). Default: every caller.
    #[serde(default)]
    pub consumers: Vec<Spanned<String>>,
    /// Consumers whose every request searches.
    #[serde(default)]
    pub always_consumers: Vec<Spanned<String>>,
    /// A model name ending with this asks for search (`qwen:online`). Empty: no suffix.
    #[serde(default = "default_suffix")]
    pub suffix: String,
    /// Tokens of passages injected per `web_search_options.search_context_size`.
    #[serde(default)]
    pub budget: RawBudget,
    /// Budget used when the request names no context size: `low`, `medium` or `high`.
    #[serde(default = "default_size")]
    pub context_size: Spanned<String>,
    /// Most queries searched for one request (the planner's, or the question itself).
    #[serde(default = "default_max_queries")]
    pub max_queries: Spanned<u32>,
    /// Results taken from each engine for each query.
    #[serde(default = "default_results")]
    pub results: Spanned<u32>,
    /// Longest time the whole search stage may take (planning, engines, ranking).
    #[serde(default = "default_timeout")]
    pub timeout_ms: Spanned<u64>,
    /// Seconds an engine's answer to a query, or a fetched page, is reused (0: never).
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_seconds: Spanned<u64>,
    /// Add the sources' list to the answer (`references` in JSON and in a stream's last event).
    #[serde(default = "yes")]
    pub references: bool,
    pub planner: Option<RawPlanner>,
    /// Ranking passages by meaning beside their words, with the semantic embedder (off when
    /// absent).
    pub rerank: Option<RawRerank>,
    /// Fetching the full text of the top result pages.
    #[serde(default)]
    pub fetch: RawFetch,
    #[serde(default)]
    pub engines: Vec<RawEngine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFetch {
    /// Result pages fetched per request (0: snippets only).
    #[serde(default = "default_pages")]
    pub pages: u32,
    #[serde(default = "default_fetch_timeout")]
    pub timeout_ms: Spanned<u64>,
    /// Bytes read of a page at most.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Also fetch pages on loopback and private addresses (refused by default: SSRF).
    #[serde(default)]
    pub allow_private: bool,
}

impl Default for RawFetch {
    fn default() -> Self {
        RawFetch {
            pages: default_pages(),
            timeout_ms: default_fetch_timeout(),
            max_bytes: default_max_bytes(),
            allow_private: false,
        }
    }
}

fn default_pages() -> u32 {
    3
}
fn default_fetch_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 2500)
}
fn default_max_bytes() -> u64 {
    1 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRerank {
    /// Passages the embedder reads per request: the best by BM25 and the engines' order.
    #[serde(default = "default_rerank_top")]
    pub top: Spanned<u32>,
    /// Share of the passage's similarity to the question in its score (the rest is BM25).
    #[serde(default = "default_rerank_weight")]
    pub weight: Spanned<f32>,
    /// Longest wait for the embeddings; past it, or when the embedding queue would keep the
    /// passages waiting longer, they are ranked by BM25 alone.
    #[serde(default = "default_rerank_wait")]
    pub wait_ms: Spanned<u64>,
    /// The sentence model (a name under `--models-dir`'s `embedders/`, or a directory); default:
    /// the semantic cache's model (`--cache-embedder`), in a pool of its own.
    #[serde(default)]
    pub embedder: Option<String>,
}

fn default_rerank_top() -> Spanned<u32> {
    Spanned::new(0..0, 16)
}
fn default_rerank_weight() -> Spanned<f32> {
    Spanned::new(0..0, 0.7)
}
fn default_rerank_wait() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}

/// Ranking passages with the semantic embedder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerank {
    pub top: usize,
    pub weight: f32,
    pub wait: Duration,
    pub embedder: Option<String>,
}

/// How result pages are fetched.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub pages: usize,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub allow_private: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    #[serde(default = "default_low")]
    pub low: u32,
    #[serde(default = "default_medium")]
    pub medium: u32,
    #[serde(default = "default_high")]
    pub high: u32,
}

impl Default for RawBudget {
    fn default() -> Self {
        RawBudget {
            low: default_low(),
            medium: default_medium(),
            high: default_high(),
        }
    }
}

/// The LLM that decides whether to search and writes the queries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlanner {
    /// A public model of this file (its targets, timeouts and fallbacks apply).
    pub model: Spanned<String>,
    /// Longest wait for the plan; past it the request goes on without search.
    #[serde(default = "default_planner_timeout")]
    pub timeout_ms: Spanned<u64>,
    /// Replaces the built-in planning instructions (the system message of the planner call);
    /// `{domains}` and `{max}` in it are filled in.
    pub prompt: Option<String>,
    /// Public models (globs) whose searches are not planned: the user's last message is the
    /// one query, sent to every engine.
    #[serde(default)]
    pub skip: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_suffix() -> String {
    ":online".into()
}
fn default_size() -> Spanned<String> {
    Spanned::new(0..0, "medium".into())
}
fn default_max_queries() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn default_results() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
fn default_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 8000)
}
fn default_cache_ttl() -> Spanned<u64> {
    Spanned::new(0..0, 600)
}
fn default_planner_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 4000)
}
fn default_low() -> u32 {
    1000
}
fn default_medium() -> u32 {
    3000
}
fn default_high() -> u32 {
    6000
}

/// What a source is about; the planner picks engines by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The public web (news, facts, products).
    Web,
    /// Papers and preprints.
    Academic,
    /// The company's own documents.
    Private,
}

impl Domain {
    pub fn parse(s: &str) -> Option<Domain> {
        match s {
            "web" => Some(Domain::Web),
            "academic" => Some(Domain::Academic),
            "private" => Some(Domain::Private),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Domain::Web => "web",
            Domain::Academic => "academic",
            Domain::Private => "private",
        }
    }
}

/// `search_context_size`: how much context is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSize {
    Low,
    Medium,
    High,
}

impl ContextSize {
    pub fn parse(s: &str) -> Option<ContextSize> {
        match s {
            "low" => Some(ContextSize::Low),
            "medium" => Some(ContextSize::Medium),
            "high" => Some(ContextSize::High),
            _ => None,
        }
    }
}

/// The planner, validated.
#[derive(Debug, Clone)]
pub struct Planner {
    pub model: String,
    pub timeout: Duration,
    pub prompt: Option<String>,
    pub skip: Vec<String>,
}

impl Planner {
    /// Whether searches for public model `model` are planned.
    pub fn plans(&self, model: &str) -> bool {
        !self.skip.iter().any(|p| glob::matches(p, model))
    }
}

/// The validated section.
#[derive(Debug)]
pub struct SearchPolicy {
    pub models: Vec<String>,
    pub always: Vec<String>,
    pub consumers: Vec<String>,
    pub always_consumers: Vec<String>,
    pub suffix: String,
    pub budget: [u32; 3],
    pub context_size: ContextSize,
    pub max_queries: usize,
    pub results: usize,
    pub timeout: Duration,
    /// How long engine answers and pages are reused (zero: not at all).
    pub cache_ttl: Duration,
    pub references: bool,
    pub planner: Option<Planner>,
    pub rerank: Option<Rerank>,
    pub fetch: Fetch,
    pub engines: Vec<Arc<Engine>>,
}

impl SearchPolicy {
    /// Whether requests for public model `model` from `consumer` may search, and whether
    /// every one of them does.
    pub fn trigger_for(&self, model: &str, consumer: Option<&str>) -> Trigger {
        let any = |patterns: &[String]| patterns.iter().any(|p| glob::matches(p, model));
        let named = |names: &[String]| consumer.is_some_and(|c| names.iter().any(|n| n == c));
        let model_ok = self.models.is_empty() || any(&self.models);
        let consumer_ok = self.consumers.is_empty() || named(&self.consumers);
        if !(model_ok && consumer_ok) {
            Trigger::Never
        } else if any(&self.always) || named(&self.always_consumers) {
            Trigger::Always
        } else {
            Trigger::OnRequest
        }
    }

    /// The domains the engines serve, in a fixed order.
    pub fn domains(&self) -> Vec<Domain> {
        [Domain::Web, Domain::Academic, Domain::Private]
            .into_iter()
            .filter(|d| self.engines.iter().any(|e| e.domains.contains(d)))
            .collect()
    }

    /// The token budget of a context size.
    pub fn budget_of(&self, size: ContextSize) -> u32 {
        match size {
            ContextSize::Low => self.budget[0],
            ContextSize::Medium => self.budget[1],
            ContextSize::High => self.budget[2],
        }
    }
}

/// When a request searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Never,
    OnRequest,
    Always,
}

/// The section checked; `None` when absent or disabled.
pub fn compile(
    raw: Option<&RawSearch>,
    model_names: &[String],
    consumer_names: &[&str],
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Option<SearchPolicy> {
    let raw = raw.filter(|r| r.enabled)?;
    for c in raw.consumers.iter().chain(&raw.always_consumers) {
        if !consumer_names.contains(&c.get_ref().as_str()) {
            problems.at(c.span(), format_args!("search: unknown consumer `{}`", c.get_ref()));
        }
    }
    let context_size = ContextSize::parse(raw.context_size.get_ref()).unwrap_or_else(|| {
        problems.at(raw.context_size.span(), "search.context_size: one of low, medium, high");
        ContextSize::Medium
    });
    let b = &raw.budget;
    if [b.low, b.medium, b.high].iter().any(|&n| !(100..=100_000).contains(&n)) {
        problems.note("search.budget: each size from 100 to 100000 tokens");
    }
    let max_queries = *raw.max_queries.get_ref();
    if !(1..=10).contains(&max_queries) {
        problems.at(raw.max_queries.span(), "search.max_queries: from 1 to 10");
    }
    let results = *raw.results.get_ref();
    if !(1..=50).contains(&results) {
        problems.at(raw.results.span(), "search.results: from 1 to 50");
    }
    let timeout = millis(&raw.timeout_ms, "search.timeout_ms", problems);
    if *raw.cache_ttl_seconds.get_ref() > 7 * 86_400 {
        problems.at(
            raw.cache_ttl_seconds.span(),
            "search.cache_ttl_seconds: at most 604800 (7 days)",
        );
    }
    let planner = raw.planner.as_ref().and_then(|p| {
        if !model_names.contains(p.model.get_ref()) {
            problems.at(
                p.model.span(),
                format_args!("search.planner.model: unknown model `{}`", p.model.get_ref()),
            );
            return None;
        }
        Some(Planner {
            model: p.model.get_ref().clone(),
            timeout: millis(&p.timeout_ms, "search.planner.timeout_ms", problems),
            prompt: p.prompt.clone(),
            skip: p.skip.clone(),
        })
    });
    let rerank = raw.rerank.as_ref().map(|r| {
        let (top, weight) = (*r.top.get_ref(), *r.weight.get_ref());
        if !(1..=64).contains(&top) {
            problems.at(r.top.span(), "search.rerank.top: from 1 to 64");
        }
        if !(0.0..=1.0).contains(&weight) {
            problems.at(r.weight.span(), "search.rerank.weight: from 0 to 1");
        }
        Rerank {
            top: top.clamp(1, 64) as usize,
            weight: weight.clamp(0.0, 1.0),
            wait: millis(&r.wait_ms, "search.rerank.wait_ms", problems),
            embedder: r.embedder.clone().filter(|e| !e.is_empty()),
        }
    });
    let f = &raw.fetch;
    if f.pages > 10 {
        problems.note("search.fetch.pages: at most 10");
    }
    if !(1024..=16 << 20).contains(&f.max_bytes) {
        problems.note("search.fetch.max_bytes: from 1024 to 16777216");
    }
    let fetch = Fetch {
        pages: f.pages.min(10) as usize,
        timeout: millis(&f.timeout_ms, "search.fetch.timeout_ms", problems),
        max_bytes: f.max_bytes.clamp(1024, 16 << 20) as usize,
        allow_private: f.allow_private,
    };
    if raw.engines.is_empty() {
        problems.note("search.engines: at least one engine is required");
    }
    let mut engines: Vec<Arc<Engine>> = Vec::new();
    for (i, e) in raw.engines.iter().enumerate() {
        if engines.iter().any(|o| &o.name == e.name.get_ref()) {
            problems.at(
                e.name.span(),
                format_args!("search.engines[{i}].name: duplicate engine `{}`", e.name.get_ref()),
            );
            continue;
        }
        if let Some(engine) = engines::compile(e, i, base_dir, problems) {
            engines.push(Arc::new(engine));
        }
    }
    Some(SearchPolicy {
        models: raw.models.iter().map(|m| m.get_ref().clone()).collect(),
        always: raw.always.iter().map(|m| m.get_ref().clone()).collect(),
        consumers: raw.consumers.iter().map(|c| c.get_ref().clone()).collect(),
        always_consumers: raw.always_consumers.iter().map(|c| c.get_ref().clone()).collect(),
        suffix: raw.suffix.clone(),
        budget: [b.low, b.medium, b.high],
        context_size,
        max_queries: max_queries.clamp(1, 10) as usize,
        results: results.clamp(1, 50) as usize,
        timeout,
        cache_ttl: Duration::from_secs((*raw.cache_ttl_seconds.get_ref()).min(7 * 86_400)),
        references: raw.references,
        planner,
        rerank,
        fetch,
        engines,
    })
}

pub(crate) fn millis(v: &Spanned<u64>, field: &str, problems: &mut Problems<'_>) -> Duration {
    let ms = *v.get_ref();
    if !(1..=120_000).contains(&ms) {
        problems.at(v.span(), format_args!("{field}: from 1 to 120000"));
    }
    Duration::from_millis(ms.clamp(1, 120_000))
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const BASE: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "chat"
targets = [{ provider = "p" }]

[[models]]
name = "fast"
targets = [{ provider = "p" }]
"#;

    fn load(search: &str) -> Result<crate::config::Snapshot, Vec<String>> {
        load_str(&format!("{BASE}\n{search}"), "t.toml", None, 1).map_err(|e| e.problems)
    }

    #[test]
    fn engines_planner_and_triggers_are_validated() {
        let s = load(
            r#"
[search]
always = ["fast"]
planner = { model = "fast" }
engines = [
  { name = "web", kind = "searxng", url = "http://127.0.0.1:9/search" },
  { name = "papers", kind = "arxiv", url = "http://127.0.0.1:9/api/query" },
]
"#,
        )
        .unwrap();
        let p = s.search.as_deref().unwrap();
        assert_eq!(p.engines.len(), 2);
        assert_eq!(p.engines[1].domains, [super::Domain::Academic]);
        assert_eq!(p.trigger_for("chat", None), super::Trigger::OnRequest);
        assert_eq!(p.trigger_for("fast", None), super::Trigger::Always);
        assert_eq!(p.planner.as_ref().unwrap().model, "fast");
    }

    #[test]
    fn bad_sections_name_each_problem() {
        let problems = load(
            r#"
[search]
context_size = "huge"
planner = { model = "nope" }
engines = [
  { name = "b", kind = "bing", url = "https://127.0.0.1:9/v7.0/search" },
  { name = "g", kind = "google", url = "https://127.0.0.1:9/customsearch/v1", api_key = "env:PATH" },
  { name = "x", kind = "searxng", url = "ftp://h/search" },
]
"#,
        )
        .unwrap_err();
        let all = problems.join("\n");
        for want in [
            "search.context_size",
            "search.planner.model: unknown model `nope`",
            "search.engines[0].api_key: required",
            "search.engines[1].cx: required",
            "search.engines[2].url: scheme must be http or https",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
    }
}
