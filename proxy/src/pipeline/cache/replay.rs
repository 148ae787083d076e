//! A cached answer written out as the caller asked: one JSON chat completion, or an event
//! stream of chunks (a role chunk, the content in pieces, the finish, usage when the caller asked
//! for it with `stream_options.include_usage`, then `[DONE]`) that the official SDKs read as
//! any provider's stream. Usage reports the prompt as cached tokens.

use bytes::Bytes;
use serde_json::json;

use super::answer::CachedAnswer;

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

fn usage(answer: &CachedAnswer, to: &ReplayFor<'_>) -> serde_json::Value {
    json!({
        "prompt_tokens": to.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": to.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": to.prompt_tokens},
    })
}

/// The answer as a chat completion body.
pub fn json_body(answer: &CachedAnswer, to: &ReplayFor<'_>) -> Bytes {
    let body = json!({
        "id": format!("chatcmpl-cache-{}", to.entry),
        "object": "chat.completion",
        "created": answer.created,
        "model": to.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.content},
            "finish_reason": answer.finish_reason,
        }],
        "usage": usage(answer, to),
    });
    Bytes::from(body.to_string())
}

/// The answer as a chat completion event stream.
pub fn sse_body(answer: &CachedAnswer, to: &ReplayFor<'_>) -> Bytes {
    let id = format!("chatcmpl-cache-{}", to.entry);
    let mut out = String::with_capacity(answer.content.len() * 2 + 512);
    let mut chunk = |choices: serde_json::Value, usage: Option<serde_json::Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": to.model,
            "choices": choices,
        });
        if to.include_usage {
            c["usage"] = usage.unwrap_or(serde_json::Value::Null);
        }
        out.push_str("data: ");
        out.push_str(&c.to_string());
        out.push_str("\n\n");
    };
    chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        None,
    );
    let chars: Vec<char> = answer.content.chars().collect();
    for piece in chars.chunks(PIECE_CHARS) {
        let text: String = piece.iter().collect();
        chunk(
            json!([{"index": 0, "delta": {"content": text}, "finish_reason": null}]),
            None,
        );
    }
    chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": answer.finish_reason}]),
        None,
    );
    if to.include_usage {
        chunk(json!([]), Some(usage(answer, to)));
    }
    out.push_str("data: [DONE]\n\n");
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
    }
}
