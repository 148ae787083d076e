//! External moderation: one call to an OpenAI `/v1/moderations`-compatible service or a
//! generic JSON webhook, over the same pooled connections as providers, bounded by the rule's
//! timeout. The caller decides what a flag or a failure means (block, log; fail open or closed).
//!
//! The webhook protocol: `POST {"texts": ["..."], "direction": "input"}`, answered with
//! `{"flagged": true|false, "categories": ["..."]}`.

use bytes::Bytes;
use serde::Deserialize;

use super::{peer, send, Connections, UpstreamOptions};
use crate::config::guardrails::{Moderation, ModerationProtocol};
use crate::pipeline::attempts::UpstreamError;

/// Largest answer read from a moderation service.
const MAX_ANSWER: usize = 1 << 20;

pub use crate::pipeline::safety::Verdict;

#[derive(Deserialize)]
struct OpenAiAnswer {
    results: Vec<OpenAiResult>,
}

#[derive(Deserialize)]
struct OpenAiResult {
    flagged: bool,
    #[serde(default)]
    categories: std::collections::BTreeMap<String, bool>,
}

#[derive(Deserialize)]
struct WebhookAnswer {
    flagged: bool,
    #[serde(default)]
    categories: Vec<String>,
}

/// The request body for `texts`.
pub fn request_body(m: &Moderation, texts: &[&str], direction: &str) -> Bytes {
    let body = match m.protocol {
        ModerationProtocol::OpenAi => match &m.model {
            Some(model) => serde_json::json!({ "input": texts, "model": model }),
            None => serde_json::json!({ "input": texts }),
        },
        ModerationProtocol::Webhook => serde_json::json!({ "texts": texts, "direction": direction }),
    };
    Bytes::from(body.to_string())
}

/// Read the service's answer.
pub fn verdict(m: &Moderation, body: &[u8]) -> Verdict {
    let counts = |category: &str| m.categories.is_empty() || m.categories.iter().any(|c| c == category);
    match m.protocol {
        ModerationProtocol::OpenAi => match serde_json::from_slice::<OpenAiAnswer>(body) {
            Ok(a) => judged(m, &a.results),
            Err(_) => Verdict::Failed("the moderation answer is not the moderations format".into()),
        },
        ModerationProtocol::Webhook => match serde_json::from_slice::<WebhookAnswer>(body) {
            Ok(a) if a.flagged && (m.categories.is_empty() || a.categories.iter().any(|c| counts(c))) => {
                Verdict::Flagged(a.categories.into_iter().filter(|c| counts(c)).collect())
            }
            Ok(_) => Verdict::Clean,
            Err(_) => Verdict::Failed("the webhook answer has no boolean `flagged`".into()),
        },
    }
}

/// The verdict over OpenAI-format `results`: flagged when one is flagged in a category that
/// counts (any, when the rule names none).
fn judged(m: &Moderation, results: &[OpenAiResult]) -> Verdict {
    let counts = |category: &str| m.categories.is_empty() || m.categories.iter().any(|c| c == category);
    let mut hit = Vec::new();
    let mut flagged = false;
    for r in results.iter().filter(|r| r.flagged) {
        let named: Vec<&String> = r.categories.iter().filter(|(_, on)| **on).map(|(c, _)| c).collect();
        if named.is_empty() && m.categories.is_empty() {
            flagged = true;
        }
        for c in named.into_iter().filter(|c| counts(c)) {
            flagged = true;
            if !hit.contains(c) {
                hit.push(c.clone());
            }
        }
    }
    if flagged {
        Verdict::Flagged(hit)
    } else {
        Verdict::Clean
    }
}

/// Ask the service about `texts`, within its timeout.
pub async fn check(
    conns: &Connections,
    opts: &UpstreamOptions,
    m: &Moderation,
    texts: &[&str],
    direction: &str,
    request_id: &str,
) -> Verdict {
    match ask(conns, opts, m, texts, direction, request_id).await {
        Ok(answer) => verdict(m, &answer),
        Err(why) => Verdict::Failed(why),
    }
}

/// Ask the service about `texts`, within its timeout: one verdict per text. An OpenAI-format
/// service answers for each input; a webhook answers for all of them at once, so its verdict
/// is each text's.
pub async fn check_each(
    conns: &Connections,
    opts: &UpstreamOptions,
    m: &Moderation,
    texts: &[&str],
    direction: &str,
    request_id: &str,
) -> Vec<Verdict> {
    let answer = match ask(conns, opts, m, texts, direction, request_id).await {
        Ok(answer) => answer,
        Err(why) => return vec![Verdict::Failed(why); texts.len()],
    };
    if m.protocol == ModerationProtocol::OpenAi {
        if let Ok(a) = serde_json::from_slice::<OpenAiAnswer>(&answer) {
            if a.results.len() == texts.len() {
                return a.results.iter().map(|r| judged(m, std::slice::from_ref(r))).collect();
            }
            let why = "the moderation answer does not have one result per input";
            return vec![Verdict::Failed(why.into()); texts.len()];
        }
    }
    vec![verdict(m, &answer); texts.len()]
}

/// One call to the service: its answer's body, or why there is none.
async fn ask(
    conns: &Connections,
    opts: &UpstreamOptions,
    m: &Moderation,
    texts: &[&str],
    direction: &str,
    request_id: &str,
) -> Result<Bytes, String> {
    let body = request_body(m, texts, direction);
    let mut peer = peer(&m.endpoint, opts);
    peer.options.read_timeout = Some(m.timeout);
    peer.options.connection_timeout = Some(m.timeout.min(opts.connect_timeout));
    peer.options.total_connection_timeout = Some(m.timeout.min(opts.connect_timeout));
    let head = super::post_json_head(&m.endpoint, "", body.len(), request_id);
    let call = async {
        let up = send(conns, &peer, &head, &body).await.map_err(|e| match e {
            UpstreamError::Timeout(_) => late(m),
            e => e.outcome().to_string(),
        })?;
        let (status, answer) = super::read_whole(conns, &peer, up, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                super::WholeError::TooLarge => "the moderation answer is too large".to_string(),
                super::WholeError::TimedOut => late(m),
                super::WholeError::Broke(kind) => kind.to_string(),
            })?;
        if !status.is_success() {
            return Err(format!("the moderation service answered {}", status.as_u16()));
        }
        Ok(answer)
    };
    match tokio::time::timeout(m.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(late(m)),
    }
}

fn late(m: &Moderation) -> String {
    format!(
        "the moderation service did not answer within {} ms",
        m.timeout.as_millis()
    )
}
