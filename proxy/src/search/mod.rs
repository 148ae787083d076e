//! The search stage: ground an answer in what engines find for the user's question.
//!
//! A request searches when its model and consumer may, and it asks (`web_search_options`, the
//! model suffix such as `qwen:online`, or `x-tollgate-search: on`), or when its model or
//! consumer always searches ([`asked`]). Then [`run`]: the queries (the planner's, or the
//! user's last message), every chosen engine asked in parallel, each within its timeout; the
//! results cut into passages and ranked against the user's own question ([`rank`]); the best
//! fitted to the token budget in one delimited context message placed just before the user's
//! last message ([`context`]). The user's words stay as they are. Whatever fails, the request
//! goes on: without search (`skipped`) or with what the engines that answered found
//! (`partial`).

pub mod cache;
pub mod context;
pub mod engines;
pub mod eval;
pub mod fetch;
pub mod planner;
pub mod rank;
mod trigger;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;

pub use self::trigger::{asked, Ask, HEADER};

use self::cache::SearchCache;
use self::context::Source;
use self::engines::{EngineError, Hit};
use self::fetch::FetchError;
use self::rank::Passage;
use crate::config::guardrails::Action;
use crate::config::guardrails::ModelGuards;
use crate::config::search::{Domain, Engine, EngineKind, SearchPolicy};
use crate::config::Snapshot;
use crate::context::{Direction, GuardEvent, PlannerFacts, SearchFacts, SearchStatus as Status};
use crate::json_spans::text_of;
use crate::pipeline::body::{Edit, Piece, Prompt, RequestView};
use crate::pipeline::safety::{self, PassageVerdict};
use crate::upstream::moderation::{self, Verdict};
use crate::upstream::{Connections, UpstreamOptions};
use tollgate_semantic::{cosine, EmbedPool, Shed};

/// Words of the user's message kept in a query when no planner writes one.
const QUERY_WORDS: usize = 32;

/// User and assistant turns the planner reads (the last ones).
const CONVERSATION_TURNS: usize = 4;

/// What the stage gives the request: edits of the body sent upstream, and the references the
/// answer carries.
pub struct Searched {
    pub facts: SearchFacts,
    pub edits: Vec<Edit>,
    pub references: Option<Bytes>,
    /// What the input rules found in the passages.
    pub guard_events: Vec<GuardEvent>,
}

/// What the stage needs of the gateway.
pub struct Env<'a> {
    /// The config serving the request (the planner model's route).
    pub snapshot: &'a Snapshot,
    pub conns: &'a Connections,
    pub opts: &'a UpstreamOptions,
    pub request_id: &'a str,
    /// Counts tokens as the route's model does.
    pub count: &'a (dyn Fn(&str) -> usize + Sync),
    /// This node's engine answers and pages, and the time now (Unix ms) for their expiry.
    pub cache: &'a SearchCache,
    pub now_ms: u64,
    /// The content safety rules of the request's model, and its consumer: passages are read by
    /// the input rules before they are injected.
    pub guards: Option<&'a ModelGuards>,
    pub consumer: Option<&'a str>,
    /// The sentence embedder, for ranking by meaning (`[search.rerank]`).
    pub embedder: Option<&'a EmbedPool>,
}

/// Run the stage for a request to public model `model` that asked (see the module docs).
/// Never fails the request.
pub async fn run(
    env: &Env<'_>,
    policy: &SearchPolicy,
    model: &str,
    ask: &Ask,
    body: &[u8],
    view: &RequestView,
) -> Searched {
    let started = Instant::now();
    let mut searched = Searched {
        facts: SearchFacts::default(),
        edits: Vec::new(),
        references: None,
        guard_events: Vec::new(),
    };
    if let Some(strip) = &ask.strip {
        searched.edits.push(Edit {
            range: strip.clone(),
            bytes: Bytes::new(),
        });
    }
    if let Err(reason) = ground(env, policy, model, ask, body, view, &mut searched).await {
        searched.facts.reason = reason;
    }
    searched.facts.took = started.elapsed();
    searched
}

