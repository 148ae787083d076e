//! Audit lines: who did what, decided how, with which result — for requests of identified
//! callers and for admin actions, in the process's log format; never a key, a token or (unless
//! the consumer allows prompts to be logged) a prompt.

use super::conversation;
use super::line::Line;
use super::logging::LogFormat;
use crate::context::{Caller, GuardEvent, Outcome, RequestCtx};

/// What an admin action did, for its audit line.
pub struct AdminAudit {
    pub action: &'static str,
    pub consumer: Option<String>,
    pub key_id: Option<String>,
    pub result: String,
}

/// The audit line of an admin action: who (the name of the admin token presented; `null` when
/// no valid token was), from where, what, when, and the result. Never a token or key.
pub fn admin_line(out: &mut Vec<u8>, format: LogFormat, stamp: &[u8], who: Option<&str>, peer: &str, a: &AdminAudit) {
    Line::start(out, format, stamp, "tollgate::audit", "admin_audit")
        .opt_str("who", who)
        .str("peer", peer)
        .str("action", a.action)
        .opt_str("consumer", a.consumer.as_deref())
        .opt_str("key_id", a.key_id.as_deref())
        .str("result", &a.result)
        .end();
}

/// The audit line of an authenticated decision: who (consumer, key id, user, client address;
/// never the key), what (endpoint, model), the decision and why, and the tokens when known.
pub fn request_line(out: &mut Vec<u8>, format: LogFormat, stamp: &[u8], ctx: &RequestCtx) {
    let f = ctx.names();
    let denied = ctx.answer.outcome == Outcome::Refused && ctx.answer.status < 500;
    let usage = ctx.answer.usage.unwrap_or_default();
    let mut line = Line::start(out, format, stamp, "tollgate::audit", "audit");
    line.str("request_id", &ctx.request_id)
        .opt_str(
            "consumer",
            matches!(ctx.caller, Caller::Consumer { .. }).then_some(f.consumer),
        )
        .str("key_id", f.key_id)
        .opt_str("user", ctx.prompt.user.as_deref())
        .addr("client_ip", ctx.client_ip)
        .json(
            "metadata",
            match &ctx.caller {
                Caller::Consumer { consumer, .. } => consumer.metadata_json.as_bytes(),
                _ => b"{}",
            },
        )
        .str("endpoint", ctx.endpoint.map(|e| e.name()).unwrap_or("-"))
        .str("model", f.asked)
        .str("decision", if denied { "denied" } else { "allowed" })
        .str(
            "reason",
            if denied {
                ctx.answer.error.map_or("refused", |c| c.as_str())
            } else {
                ""
            },
        )
        .uint("status", u64::from(ctx.answer.status))
        .uint("prompt_tokens", usage.prompt)
        .uint("completion_tokens", usage.completion)
        .uint("total_tokens", usage.total);
    if let Some(body) = &ctx.prompt.logged_body {
        let head = &body[..body.len().min(conversation::MAX_LOGGED_TEXT + 1)];
        let text = String::from_utf8_lossy(head).into_owned();
        line.str("request_body", &conversation::cut(text, false));
    }
    if let Some(answer) = ctx.answer.logged.as_deref() {
        if let Some(text) = &answer.text {
            line.str("answer", text);
        }
        if let Some(calls) = &answer.tool_calls {
            line.json("answer_tool_calls", calls.as_bytes());
        }
    }
    line.end();
}

/// The audit line of a content safety event: who, which rule and risk type, which way and what
/// was done; never the matched text.
pub fn guard_line(out: &mut Vec<u8>, format: LogFormat, stamp: &[u8], ctx: &RequestCtx, event: &GuardEvent) {
    let f = ctx.names();
    let mut line = Line::start(out, format, stamp, "tollgate::audit", "guardrail");
    line.str("request_id", &ctx.request_id)
        .opt_str(
            "consumer",
            matches!(ctx.caller, Caller::Consumer { .. }).then_some(f.consumer),
        )
        .str("key_id", f.key_id)
        .addr("client_ip", ctx.client_ip)
        .str("model", f.asked)
        .str("direction", event.direction.name())
        .str("rule", &event.rule.name)
        .str("risk", event.risk)
        .opt_str("heuristic", event.heuristic)
        .str("action", event.action.name())
        .uint("matches", u64::from(event.count));
    line.end();
}
