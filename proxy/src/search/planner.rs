//! The planner: one LLM call, through the gateway's own routing, that decides whether a
//! question needs searching and writes the queries.
//!
//! The call is the gateway's own (request-scoped, no HTTP round trip to itself): the planner
//! model's attempt plan (weighted targets, health, retry budget, fallback models) is walked as
//! for a client request, each attempt within the planner's timeout; its usage is reported back
//! for the request's record. The model is asked for one JSON object
//! (`{"search": bool, "queries": [{"q": "...", "domain": "web|academic|private"}]}`, with
//! `response_format: json_object`), which is validated: anything else, or no answer in time,
//! means the request goes on without search.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use tollgate_limits::clock::{Clock, SystemClock};

use crate::api::Usage;
use crate::config::search::{Domain, Planner};
use crate::pipeline::attempts::{AttemptPlan, UpstreamError};
use crate::sse::usage::UsageFinder;
use crate::upstream::{self, Connections, WholeError};

/// Largest planner answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// Longest query kept (characters).
const MAX_QUERY: usize = 300;

/// Characters of each conversation message shown to the planner (the last ones).
const MAX_MESSAGE: usize = 2000;

/// The built-in planning instructions; `{domains}` and `{max}` are filled in.
pub const DEFAULT_PROMPT: &str =
    "You plan searches for an assistant. Decide whether answering the user's last message needs \
information from outside the conversation: recent events, facts that change over time, specific products, people, \
papers or documents, or the company's own knowledge. Greetings, small talk, rewriting, translation, arithmetic and \
general coding or reasoning questions do not need a search.\n\
Answer with exactly one JSON object and nothing else:\n\
{\"search\": true or false, \"queries\": [{\"q\": \"keywords\", \"domain\": \"...\"}]}\n\
Rules:\n\
- At most {max} queries: one for each distinct part of a question with several parts.\n\
- A query is a few search keywords, not a sentence; resolve words like \"it\" from the conversation.\n\
- domain is one of: {domains}.\n\
- Queries with domain academic are in English.\n\
- When search is false, queries is [].";

/// One query of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub q: String,
    pub domain: Domain,
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub search: bool,
    pub queries: Vec<Query>,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// No attempt answered (errors, timeouts, every target out).
    Unavailable(String),
    /// The answer is not a valid plan.
    Invalid(String),
}

impl PlanError {
    /// The reason in logs and the access line.
    pub fn reason(&self) -> &'static str {
        match self {
            PlanError::Unavailable(_) => "planner_failed",
            PlanError::Invalid(_) => "planner_invalid",
        }
    }
}

/// One planner call's result and cost.
#[derive(Debug)]
pub struct Planned {
    pub plan: Result<Plan, PlanError>,
    /// The provider's usage of a successful answer.
    pub usage: Option<Usage>,
    pub attempts: u32,
    pub took: Duration,
}

#[derive(Deserialize)]
struct RawPlan {
    search: bool,
    #[serde(default)]
    queries: Vec<RawQuery>,
}

#[derive(Deserialize)]
struct RawQuery {
    q: String,
    domain: String,
}

/// The instructions for `domains`, at most `max` queries.
pub fn instructions(planner: &Planner, domains: &[Domain], max: usize) -> String {
    let described: Vec<String> = domains
        .iter()
        .map(|d| match d {
            Domain::Web => "\"web\" (the public web: news, facts, products, people)".to_string(),
            Domain::Academic => "\"academic\" (research papers and preprints)".to_string(),
            Domain::Private => "\"private\" (the company's internal documents and policies)".to_string(),
        })
        .collect();
    planner
        .prompt
        .as_deref()
        .unwrap_or(DEFAULT_PROMPT)
        .replace("{domains}", &described.join(", "))
        .replace("{max}", &max.to_string())
}