/// Plan, search, rank and fit: the context message joins `out`'s edits, or the reason why
/// nothing was added is returned.
async fn ground(
    env: &Env<'_>,
    policy: &SearchPolicy,
    model: &str,
    ask: &Ask,
    body: &[u8],
    view: &RequestView,
    out: &mut Searched,
) -> Result<(), &'static str> {
    let deadline = tokio::time::Instant::now() + policy.timeout;
    let (question, before) = last_user_message(body, view).ok_or("no_question")?;
    let queries = match policy.planner.as_ref().filter(|p| p.plans(model)) {
        Some(planner) => {
            let domains = policy.domains();
            let conversation = conversation(body, view);
            let planning = planner::plan(env, planner, &domains, policy.max_queries, &conversation);
            let planned = tokio::time::timeout_at(deadline, planning)
                .await
                .map_err(|_| "timeout")?;
            out.facts.planner = Some(PlannerFacts {
                model: planner.model.clone(),
                usage: planned.usage,
                attempts: planned.attempts,
                took: planned.took,
            });
            let plan = planned.plan.map_err(|e| {
                tracing::info!(request_id = env.request_id, reason = e.reason(), error = ?e, "no search plan; answering without search");
                e.reason()
            })?;
            if !plan.search {
                return Err("not_needed");
            }
            plan.queries.into_iter().map(|q| (q.q, Some(q.domain))).collect()
        }
        None => vec![(query_of(&question), None)],
    };
    out.facts.queries = queries.len() as u32;
    let asked = Instant::now();
    let calls = tokio::time::timeout_at(deadline, gather(env, policy, &queries))
        .await
        .map_err(|_| "timeout")?;
    out.facts.engines_took = asked.elapsed();
    let (mut sources, mut passages, found) = collect(&calls, &mut out.facts);
    if out.facts.results == 0 {
        return Err(if out.facts.engines_failed > 0 {
            "engines_failed"
        } else {
            "no_results"
        });
    }
    if policy.fetch.pages > 0 {
        let reading_from = Instant::now();
        let reading = read_pages(env, policy, &found, &mut sources, &mut passages, &mut out.facts);
        tokio::time::timeout_at(deadline, reading)
            .await
            .map_err(|_| "timeout")?;
        out.facts.pages_took = reading_from.elapsed();
    }
    let ranking = Instant::now();
    rank_passages(env, policy, &question, &mut passages, &mut out.facts).await;
    rank::dedupe(&mut passages);
    if let Some(guards) = env.guards {
        let events = &mut out.guard_events;
        let facts = &mut out.facts;
        passages.retain_mut(
            |p| match safety::inspect_passage(guards, env.consumer, &p.text, events) {
                PassageVerdict::Keep => true,
                PassageVerdict::Masked(text) => {
                    p.text = text;
                    true
                }
                PassageVerdict::Drop => {
                    facts.passages_dropped += 1;
                    false
                }
            },
        );
    }
    let budget = policy.budget_of(ask.size) as usize;
    let mut fitted = context::fit(&passages, &sources, budget, env.count);
    out.facts.rank_took = ranking.elapsed();
    if let Some(guards) = env.guards.filter(|g| g.input.iter().any(|r| r.moderation().is_some())) {
        let flagged = moderate(env, guards, &passages, &fitted.chosen, &mut out.guard_events).await?;
        if !flagged.is_empty() {
            out.facts.passages_dropped += flagged.len() as u32;
            // Fitted again from the passages the services read and passed (never from others).
            let kept: Vec<Passage> = fitted
                .chosen
                .iter()
                .filter(|i| !flagged.contains(i))
                .filter_map(|&i| passages.get(i).cloned())
                .collect();
            fitted = context::fit(&kept, &sources, budget, env.count);
        }
    }
    if fitted.passages == 0 {
        return Err("no_results");
    }
    let facts = &mut out.facts;
    facts.status = if facts.engines_failed > 0 {
        Status::Partial
    } else {
        Status::Ok
    };
    facts.passages = fitted.passages as u32;
    facts.tokens_added = fitted.tokens as u32;
    out.edits.push(Edit {
        range: before..before,
        bytes: context::message_json(&fitted.text),
    });
    if policy.references {
        out.references = Some(context::references_json(&fitted.cited, &sources));
    }
    Ok(())
}

