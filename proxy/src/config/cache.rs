//! `[cache]`: which models' answers are kept and reused, for how long, and how alike a new
//! question must be to a cached one (see `docs/semantic-cache.md`).

use serde::Deserialize;
use toml::Spanned;

use super::glob;
use super::problems::Problems;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Off keeps the section in the file without using it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Public models whose answers are cached (globs). Default: every model.
    #[serde(default)]
    pub models: Vec<Spanned<String>>,
    /// Seconds an entry is served.
    #[serde(default = "default_ttl")]
    pub ttl_seconds: Spanned<u64>,
    /// Also answer questions that are alike, not only the same request.
    #[serde(default = "yes")]
    pub semantic: bool,
    /// Similarity a hit needs when only function words, order or typos differ.
    #[serde(default)]
    pub threshold: Option<Spanned<f32>>,
    /// Similarity a hit needs when content words differ.
    #[serde(default)]
    pub strict: Option<Spanned<f32>>,
    /// Each consumer has entries of its own (none shared between consumers).
    #[serde(default)]
    pub per_consumer: bool,
    /// Requests with a higher `temperature` are neither answered from nor written to the cache.
    #[serde(default = "default_max_temperature")]
    pub max_temperature: Spanned<f64>,
}

fn yes() -> bool {
    true
}

fn default_ttl() -> Spanned<u64> {
    Spanned::new(0..0, 3600)
}

fn default_max_temperature() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    pub models: Vec<String>,
    pub ttl_ms: u64,
    pub semantic: bool,
    pub hits: tollgate_semantic::HitPolicy,
    pub per_consumer: bool,
    pub max_temperature: f64,
}

impl CachePolicy {
    /// Whether answers for public model `model` are cached.
    pub fn covers(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob::matches(p, model))
    }
}

/// The section checked; `None` when absent or disabled.
pub fn compile(raw: Option<&RawCache>, problems: &mut Problems<'_>) -> Option<CachePolicy> {
    let raw = raw.filter(|r| r.enabled)?;
    let ttl = *raw.ttl_seconds.get_ref();
    if ttl == 0 || ttl > 30 * 86_400 {
        problems.at(
            raw.ttl_seconds.span(),
            "cache.ttl_seconds: must be from 1 to 2592000 (30 days)",
        );
    }
    let mut hits = tollgate_semantic::DEFAULT_POLICY;
    for (field, value, into) in [
        ("threshold", &raw.threshold, &mut hits.threshold),
        ("strict", &raw.strict, &mut hits.strict),
    ] {
        if let Some(v) = value {
            if !(0.0..=1.0).contains(v.get_ref()) {
                problems.at(v.span(), format_args!("cache.{field}: a cosine similarity from 0 to 1"));
            }
            *into = *v.get_ref();
        }
    }
    if hits.strict < hits.threshold {
        problems.warn(
            raw.strict.as_ref().map_or(0..0, |s| s.span()),
            format_args!(
                "cache.strict ({}) is below cache.threshold ({}): questions whose content differs would need less similarity than those whose only function words differ",
                hits.strict, hits.threshold
            ),
        );
    }
    if hits.threshold < 0.7 {
        problems.warn(
            raw.threshold.as_ref().map_or(0..0, |s| s.span()),
            "cache.threshold below 0.7: the measured precision was taken at 0.80 (docs/semantic-cache.md)",
        );
    }
    let max_temperature = *raw.max_temperature.get_ref();
    if !(0.0..=2.0).contains(&max_temperature) {
        problems.at(raw.max_temperature.span(), "cache.max_temperature: from 0 to 2");
    }
    Some(CachePolicy {
        models: raw.models.iter().map(|m| m.get_ref().clone()).collect(),
        ttl_ms: ttl.saturating_mul(1000),
        semantic: raw.semantic,
        hits,
        per_consumer: raw.per_consumer,
        max_temperature,
    })
}
