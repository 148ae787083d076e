//! The search stage's series: searches by model and outcome, engine calls by engine and
//! outcome, the stage's time, and what it added to prompts. Labels are configured names
//! (models, engines) and fixed outcome words only.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use super::metrics::Metrics;
use crate::context::SearchFacts;

/// Cheap to clone: each is a handle.
#[derive(Clone)]
pub struct SearchMetrics {
    /// Requests that searched, by public model and status (`ok`, `partial`, `skipped`).
    pub searches: IntCounterVec,
    /// Queries to engines, by engine and outcome (`ok`, `cached`, `error`, `timeout`).
    pub engine_calls: IntCounterVec,
    /// Time spent in the search stage.
    pub duration: Histogram,
    /// Passages injected, by public model.
    pub passages: IntCounterVec,
    /// Prompt tokens added by injected context, by public model.
    pub tokens_added: IntCounterVec,
    /// Time of planner calls.
    pub planner_duration: Histogram,
    /// Result pages, by outcome (`fetched`, `cached`, `refused`, `failed`).
    pub pages: IntCounterVec,
    /// Bytes of result pages read.
    pub page_bytes: prometheus::IntCounter,
    /// Rankings by meaning, by outcome (`ok`, `shed`, `timeout`, `failed`).
    pub reranks: IntCounterVec,
    /// Time spent embedding a request's question and passages.
    pub rerank_duration: Histogram,
}

const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl SearchMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = SearchMetrics {
            searches: IntCounterVec::new(
                Opts::new(
                    "tollgate_search_requests_total",
                    "Requests that searched, by public model and result (ok, partial, skipped)",
                ),
                &["model", "status"],
            )?,
            engine_calls: IntCounterVec::new(
                Opts::new(
                    "tollgate_search_engine_calls_total",
                    "Queries to search engines, by engine and outcome (ok, cached: answered from this node's search cache, error, timeout)",
                ),
                &["engine", "outcome"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new("tollgate_search_duration_seconds", "Time spent in the search stage")
                    .buckets(BUCKETS.to_vec()),
            )?,
            passages: IntCounterVec::new(
                Opts::new(
                    "tollgate_search_passages_total",
                    "Passages of search results injected into prompts, by public model",
                ),
                &["model"],
            )?,
            planner_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tollgate_search_planner_duration_seconds",
                    "Time of the search planner's LLM calls (their tokens count under the planner model in tollgate_tokens_total)",
                )
                .buckets(BUCKETS.to_vec()),
            )?,
            pages: IntCounterVec::new(
                Opts::new(
                    "tollgate_search_pages_total",
                    "Result pages, by outcome (fetched, cached, refused by the SSRF guard or scheme, failed)",
                ),
                &["outcome"],
            )?,
            page_bytes: prometheus::IntCounter::new(
                "tollgate_search_page_bytes_total",
                "Bytes of result pages read",
            )?,
            reranks: IntCounterVec::new(
                Opts::new(
                    "tollgate_search_rerank_total",
                    "Passage rankings by meaning with the embedder, by outcome (ok; shed, timeout, failed: ranked by words alone)",
                ),
                &["outcome"],
            )?,
            rerank_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "tollgate_search_rerank_duration_seconds",
                    "Time spent embedding a searching request's question and passages",
                )
                .buckets(BUCKETS.to_vec()),
            )?,
            tokens_added: IntCounterVec::new(
                Opts::new(
                    "tollgate_search_tokens_added_total",
                    "Prompt tokens added by injected search context, by public model",
                ),
                &["model"],
            )?,
        };
        registry.register(Box::new(m.searches.clone()))?;
        registry.register(Box::new(m.engine_calls.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.passages.clone()))?;
        registry.register(Box::new(m.tokens_added.clone()))?;
        registry.register(Box::new(m.planner_duration.clone()))?;
        registry.register(Box::new(m.pages.clone()))?;
        registry.register(Box::new(m.page_bytes.clone()))?;
        registry.register(Box::new(m.reranks.clone()))?;
        registry.register(Box::new(m.rerank_duration.clone()))?;
        Ok(m)
    }
}

impl Metrics {
    /// One request's search, as the stage reported it, for `consumer`; `planner_price` is the
    /// planner model's price.
    pub fn searched(
        &self,
        model: &str,
        facts: &SearchFacts,
        consumer: Option<&str>,
        planner_price: Option<&crate::config::routes::Price>,
    ) {
        let m = &self.search;
        m.searches.with_label_values(&[model, facts.status.name()]).inc();
        for (engine, outcome) in &facts.calls {
            m.engine_calls.with_label_values(&[engine.as_str(), outcome]).inc();
        }
        m.duration.observe(facts.took.as_secs_f64());
        for (outcome, n) in [
            ("fetched", facts.pages_fetched),
            ("cached", facts.pages_cached),
            ("refused", facts.pages_refused),
            ("failed", facts.pages_failed),
        ] {
            if n > 0 {
                m.pages.with_label_values(&[outcome]).inc_by(u64::from(n));
            }
        }
        m.page_bytes.inc_by(facts.page_bytes);
        if !facts.rerank.is_empty() {
            m.reranks.with_label_values(&[facts.rerank]).inc();
            m.rerank_duration.observe(facts.rerank_took.as_secs_f64());
        }
        if let Some(p) = &facts.planner {
            m.planner_duration.observe(p.took.as_secs_f64());
            if let Some(u) = p.usage {
                let series = self.model_series(&p.model);
                series.tokens[0].inc_by(u.prompt);
                series.tokens[1].inc_by(u.completion);
                self.usage.used(consumer, &p.model, planner_price, &u);
            }
        }
        if facts.passages > 0 {
            m.passages.with_label_values(&[model]).inc_by(u64::from(facts.passages));
            m.tokens_added
                .with_label_values(&[model])
                .inc_by(u64::from(facts.tokens_added));
        }
    }
}