/// The moderation services of the model's input rules (for this consumer) read the passages
/// chosen for the context, one call per service: the indices (in `passages`) of those a rule
/// that blocks or reroutes flagged, to be left out. A failed service that fails closed leaves
/// the whole search out; one that fails open is recorded and passes them.
async fn moderate(
    env: &Env<'_>,
    guards: &ModelGuards,
    passages: &[Passage],
    chosen: &[usize],
    events: &mut Vec<GuardEvent>,
) -> Result<Vec<usize>, &'static str> {
    let texts: Vec<&str> = chosen
        .iter()
        .filter_map(|&i| passages.get(i))
        .map(|p| p.text.as_str())
        .collect();
    let mut flagged: Vec<usize> = Vec::new();
    if texts.is_empty() {
        return Ok(flagged);
    }
    for rule in guards.input.iter().filter(|r| r.covers_consumer(env.consumer)) {
        let Some(service) = rule.moderation() else { continue };
        let verdicts = moderation::check_each(env.conns, env.opts, service, &texts, "search", env.request_id).await;
        if let Some(failed @ Verdict::Failed(_)) = verdicts.first() {
            if safety::judge(rule, service, failed, Direction::Search, events, env.request_id) {
                return Err("moderation_unavailable");
            }
            continue;
        }
        for (&i, verdict) in chosen.iter().zip(&verdicts) {
            let stops = safety::judge(rule, service, verdict, Direction::Search, events, env.request_id);
            let leaves = stops || (matches!(verdict, Verdict::Flagged(_)) && rule.action == Action::Reroute);
            if leaves && !flagged.contains(&i) {
                flagged.push(i);
            }
        }
    }
    Ok(flagged)
}

/// Rank `passages` against `question`: by BM25, blended with their similarity to the question
/// when `[search.rerank]` is on and the embedder reads them in time (else by BM25 alone, and
/// the facts say why).
async fn rank_passages(
    env: &Env<'_>,
    policy: &SearchPolicy,
    question: &str,
    passages: &mut Vec<Passage>,
    facts: &mut SearchFacts,
) {
    let best = rank::bm25(question, passages);
    let (Some(rerank), Some(pool), false) = (&policy.rerank, env.embedder, passages.is_empty()) else {
        rank::cut(passages, best);
        return;
    };
    let started = Instant::now();
    let top = rank::candidates(passages, best, rerank.top);
    let texts = std::iter::once(question).chain(top.iter().map(|&i| passages[i].text.as_str()));
    match similarities(pool, rerank.wait, texts).await {
        Ok(sims) => {
            let mut similarity = vec![None; passages.len()];
            for (&i, s) in top.iter().zip(sims) {
                similarity[i] = Some(s);
            }
            rank::blend(passages, best, &similarity, rerank.weight);
            facts.rerank = "ok";
        }
        Err(outcome) => {
            tracing::debug!(
                request_id = env.request_id,
                outcome,
                "passages ranked by their words alone"
            );
            rank::cut(passages, best);
            facts.rerank = outcome;
        }
    }
    facts.rerank_took = started.elapsed();
}

/// The cosine of each text after the first to the first, embedded by `pool` within `wait`
/// (the pool refuses at once when its queue would keep them waiting longer: `shed`).
async fn similarities<'t>(
    pool: &EmbedPool,
    wait: std::time::Duration,
    texts: impl Iterator<Item = &'t str>,
) -> Result<Vec<f32>, &'static str> {
    let mut pending = Vec::new();
    for text in texts {
        pending.push(pool.submit_within(text.to_string(), wait).map_err(|Shed| "shed")?);
    }
    let answers = tokio::time::timeout(wait, all(pending)).await.map_err(|_| "timeout")?;
    let mut vectors = Vec::with_capacity(answers.len());
    for answer in answers {
        vectors.push(answer.map_err(|_| "failed")?.map_err(|_| "failed")?);
    }
    let (question, rest) = vectors.split_first().ok_or("failed")?;
    Ok(rest.iter().map(|v| cosine(question, v)).collect())
}

