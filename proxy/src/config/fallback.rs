//! How a public model survives failures: its fallback chain (other public models tried after
//! its own targets), its retry policy (how many attempts, the backoff between tries of the same
//! target, which failures qualify, the retry budget), its timeouts, and when one of its targets
//! counts as unhealthy. Written per model in `[[models]]`; validated here once.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::problems::Problems;

/// `retry = { ... }` of a model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in all, first included (default: each target of the chain once).
    pub attempts: Option<Spanned<u32>>,
    /// Base of the exponential backoff before trying a target again (default 50).
    pub backoff_ms: Option<Spanned<u64>>,
    /// Cap of the backoff (default 2000).
    pub max_backoff_ms: Option<Spanned<u64>>,
    /// Failures that let the next attempt go: `connect`, `timeout`, `429`, `5xx`,
    /// `context_length` (a 4xx saying the prompt is too long), or a status code.
    pub on: Option<Vec<Spanned<String>>>,
    /// Retries over 10 s stay under this fraction of first attempts (default 0.2) ...
    pub budget_ratio: Option<Spanned<f64>>,
    /// ... plus this many per second (default 10).
    pub budget_min_per_sec: Option<Spanned<f64>>,
    /// The retries one target's failures may ask for over 10 s stay under this fraction of
    /// the requests it had (default 0.5), plus the same floor.
    pub target_budget_ratio: Option<Spanned<f64>>,
}

/// `timeouts = { ... }` of a model; each defaults to the CLI flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect_ms: Option<Spanned<u64>>,
    /// Until the response header.
    pub first_byte_ms: Option<Spanned<u64>>,
    /// Between two reads of the body (a stalled stream is cut).
    pub idle_ms: Option<Spanned<u64>>,
    /// The whole request, all attempts and the answer's body.
    pub total_ms: Option<Spanned<u64>>,
}

/// `health = { ... }` of a model: when its targets are ejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Failures in a row that eject a target (default 5; 0: off).
    pub failures: Option<Spanned<u32>>,
    /// Failure ratio over 10 s that ejects (default 0.5; 1: off) ...
    pub error_rate: Option<Spanned<f64>>,
    /// ... once this many requests were seen (default 20).
    pub min_requests: Option<Spanned<u32>>,
    /// First ejection's length (default 5000); doubles on each repeat ...
    pub cooldown_ms: Option<Spanned<u64>>,
    /// ... up to this (default 120000).
    pub max_cooldown_ms: Option<Spanned<u64>>,
    /// Active checks: a `GET` of `probe_path` on each target this often (default 0: off).
    pub probe_interval_ms: Option<Spanned<u64>>,
    /// The path probed, after the provider's base URL (default `/models`).
    pub probe_path: Option<Spanned<String>>,
}

/// Which failures let the next attempt go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    pub connect: bool,
    pub timeout: bool,
    pub too_many: bool,
    pub server_errors: bool,
    pub context_length: bool,
    /// Other statuses named one by one.
    pub statuses: Vec<u16>,
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            connect: true,
            timeout: true,
            too_many: true,
            server_errors: true,
            context_length: false,
            statuses: Vec::new(),
        }
    }
}

impl RetryOn {
    /// Whether a provider's answer with `status` qualifies (a context-length error is judged
    /// from its body, see [`RetryOn::context_length`]).
    pub fn status(&self, status: u16) -> bool {
        (self.too_many && status == 429)
            || (self.server_errors && (500..600).contains(&status))
            || self.statuses.contains(&status)
    }
}

/// A model's retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `None`: each target of the chain once.
    pub attempts: Option<u32>,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub on: RetryOn,
    pub budget_ratio: f64,
    pub budget_min_per_sec: f64,
    pub target_budget_ratio: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: None,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(2000),
            on: RetryOn::default(),
            budget_ratio: 0.2,
            budget_min_per_sec: 10.0,
            target_budget_ratio: 0.5,
        }
    }
}

/// A model's timeouts; `None` takes the CLI default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub idle: Option<Duration>,
    pub total: Option<Duration>,
}

/// When a target of the model counts as unhealthy.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    pub failures: u32,
    pub error_rate: f64,
    pub min_requests: u32,
    pub cooldown_ms: u64,
    pub max_cooldown_ms: u64,
    /// Active checks every this many ms (0: off).
    pub probe_interval_ms: u64,
    /// Path of the active check after the provider's base path (starts with `/`).
    pub probe_path: String,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            cooldown_ms: 5_000,
            max_cooldown_ms: 120_000,
            probe_interval_ms: 0,
            probe_path: "/models".into(),
        }
    }
}

