//! A cached answer written out as the caller asked: one JSON chat completion, or an event
//! stream of chunks (a role chunk, the content in pieces, the finish, usage when the caller asked
//! for it with `stream_options.include_usage`, then `[DONE]`) that the official SDKs read as
//! any provider's stream. Usage reports the prompt as cached tokens.

use std::io::Write as _;

use bytes::Bytes;

use super::answer::CachedAnswer;
use crate::json_spans::write_str;

/// Characters of content per streamed chunk.
const PIECE_CHARS: usize = 24;

/// What the replay needs besides the answer.
pub struct ReplayFor<'a> {
    /// The public model the caller asked for.
    pub model: &'a str,
    /// The entry's id, in the response id.
    pub entry: u64,
    pub prompt_tokens: u64,
    pub include_usage: bool,
}

/// The usage object: the prompt counted as cached.
fn write_usage(out: &mut Vec<u8>, answer: &CachedAnswer, to: &ReplayFor<'_>) {
    let _ = write!(
        out,
        r#"{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{t},"prompt_tokens_details":{{"cached_tokens":{p}}}}}"#,
        p = to.prompt_tokens,
        c = answer.completion_tokens,
        t = to.prompt_tokens + answer.completion_tokens,
    );
}

/// `"id":…,"object":…,"created":…,"model":…,` of every body and chunk.
fn write_head(out: &mut Vec<u8>, object: &str, answer: &CachedAnswer, to: &ReplayFor<'_>) {
    let _ = write!(
        out,
        r#"{{"id":"chatcmpl-cache-{}","object":"{object}","created":{},"model":"#,
        to.entry, answer.created
    );
    write_str(out, to.model);
}

/// The answer as a chat completion body (members in the order providers send them; written
/// directly, with no value tree: a hit costs less than forwarding).
pub fn json_body(answer: &CachedAnswer, to: &ReplayFor<'_>) -> Bytes {
    let mut out = Vec::with_capacity(answer.content.len() + 384);
    write_head(&mut out, "chat.completion", answer, to);
    out.extend_from_slice(br#","choices":[{"index":0,"message":{"role":"assistant","content":"#);
    write_str(&mut out, &answer.content);
    out.extend_from_slice(br#"},"finish_reason":"#);
    write_str(&mut out, &answer.finish_reason);
    out.extend_from_slice(br#"}],"usage":"#);
    write_usage(&mut out, answer, to);
    out.push(b'}');
    Bytes::from(out)
}

/// The answer as a chat completion event stream.
pub fn sse_body(answer: &CachedAnswer, to: &ReplayFor<'_>) -> Bytes {
    let mut out = Vec::with_capacity(answer.content.len() * 2 + 1024);
    let usage_null: &[u8] = if to.include_usage { br#","usage":null"# } else { b"" };
    let chunk = |out: &mut Vec<u8>, choices: &dyn Fn(&mut Vec<u8>), usage: &[u8]| {
        out.extend_from_slice(b"data: ");
        write_head(out, "chat.completion.chunk", answer, to);
        out.extend_from_slice(br#","choices":"#);
        choices(out);
        out.extend_from_slice(usage);
        out.extend_from_slice(b"}\n\n");
    };
    chunk(
        &mut out,
        &|o| o.extend_from_slice(br#"[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#),
        usage_null,
    );
    let mut rest = answer.content.as_str();
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(PIECE_CHARS).map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(cut);
        chunk(
            &mut out,
            &|o| {
                o.extend_from_slice(br#"[{"index":0,"delta":{"content":"#);
                write_str(o, piece);
                o.extend_from_slice(br#"},"finish_reason":null}]"#);
            },
            usage_null,
        );
        rest = tail;
    }
    chunk(
        &mut out,
        &|o| {
            o.extend_from_slice(br#"[{"index":0,"delta":{},"finish_reason":"#);
            write_str(o, &answer.finish_reason);
            o.extend_from_slice(b"}]");
        },
        usage_null,
    );
    if to.include_usage {
        let mut usage = br#","usage":"#.to_vec();
        write_usage(&mut usage, answer, to);
        chunk(&mut out, &|o| o.extend_from_slice(b"[]"), &usage);
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::cache::answer::from_events;

    #[test]
    fn a_replayed_stream_reads_back_as_the_same_answer() {
        let answer = CachedAnswer {
            content: "Refunds reach your card in 5–7 days. 退款需要五到七天。".to_string(),
            finish_reason: "stop".to_string(),
            completion_tokens: 20,
            created: 1,
        };
        let to = ReplayFor {
            model: "gpt",
            entry: 3,
            prompt_tokens: 9,
            include_usage: true,
        };
        let sse = sse_body(&answer, &to);
        assert_eq!(from_events(std::slice::from_ref(&sse), 20), Some(answer.clone()));
        assert!(std::str::from_utf8(&sse).unwrap().contains("\"cached_tokens\":9"));
        let body: serde_json::Value = serde_json::from_slice(&json_body(&answer, &to)).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], answer.content.as_str());
        assert_eq!(body["usage"]["total_tokens"], 29);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 9);
        assert_eq!(
            (body["id"].as_str(), body["model"].as_str()),
            (Some("chatcmpl-cache-3"), Some("gpt"))
        );
        let quoted = CachedAnswer {
            content: "He said \"hi\"\n\tand left\\ \u{1}".to_string(),
            ..answer.clone()
        };
        let to_model = ReplayFor { model: "a\"b", ..to };
        let body: serde_json::Value = serde_json::from_slice(&json_body(&quoted, &to_model)).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], quoted.content.as_str());
        assert_eq!(body["model"], "a\"b");
        let sse = sse_body(&quoted, &to_model);
        assert_eq!(from_events(std::slice::from_ref(&sse), 20), Some(quoted.clone()));
        for event in std::str::from_utf8(&sse)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
        {
            let data = event.strip_prefix("data: ").unwrap();
            if data != "[DONE]" {
                let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
                assert!(
                    chunk.get("usage").is_some(),
                    "usage: null on every chunk when asked for"
                );
            }
        }
    }
}