/// The planner's request body for a target model (`model_json`, a JSON string literal).
pub fn request_body(model_json: &[u8], instructions: &str, conversation: &[(String, String)]) -> Bytes {
    let mut shown = String::from("Conversation, most recent last:\n");
    for (role, text) in conversation {
        let cut: String = text.chars().take(MAX_MESSAGE).collect();
        shown.push_str(role);
        shown.push_str(": ");
        shown.push_str(&cut);
        shown.push('\n');
    }
    let body = serde_json::json!({
        "model": "",
        "messages": [
            {"role": "system", "content": instructions},
            {"role": "user", "content": shown},
        ],
        "temperature": 0,
        "max_tokens": 400,
        "stream": false,
        "response_format": {"type": "json_object"},
    })
    .to_string();
    // The model name goes in as the target's own literal (already JSON).
    let body = body.replacen(
        "\"model\":\"\"",
        &format!("\"model\":{}", String::from_utf8_lossy(model_json)),
        1,
    );
    Bytes::from(body)
}

/// Read a plan from a chat completion answer: its first choice's content must be one JSON
/// object of the plan's shape (a fenced code block around it is tolerated), with domains
/// among `domains`; queries past `max` are dropped.
pub fn read_plan(answer: &[u8], domains: &[Domain], max: usize) -> Result<Plan, PlanError> {
    let invalid = |why: &str| PlanError::Invalid(why.to_string());
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|_| invalid("the answer is not JSON"))?;
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| invalid("the answer has no message content"))?;
    let inner = match (content.find('{'), content.rfind('}')) {
        (Some(a), Some(b)) if a < b => &content[a..=b],
        _ => return Err(invalid("the content holds no JSON object")),
    };
    let raw: RawPlan = serde_json::from_str(inner).map_err(|_| invalid("the content is not a plan"))?;
    let mut queries = Vec::new();
    for q in raw.queries {
        let domain = Domain::parse(&q.domain)
            .filter(|d| domains.contains(d))
            .ok_or_else(|| invalid("a query names an unknown domain"))?;
        let text = crate::html::collapse(&q.q);
        if text.is_empty() {
            return Err(invalid("a query is empty"));
        }
        let text: String = text.chars().take(MAX_QUERY).collect();
        if !queries.iter().any(|x: &Query| x.q == text && x.domain == domain) {
            queries.push(Query { q: text, domain });
        }
    }
    if raw.search && queries.is_empty() {
        return Err(invalid("search is true but there are no queries"));
    }
    queries.truncate(max);
    Ok(Plan {
        search: raw.search,
        queries: if raw.search { queries } else { Vec::new() },
    })
}

/// Ask the planner model, walking its attempt plan within `planner.timeout`.
pub async fn plan(
    env: &super::Env<'_>,
    planner: &Planner,
    domains: &[Domain],
    max: usize,
    conversation: &[(String, String)],
) -> Planned {
    let (snapshot, conns, opts, request_id) = (env.snapshot, env.conns, env.opts, env.request_id);
    let started = Instant::now();
    let mut attempts = 0;
    let instructions = instructions(planner, domains, max);
    let deadline = tokio::time::Instant::now() + planner.timeout;
    let result = async {
        let Some(route) = snapshot.route(&planner.model) else {
            return Err(PlanError::Unavailable("the planner model is not configured".into()));
        };
        let clock = SystemClock;
        let mut plan = AttemptPlan::new(snapshot, route, rand::random(), |_| true);
        let mut attempt = plan
            .first(clock.now_ms())
            .map_err(|_| PlanError::Unavailable("every target of the planner model is out".into()))?;
        loop {
            if !attempt.backoff.is_zero() {
                tokio::time::sleep(attempt.backoff).await;
            }
            attempts += 1;
            let target = attempt.target;
            let body = request_body(&target.model_json, &instructions, conversation);
            let head = upstream::post_json_head(&target.provider, "/chat/completions", body.len(), request_id);
            let mut o = *opts;
            if let Some(t) = attempt.route.timeouts.first_byte {
                o.read_timeout = t;
            }
            let peer = upstream::peer(&target.provider, &o);
            let failure = match exchange(conns, &peer, &head, &body).await {
                Ok((status, answer)) if status.is_success() => {
                    target.health.succeeded(clock.now_ms());
                    let usage = UsageFinder::shared().in_json(&answer);
                    return Ok((read_plan(&answer, domains, max), usage));
                }
                Ok((status, _)) => UpstreamError::Status(status),
                Err(e) => e,
            };
            let now = clock.now_ms();
            if failure.is_target_failure() {
                target.health.failed(now, &attempt.route.health);
            }
            tracing::info!(request_id, provider = %target.provider.name, reason = failure.outcome(), "planner attempt failed");
            if !failure.qualifies(&route.retry.on) {
                return Err(PlanError::Unavailable(failure.outcome().to_string()));
            }
            match plan.next_attempt(now) {
                Some(next) => attempt = next,
                None => return Err(PlanError::Unavailable(failure.outcome().to_string())),
            }
        }
    };
    let (plan, usage) = match tokio::time::timeout_at(deadline, result).await {
        Ok(Ok((plan, usage))) => (plan, usage),
        Ok(Err(e)) => (Err(e), None),
        Err(_) => (Err(PlanError::Unavailable("timeout".into())), None),
    };
    Planned {
        plan,
        usage,
        attempts,
        took: started.elapsed(),
    }
}

