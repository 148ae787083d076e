//! What a request is, for the cache: its exact key, its namespace and its question, read off the
//! parsed view (no second parse).
//!
//! - The **exact key** hashes the effective request: the public model, the consumer when entries
//!   are per consumer, every top-level member but those that only shape delivery (`stream`,
//!   `stream_options`, `user`) in key order, and the parameter rules' edits. Two requests with
//!   the same key would be sent upstream as the same request, however they were written.
//! - The **namespace** hashes what an answer depends on besides the last question: the public
//!   model, the consumer when per consumer, every message before the last (system prompts and
//!   earlier turns), so differently instructed bots and different conversations never share, and
//!   every parameter that shapes the answer (`max_tokens`, `response_format`, `stop`, ...: all
//!   but the sampling knobs, [`SAMPLING`]) with the parameter rules' edits, so an answer cut at
//!   10 tokens or written as JSON never answers a request that asked otherwise.
//! - The **question** is the last message's text when a user wrote it.

use ring::digest::{Context, SHA256};
use tollgate_semantic::{ExactKey, Namespace};

use crate::json_spans::text_of;
use crate::pipeline::body::{Edit, Piece, Prompt, RequestView};

/// Members that change how an answer is delivered, not what it is.
const DELIVERY_ONLY: &[&[u8]] = &[b"stream", b"stream_options", b"user"];

/// Members that change how an answer is drawn, not what kind of answer it is: a question asked
/// again at another temperature may reuse a similar question's answer (they are still part of
/// the exact key, and `max_temperature` bounds what is cached at all).
const SAMPLING: &[&[u8]] = &[
    b"temperature",
    b"top_p",
    b"seed",
    b"frequency_penalty",
    b"presence_penalty",
];

/// The request as the cache reads it.
pub struct CacheKeys {
    pub exact: ExactKey,
    pub namespace: Namespace,
    pub question: Option<String>,
}

/// Read `view` of `body`; `consumer` is set when entries are kept per consumer.
pub fn keys(body: &[u8], view: &RequestView, edits: &[Edit], consumer: Option<&str>) -> CacheKeys {
    let mut exact = Context::new(&SHA256);
    let mut ns = Context::new(&SHA256);
    for ctx in [&mut exact, &mut ns] {
        field(ctx, view.model.as_bytes());
        field(ctx, consumer.unwrap_or("").as_bytes());
    }
    let mut members: Vec<(&[u8], &[u8])> = view
        .members
        .iter()
        .map(|m| (&body[m.key.clone()], &body[m.value.clone()]))
        .filter(|(k, _)| !DELIVERY_ONLY.contains(k))
        .collect();
    members.sort_unstable();
    for (k, v) in members {
        field(&mut exact, k);
        field(&mut exact, v);
        if !matches!(k, b"messages" | b"model") && !SAMPLING.contains(&k) {
            field(&mut ns, k);
            field(&mut ns, v);
        }
    }
    for e in edits {
        for ctx in [&mut exact, &mut ns] {
            field(ctx, &e.range.start.to_le_bytes());
            field(ctx, &e.bytes);
        }
    }
    let mut question = None;
    if let Prompt::Chat(messages) = &view.prompt {
        if let Some((last, earlier)) = messages.split_last() {
            for m in earlier {
                field(&mut ns, m.role.as_ref().map_or(b"" as &[u8], |r| &body[r.clone()]));
                for piece in &m.content {
                    match piece {
                        Piece::Text(r) => field(&mut ns, text_of(body, r).as_bytes()),
                        Piece::Tokens(n) => field(&mut ns, &n.to_le_bytes()),
                    }
                }
            }
            let by_user = last.role.as_ref().is_some_and(|r| &body[r.clone()] == b"user");
            let text: String = last
                .content
                .iter()
                .filter_map(|p| match p {
                    Piece::Text(r) => Some(text_of(body, r).into_owned()),
                    Piece::Tokens(_) => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            if by_user && !text.trim().is_empty() {
                question = Some(text);
            }
        }
    }
    CacheKeys {
        exact: ExactKey(digest(exact)),
        namespace: Namespace(u64::from_le_bytes(digest(ns)[..8].try_into().unwrap_or([0; 8]))),
        question,
    }
}

/// A length-prefixed field, so ("ab","c") and ("a","bc") differ.
fn field(ctx: &mut Context, bytes: &[u8]) {
    ctx.update(&(bytes.len() as u64).to_le_bytes());
    ctx.update(bytes);
}

fn digest(ctx: Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::pipeline::body::parse;

    fn of(body: &str) -> CacheKeys {
        let view = parse(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        keys(body.as_bytes(), &view, &[], None)
    }

    #[test]
    fn the_same_request_written_otherwise_has_the_same_key() {
        let a = of(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let b = of(
            r#"{"temperature":0, "stream":true, "messages":[{"role":"user","content":"hi"}],"model":"m","user":"u1"}"#,
        );
        assert_eq!(a.exact, b.exact, "member order, stream and user change nothing");
        assert_eq!(a.question.as_deref(), Some("hi"));
        let c = of(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#);
        assert_ne!(a.exact, c.exact, "another parameter is another request");
    }

    #[test]
    fn earlier_turns_and_system_prompts_make_the_namespace() {
        let plain = of(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let bot = of(
            r#"{"model":"m","messages":[{"role":"system","content":"You are a pirate"},{"role":"user","content":"hi"}]}"#,
        );
        let other_q = of(
            r#"{"model":"m","messages":[{"role":"system","content":"You are a pirate"},{"role":"user","content":"yo"}]}"#,
        );
        assert_ne!(plain.namespace, bot.namespace);
        assert_eq!(bot.namespace, other_q.namespace, "the last question is not part of it");
        let other_model = of(r#"{"model":"n","messages":[{"role":"user","content":"hi"}]}"#);
        assert_ne!(plain.namespace, other_model.namespace);
        let short = of(r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#);
        let as_json =
            of(r#"{"model":"m","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}"#);
        let warmer = of(r#"{"model":"m","temperature":0.7,"seed":3,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_ne!(plain.namespace, short.namespace, "an answer cut short is not shared");
        assert_ne!(plain.namespace, as_json.namespace, "nor one in another format");
        assert_eq!(
            plain.namespace, warmer.namespace,
            "sampling knobs do not split namespaces"
        );
        assert_ne!(plain.exact, warmer.exact);
        let assistant_last =
            of(r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#);
        assert_eq!(assistant_last.question, None);
    }
}