/// A bounded number from the config, or its default; out of range is reported.
fn bounded<T: Copy + PartialOrd + std::fmt::Display>(
    v: &Option<Spanned<T>>,
    default: T,
    range: std::ops::RangeInclusive<T>,
    field: &str,
    problems: &mut Problems<'_>,
) -> T {
    match v {
        Some(s) if !range.contains(s.get_ref()) => {
            problems.at(
                s.span(),
                format_args!(
                    "{field}: {} is out of range ({} to {})",
                    s.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Some(s) => *s.get_ref(),
        None => default,
    }
}

pub fn retry(raw: Option<&RawRetry>, at: &str, problems: &mut Problems<'_>) -> RetryPolicy {
    let d = RetryPolicy::default();
    let Some(r) = raw else { return d };
    let f = |name: &str| format!("{at}.retry.{name}");
    let ms = |v: u64| Duration::from_millis(v);
    let mut on = d.on.clone();
    if let Some(list) = &r.on {
        on = RetryOn {
            connect: false,
            timeout: false,
            too_many: false,
            server_errors: false,
            context_length: false,
            statuses: Vec::new(),
        };
        for item in list {
            match item.get_ref().as_str() {
                "connect" => on.connect = true,
                "timeout" => on.timeout = true,
                "429" => on.too_many = true,
                "5xx" => on.server_errors = true,
                "context_length" => on.context_length = true,
                other => match other.parse::<u16>() {
                    Ok(s) if (400..600).contains(&s) => on.statuses.push(s),
                    _ => problems.at(
                        item.span(),
                        format_args!(
                            "{}: `{other}`, expected connect, timeout, 429, 5xx, context_length or a status from 400 to 599",
                            f("on")
                        ),
                    ),
                },
            }
        }
    }
    RetryPolicy {
        attempts: r
            .attempts
            .as_ref()
            .map(|_| bounded(&r.attempts, 1, 1..=20, &f("attempts"), problems)),
        backoff: ms(bounded(&r.backoff_ms, 50, 0..=60_000, &f("backoff_ms"), problems)),
        max_backoff: ms(bounded(
            &r.max_backoff_ms,
            2000,
            0..=300_000,
            &f("max_backoff_ms"),
            problems,
        )),
        on,
        budget_ratio: bounded(&r.budget_ratio, 0.2, 0.0..=10.0, &f("budget_ratio"), problems),
        budget_min_per_sec: bounded(
            &r.budget_min_per_sec,
            10.0,
            0.0..=100_000.0,
            &f("budget_min_per_sec"),
            problems,
        ),
        target_budget_ratio: bounded(
            &r.target_budget_ratio,
            0.5,
            0.0..=10.0,
            &f("target_budget_ratio"),
            problems,
        ),
    }
}

pub fn timeouts(raw: Option<&RawTimeouts>, at: &str, problems: &mut Problems<'_>) -> Timeouts {
    let Some(t) = raw else { return Timeouts::default() };
    let mut one = |v: &Option<Spanned<u64>>, name: &str| {
        v.as_ref()
            .map(|_| Duration::from_millis(bounded(v, 1, 1..=3_600_000, &format!("{at}.timeouts.{name}"), problems)))
    };
    Timeouts {
        connect: one(&t.connect_ms, "connect_ms"),
        first_byte: one(&t.first_byte_ms, "first_byte_ms"),
        idle: one(&t.idle_ms, "idle_ms"),
        total: one(&t.total_ms, "total_ms"),
    }
}

pub fn health(raw: Option<&RawHealth>, at: &str, problems: &mut Problems<'_>) -> HealthPolicy {
    let d = HealthPolicy::default();
    let Some(h) = raw else { return d };
    let f = |name: &str| format!("{at}.health.{name}");
    HealthPolicy {
        failures: bounded(&h.failures, d.failures, 0..=1000, &f("failures"), problems),
        error_rate: bounded(&h.error_rate, d.error_rate, 0.01..=1.0, &f("error_rate"), problems),
        min_requests: bounded(
            &h.min_requests,
            d.min_requests,
            1..=100_000,
            &f("min_requests"),
            problems,
        ),
        cooldown_ms: bounded(
            &h.cooldown_ms,
            d.cooldown_ms,
            1..=3_600_000,
            &f("cooldown_ms"),
            problems,
        ),
        max_cooldown_ms: bounded(
            &h.max_cooldown_ms,
            d.max_cooldown_ms,
            1..=86_400_000,
            &f("max_cooldown_ms"),
            problems,
        ),
        probe_interval_ms: match &h.probe_interval_ms {
            Some(v) if *v.get_ref() == 0 => 0,
            v => bounded(v, 0, 100..=3_600_000, &f("probe_interval_ms"), problems),
        },
        probe_path: match &h.probe_path {
            Some(p) if p.get_ref().starts_with('/') && p.get_ref().bytes().all(|b| b.is_ascii_graphic()) => {
                p.get_ref().clone()
            }
            Some(p) => {
                problems.at(p.span(), format_args!("{}: a path starting with `/`", f("probe_path")));
                d.probe_path.clone()
            }
            None => d.probe_path.clone(),
        },
    }
}

/// Whether an error body says the prompt does not fit the model's context (OpenAI, DeepSeek,
/// vLLM, Anthropic, DashScope wordings).
pub fn says_context_too_long(body: &[u8]) -> bool {
    const SIGNS: &[&[u8]] = &[
        b"context_length_exceeded",
        b"maximum context length",
        b"context window",
        b"prompt is too long",
        b"range of input length",
        b"input is too long",
        b"too many tokens",
    ];
    let lower = body.to_ascii_lowercase();
    SIGNS.iter().any(|s| memchr::memmem::find(&lower, s).is_some())
}
