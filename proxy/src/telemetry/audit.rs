//! Audit lines: who did what, decided how, with which result — for requests of identified
//! callers and for admin actions. Always JSON; never a key, a token or (unless the consumer
//! allows prompts to be logged) a prompt.

use crate::context::{Caller, Outcome, RequestCtx};
use crate::json_spans::write_str as json_str;

/// What an admin action did, for its audit line.
pub struct AdminAudit {
    pub action: &'static str,
    pub consumer: Option<String>,
    pub key_id: Option<String>,
    pub result: String,
}

/// The audit line of an admin action: who (the name of the admin token presented; `null` when
/// no valid token was), from where, what, when, and the result. Never a token or key.
pub fn admin_line(line: &mut Vec<u8>, stamp: &[u8], who: Option<&str>, peer: &str, a: &AdminAudit) {
    line.extend_from_slice(b"{\"timestamp\":\"");
    line.extend_from_slice(stamp);
    line.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"admin_audit\",\"who\":");
    str_or_null(line, who);
    line.extend_from_slice(b",\"peer\":");
    json_str(line, peer);
    line.extend_from_slice(b",\"action\":");
    json_str(line, a.action);
    line.extend_from_slice(b",\"consumer\":");
    str_or_null(line, a.consumer.as_deref());
    line.extend_from_slice(b",\"key_id\":");
    str_or_null(line, a.key_id.as_deref());
    line.extend_from_slice(b",\"result\":");
    json_str(line, &a.result);
    line.extend_from_slice(b",\"target\":\"tollgate::audit\"}\n");
}

/// A JSON string, or `null`.
fn str_or_null(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(v) => json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// Largest prompt excerpt written to an audit line (for consumers that allow it).
const MAX_LOGGED_PROMPT: usize = 16 * 1024;

/// The audit line of an authenticated decision: who (consumer, key id, user; never the key),
/// what (endpoint, model), the decision and why, and the tokens when known. Always JSON.
pub fn request_line(out: &mut Vec<u8>, stamp: &[u8], ctx: &RequestCtx) {
    let f = ctx.names();
    let denied = ctx.answer.outcome == Outcome::Refused && ctx.answer.status < 500;
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(stamp);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"audit\",\"request_id\":");
    json_str(out, &ctx.request_id);
    out.extend_from_slice(b",\"consumer\":");
    str_or_null(out, matches!(ctx.caller, Caller::Consumer { .. }).then_some(f.consumer));
    out.extend_from_slice(b",\"key_id\":");
    json_str(out, f.key_id);
    out.extend_from_slice(b",\"user\":");
    str_or_null(out, ctx.prompt.user.as_deref());
    out.extend_from_slice(b",\"metadata\":");
    match &ctx.caller {
        Caller::Consumer { consumer, .. } => out.extend_from_slice(consumer.metadata_json.as_bytes()),
        _ => out.extend_from_slice(b"{}"),
    }
    out.extend_from_slice(b",\"endpoint\":");
    json_str(out, ctx.endpoint.map(|e| e.name()).unwrap_or("-"));
    out.extend_from_slice(b",\"model\":");
    json_str(out, f.asked);
    let usage = ctx.answer.usage.unwrap_or_default();
    out.extend_from_slice(if denied {
        b",\"decision\":\"denied\",\"reason\":\""
    } else {
        b",\"decision\":\"allowed\",\"reason\":\""
    });
    if denied {
        out.extend_from_slice(ctx.answer.error.map_or("refused", |c| c.as_str()).as_bytes());
    }
    let mut num = itoa::Buffer::new();
    for (name, n) in [
        (&b"\",\"status\":"[..], u64::from(ctx.answer.status)),
        (b",\"prompt_tokens\":", usage.prompt),
        (b",\"completion_tokens\":", usage.completion),
        (b",\"total_tokens\":", usage.total),
    ] {
        out.extend_from_slice(name);
        out.extend_from_slice(num.format(n).as_bytes());
    }
    if let Some(body) = &ctx.prompt.logged_body {
        let cut = &body[..body.len().min(MAX_LOGGED_PROMPT)];
        out.extend_from_slice(b",\"request_body\":");
        json_str(out, &String::from_utf8_lossy(cut));
    }
    out.extend_from_slice(b",\"target\":\"tollgate::audit\"}\n");
}