/// The last few user and assistant turns, as the planner reads them.
fn conversation(body: &[u8], view: &RequestView) -> Vec<(String, String)> {
    let Prompt::Chat(messages) = &view.prompt else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for m in messages.iter().rev() {
        let role = m
            .role
            .as_ref()
            .map(|r| text_of(body, r).into_owned())
            .unwrap_or_default();
        if role != "user" && role != "assistant" {
            continue;
        }
        let text: Vec<String> = m
            .content
            .iter()
            .filter_map(|p| match p {
                Piece::Text(span) => Some(text_of(body, span).into_owned()),
                Piece::Tokens(_) => None,
            })
            .collect();
        out.push((role, text.join("\n")));
        if out.len() == CONVERSATION_TURNS {
            break;
        }
    }
    out.reverse();
    out
}

/// The text of the last user message and where that message starts in the body.
fn last_user_message(body: &[u8], view: &RequestView) -> Option<(String, usize)> {
    let Prompt::Chat(messages) = &view.prompt else {
        return None;
    };
    let m = messages
        .iter()
        .rev()
        .find(|m| m.role.as_ref().is_some_and(|r| &body[r.clone()] == b"user"))?;
    let mut text = String::new();
    for piece in &m.content {
        if let Piece::Text(span) = piece {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&text_of(body, span));
        }
    }
    (!text.trim().is_empty()).then_some((text, m.start))
}

/// A query from the user's message: its first words.
fn query_of(question: &str) -> String {
    question
        .split_whitespace()
        .take(QUERY_WORDS)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One engine's answer to one query.
struct Called<'e> {
    engine: &'e Engine,
    hits: Result<Arc<Vec<Hit>>, EngineError>,
    /// Answered from this node's cache.
    cached: bool,
}

/// Ask each query of every engine that serves its domain (all engines for a query without
/// one), all at once.
async fn gather<'e>(env: &Env<'_>, policy: &'e SearchPolicy, queries: &[(String, Option<Domain>)]) -> Vec<Called<'e>> {
    let mut calls = Vec::with_capacity(queries.len() * policy.engines.len());
    for (q, domain) in queries {
        let serves = |e: &&std::sync::Arc<Engine>| domain.is_none_or(|d| e.domains.contains(&d));
        for engine in policy.engines.iter().filter(serves) {
            let engine: &Engine = engine;
            calls.push(async move {
                let n = policy.results;
                if let Some(hits) = env.cache.results(&engine.name, q, n, env.now_ms) {
                    return Called {
                        engine,
                        hits: Ok(hits),
                        cached: true,
                    };
                }
                let hits = engines::search(env.conns, env.opts, engine, q, n, env.request_id)
                    .await
                    .map(Arc::new);
                if let (Ok(hits), false) = (&hits, policy.cache_ttl.is_zero()) {
                    let expires = env.now_ms + policy.cache_ttl.as_millis() as u64;
                    env.cache.keep_results(&engine.name, q, n, hits.clone(), expires);
                }
                Called {
                    engine,
                    hits,
                    cached: false,
                }
            });
        }
    }
    all(calls).await
}

/// How a source was found: the engine's best rank for it, and whether its page may be read
/// (a web or paper result; a knowledge base's documents are already whole).
#[derive(Debug, Clone, Copy)]
struct Found {
    rank: usize,
    fetch: bool,
}

