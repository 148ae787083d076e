//! A cached answer: what a provider said, kept in a form that replays as either a JSON body or
//! an event stream, whichever the next caller asks for.
//!
//! Only plain, complete, single-choice text answers are kept: a JSON answer with one choice, or a
//! stream that reached `[DONE]`; either ending with `stop` or `length`. Tool calls, function
//! calls, content-filtered answers, errors and cut streams are not answers to reuse.

use bytes::Bytes;
use serde::Deserialize;

use crate::sse::scanner::{event_data, events};

/// What the cache stores and replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub content: String,
    pub finish_reason: String,
    pub completion_tokens: u64,
    /// When the provider answered (seconds since the epoch), replayed as `created`.
    pub created: u64,
}

impl CachedAnswer {
    /// Bytes counted against the cache's budget.
    pub fn size(&self) -> usize {
        self.content.len() + self.finish_reason.len() + 64
    }
}

#[derive(Deserialize)]
struct Json {
    #[serde(default)]
    choices: Vec<JsonChoice>,
    #[serde(default)]
    created: Option<u64>,
}

#[derive(Deserialize)]
struct JsonChoice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    delta: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<serde_json::Value>,
    #[serde(default)]
    function_call: Option<serde_json::Value>,
}

impl Message {
    fn calls_a_tool(&self) -> bool {
        let present = |v: &Option<serde_json::Value>| v.as_ref().is_some_and(|v| !v.is_null());
        present(&self.tool_calls) || present(&self.function_call)
    }
}

fn reusable(finish: Option<&str>) -> bool {
    matches!(finish, Some("stop" | "length"))
}

/// The answer of a complete JSON chat completion, if it is one to reuse.
pub fn from_json(body: &[u8], completion_tokens: u64) -> Option<CachedAnswer> {
    let json: Json = serde_json::from_slice(body).ok()?;
    let [choice] = json.choices.as_slice() else { return None };
    let message = choice.message.as_ref()?;
    if message.calls_a_tool() || !reusable(choice.finish_reason.as_deref()) {
        return None;
    }
    Some(CachedAnswer {
        content: message.content.clone()?,
        finish_reason: choice.finish_reason.clone()?,
        completion_tokens,
        created: json.created.unwrap_or(0),
    })
}

/// The answer of a complete chat completion stream, if it is one to reuse.
pub fn from_events(events_bytes: &[Bytes], completion_tokens: u64) -> Option<CachedAnswer> {
    let mut content = String::new();
    let mut finish = None;
    let mut created = 0;
    let mut done = false;
    for chunk in events_bytes {
        for range in events(chunk) {
            let data = event_data(&chunk[range]);
            if data.as_ref() == b"[DONE]" {
                done = true;
                continue;
            }
            let json: Json = serde_json::from_slice(&data).ok()?;
            created = json.created.unwrap_or(created);
            match json.choices.as_slice() {
                [] => {}
                [choice] => {
                    if let Some(delta) = &choice.delta {
                        if delta.calls_a_tool() {
                            return None;
                        }
                        content.push_str(delta.content.as_deref().unwrap_or(""));
                    }
                    if choice.finish_reason.is_some() {
                        finish = choice.finish_reason.clone();
                    }
                }
                _ => return None,
            }
        }
    }
    (done && reusable(finish.as_deref())).then(|| CachedAnswer {
        content,
        finish_reason: finish.unwrap_or_default(),
        completion_tokens,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_json_answer_is_kept_and_a_tool_call_is_not() {
        let ok = br#"{"created":7,"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#;
        assert_eq!(from_json(ok, 1).map(|a| a.content), Some("Hi".to_string()));
        let tool = br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]},"finish_reason":"tool_calls"}]}"#;
        assert_eq!(from_json(tool, 1), None);
        let filtered = br#"{"choices":[{"message":{"content":"x"},"finish_reason":"content_filter"}]}"#;
        assert_eq!(from_json(filtered, 1), None);
        let two = br#"{"choices":[{"message":{"content":"a"},"finish_reason":"stop"},{"message":{"content":"b"},"finish_reason":"stop"}]}"#;
        assert_eq!(from_json(two, 1), None);
    }

    #[test]
    fn only_a_stream_that_reached_done_is_kept() {
        let events = [
            Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n"),
            Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"llo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"),
        ];
        assert_eq!(from_events(&events, 2).map(|a| a.content), Some("Hello".to_string()));
        assert_eq!(from_events(&events[..1], 2), None, "cut before the end");
    }
}