/// Send the call; the status and the whole answer.
async fn exchange(
    conns: &Connections,
    peer: &pingora::upstreams::peer::HttpPeer,
    head: &[u8],
    body: &Bytes,
) -> Result<(http::StatusCode, Bytes), UpstreamError> {
    let up = upstream::send(conns, peer, head, body).await?;
    upstream::read_whole(conns, peer, up, MAX_ANSWER)
        .await
        .map_err(|e| match e {
            WholeError::TooLarge => UpstreamError::BrokeBeforeBody("the planner's answer is too large".to_string()),
            WholeError::TimedOut => {
                UpstreamError::Timeout("upstream timed out while reading the planner's answer".to_string())
            }
            WholeError::Broke(kind) => {
                UpstreamError::BrokeBeforeBody(format!("upstream failed while reading the planner's answer: {kind}"))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Domain; 3] = [Domain::Web, Domain::Academic, Domain::Private];

    fn answer(content: &str) -> Vec<u8> {
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn valid_plans_are_read_and_everything_else_is_invalid() {
        let p = read_plan(
            &answer(r#"```json
{"search": true, "queries": [{"q": " zephyrine  4.2 release ", "domain": "web"}, {"q": "garbage collector", "domain": "academic"}, {"q": "x", "domain": "web"}]}
```"#),
            &ALL,
            2,
        )
        .unwrap();
        assert!(p.search);
        assert_eq!(p.queries.len(), 2, "cut to the most queries");
        assert_eq!(
            p.queries[0],
            Query {
                q: "zephyrine 4.2 release".into(),
                domain: Domain::Web
            }
        );
        let no = read_plan(&answer(r#"{"search": false, "queries": []}"#), &ALL, 3).unwrap();
        assert!(!no.search && no.queries.is_empty());
        for bad in [
            "Sure, let me search for that.",
            r#"{"search": "yes"}"#,
            r#"{"search": true, "queries": []}"#,
            r#"{"search": true, "queries": [{"q": "a", "domain": "news"}]}"#,
            r#"{"search": true, "queries": [{"q": "  ", "domain": "web"}]}"#,
            r#"{"queries": []}"#,
        ] {
            assert!(
                matches!(read_plan(&answer(bad), &ALL, 3), Err(PlanError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(read_plan(br#"{"choices":[]}"#, &ALL, 3).is_err());
        assert!(read_plan(b"<html>", &ALL, 3).is_err());
        // A domain no engine serves is not one the planner may pick.
        let only_web = read_plan(
            &answer(r#"{"search": true, "queries": [{"q": "a", "domain": "private"}]}"#),
            &[Domain::Web],
            3,
        );
        assert!(only_web.is_err());
    }

    #[test]
    fn the_request_names_the_target_model_and_asks_for_json() {
        let planner = Planner {
            model: "fast".into(),
            timeout: Duration::from_secs(1),
            prompt: None,
            skip: Vec::new(),
        };
        let text = instructions(&planner, &[Domain::Web, Domain::Private], 4);
        assert!(text.contains("At most 4 queries") && text.contains("\"private\"") && !text.contains("\"academic\" ("));
        let body = request_body(br#""real-\"fast\"""#, &text, &[("user".into(), "hi".into())]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "real-\"fast\"");
        assert_eq!(v["response_format"]["type"], "json_object");
        assert!(v["messages"][1]["content"].as_str().unwrap().ends_with("user: hi\n"));
    }
}