/// Sources (one per URL, first finder kept) and their passages, from every answer.
fn collect(calls: &[Called<'_>], facts: &mut SearchFacts) -> (Vec<Source>, Vec<Passage>, Vec<Found>) {
    let mut sources: Vec<Source> = Vec::new();
    let mut found: Vec<Found> = Vec::new();
    let mut passages = Vec::new();
    for call in calls {
        let hits = match &call.hits {
            Ok(hits) => {
                let outcome = if call.cached { "cached" } else { "ok" };
                facts.calls.push((call.engine.name.clone(), outcome));
                hits
            }
            Err(e) => {
                facts.engines_failed += 1;
                facts.calls.push((call.engine.name.clone(), e.outcome()));
                tracing::info!(engine = %call.engine.name, outcome = e.outcome(), "search engine gave no results");
                continue;
            }
        };
        for (rank, hit) in hits.iter().enumerate() {
            facts.results += 1;
            if let Some(known) = sources.iter().position(|s| s.url == hit.url) {
                found[known].rank = found[known].rank.min(rank);
                continue;
            }
            let source = sources.len();
            sources.push(Source {
                title: hit.title.clone(),
                url: hit.url.clone(),
                engine: call.engine.name.clone(),
            });
            found.push(Found {
                rank,
                fetch: !matches!(call.engine.kind, EngineKind::Elasticsearch | EngineKind::Local),
            });
            for text in rank::passages(&hit.text, rank::PASSAGE_WORDS) {
                passages.push(Passage {
                    source,
                    text,
                    rank,
                    score: 0.0,
                });
            }
        }
    }
    (sources, passages, found)
}

/// Read the best-ranked result pages in full, all at once; their passages join the snippets'.
async fn read_pages(
    env: &Env<'_>,
    policy: &SearchPolicy,
    found: &[Found],
    sources: &mut [Source],
    passages: &mut Vec<Passage>,
    facts: &mut SearchFacts,
) {
    let mut chosen: Vec<usize> = (0..sources.len()).filter(|&i| found[i].fetch).collect();
    chosen.sort_by_key(|&i| found[i].rank);
    chosen.truncate(policy.fetch.pages);
    let urls: Vec<String> = chosen.iter().map(|&i| sources[i].url.clone()).collect();
    let reads = urls
        .iter()
        .map(|url| async move {
            if let Some(page) = env.cache.page(url, env.now_ms) {
                return (Ok(page), true);
            }
            let page = fetch::page(env.conns, env.opts, &policy.fetch, url).await.map(Arc::new);
            if let (Ok(page), false) = (&page, policy.cache_ttl.is_zero()) {
                let expires = env.now_ms + policy.cache_ttl.as_millis() as u64;
                env.cache.keep_page(url, page.clone(), expires);
            }
            (page, false)
        })
        .collect();
    let read = all(reads).await;
    for (i, (page, cached)) in chosen.into_iter().zip(read) {
        match page {
            Ok(page) => {
                if cached {
                    facts.pages_cached += 1;
                } else {
                    facts.pages_fetched += 1;
                    facts.page_bytes += page.bytes as u64;
                }
                if sources[i].title.is_empty() {
                    sources[i].title = page.title.clone();
                }
                for text in rank::passages(&page.text, rank::PASSAGE_WORDS) {
                    passages.push(Passage {
                        source: i,
                        text,
                        rank: found[i].rank,
                        score: 0.0,
                    });
                }
            }
            Err(FetchError::Refused(why)) => {
                facts.pages_refused += 1;
                tracing::info!(request_id = env.request_id, why, "result page not fetched");
            }
            Err(FetchError::Failed(why)) => {
                facts.pages_failed += 1;
                tracing::debug!(request_id = env.request_id, why, "result page could not be read");
            }
        }
    }
}

/// Run `futures` concurrently on this task; their outputs in order.
async fn all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (f, out) in pending.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::pipeline::body::parse;

    #[test]
    fn queries_come_from_the_last_user_message() {
        let body = r#"{"model":"chat","messages":[{"role":"user","content":"old"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"new \"one\""},{"type":"text","text":"part two"}]}]}"#;
        let view = parse(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        let (q, at) = last_user_message(body.as_bytes(), &view).unwrap();
        assert_eq!(q, "new \"one\"\npart two");
        assert!(body[at..].starts_with(r#"{"role":"user","content":[{"#));
        assert_eq!(query_of(&"w ".repeat(100)).split(' ').count(), QUERY_WORDS);
    }
}
