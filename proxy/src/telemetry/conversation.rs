//! Conversation logging: the answer of a consumer with `log_answers`, kept as the client got it
//! (after the output rules) and written to its audit line as text, redacted
//! ([`redact`](crate::pipeline::safety::redact)). The prompt's side is
//! [`PromptFacts::logged_body`](crate::context::PromptFacts::logged_body).

use bytes::Bytes;

use crate::config::guardrails::ModelGuards;
use crate::pipeline::response::concat;
use crate::pipeline::safety::redact;
use crate::sse::completion::completion_text;
use crate::sse::scanner::{event_data, events};

/// Most answer bytes kept (as sent: a stream's framing included) for one audit line.
const MAX_KEPT: usize = 1 << 20;

/// Most text an audit line shows of an answer (or of a prompt), in bytes.
pub const MAX_LOGGED_TEXT: usize = 16 * 1024;

/// An answer's body as the client got it, by reference, until the request ends.
#[derive(Debug)]
pub struct LoggedAnswer {
    sse: bool,
    pieces: Vec<Bytes>,
    len: usize,
    /// Bytes not kept past [`MAX_KEPT`].
    cut: bool,
    /// The answer's text, redacted; set when the request ends ([`LoggedAnswer::settle`]).
    pub text: Option<String>,
    /// The tools the answer called, as a JSON array of `{"name", "arguments"}` (arguments
    /// redacted and cut as the text is); `None` when it called none.
    pub tool_calls: Option<String>,
}

/// A tool call of an answer, put together from a stream's fragments.
#[derive(Debug, Default, serde::Serialize)]
struct ToolCall {
    name: String,
    arguments: String,
}

impl LoggedAnswer {
    /// For an answer that is an event stream (`sse`) or a JSON body.
    pub fn new(sse: bool) -> Self {
        LoggedAnswer {
            sse,
            pieces: Vec::new(),
            len: 0,
            cut: false,
            text: None,
            tool_calls: None,
        }
    }

    /// Bytes that went to the client.
    pub fn push(&mut self, data: &Bytes) {
        if self.len + data.len() <= MAX_KEPT {
            self.len += data.len();
            self.pieces.push(data.clone());
        } else {
            self.cut = true;
        }
    }

    /// The request ended: the answer's generated text, redacted by the model's rules for
    /// `consumer` and cut to [`MAX_LOGGED_TEXT`] (at a character boundary, marked with `…`).
    pub fn settle(&mut self, guards: Option<&ModelGuards>, consumer: Option<&str>) {
        let body = concat(&std::mem::take(&mut self.pieces));
        let text = redact::answer(guards, consumer, completion_text(&body, self.sse));
        self.text = Some(cut(text, self.cut));
        let mut calls = tool_calls(&body, self.sse);
        for c in &mut calls {
            let arguments = redact::answer(guards, consumer, std::mem::take(&mut c.arguments));
            c.arguments = cut(arguments, false);
        }
        if !calls.is_empty() {
            self.tool_calls = serde_json::to_string(&calls).ok();
        }
    }
}

/// The tool calls of a streamed (`sse`) or JSON chat answer: `tool_calls` (by their `index`
/// in a stream, whose fragments are joined) and the older `function_call`, of every choice.
fn tool_calls(body: &[u8], sse: bool) -> Vec<ToolCall> {
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut take = |message: &serde_json::Value, joined: bool| {
        let listed = message["tool_calls"].as_array().into_iter().flatten().enumerate();
        let legacy = message.get("function_call").map(|f| (0, f));
        let fragments = listed
            .map(|(i, call)| {
                let at = call["index"].as_u64().map_or(i, |n| n as usize);
                (at, &call["function"])
            })
            .chain(legacy);
        for (at, function) in fragments {
            let at = if joined { at } else { calls.len() };
            if at >= calls.len() {
                // Bounded by what a real answer calls: an index past 128 is not a call to keep.
                if at > 128 {
                    continue;
                }
                calls.resize_with(at + 1, ToolCall::default);
            }
            let call = &mut calls[at];
            call.name.push_str(function["name"].as_str().unwrap_or_default());
            call.arguments
                .push_str(function["arguments"].as_str().unwrap_or_default());
        }
    };
    if sse {
        for range in events(body) {
            let data = event_data(&body[range]);
            if data.first() != Some(&b'{') {
                continue;
            }
            let Ok(chunk) = serde_json::from_slice::<serde_json::Value>(&data) else {
                continue;
            };
            for choice in chunk["choices"].as_array().into_iter().flatten() {
                take(&choice["delta"], true);
            }
        }
    } else if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) {
        for choice in answer["choices"].as_array().into_iter().flatten() {
            take(&choice["message"], false);
        }
    }
    calls.retain(|c| !c.name.is_empty() || !c.arguments.is_empty());
    calls
}

/// `text` within [`MAX_LOGGED_TEXT`]; `…` marks a cut (here or before).
pub fn cut(mut text: String, already_cut: bool) -> String {
    if text.len() > MAX_LOGGED_TEXT {
        let mut end = MAX_LOGGED_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    } else if already_cut {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_logged_as_its_text_and_long_answers_are_cut_at_a_character() {
        let mut a = LoggedAnswer::new(true);
        a.push(&Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        ));
        a.push(&Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"lo \\u00e9\"}}]}\n\ndata: [DONE]\n\n",
        ));
        a.settle(None, None);
        assert_eq!(a.text.as_deref(), Some("Hello é"));

        let long = "é".repeat(MAX_LOGGED_TEXT);
        let logged = cut(long, false);
        assert!(logged.len() <= MAX_LOGGED_TEXT + '…'.len_utf8());
        assert!(logged.ends_with('…'));
        assert!(logged.trim_end_matches('…').chars().all(|c| c == 'é'));
        assert_eq!(cut("short".into(), true), "short…");
    }

    #[test]
    fn a_json_answer_is_logged_as_its_message() {
        let mut a = LoggedAnswer::new(false);
        a.push(&Bytes::from_static(
            br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Mail a@b.co"}}]}"#,
        ));
        a.settle(None, None);
        assert_eq!(a.text.as_deref(), Some("Mail a@b.co"));
        assert_eq!(a.tool_calls, None);
    }

    #[test]
    fn tool_calls_are_logged_whole_from_a_stream_and_from_json() {
        let mut a = LoggedAnswer::new(true);
        for event in [
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"c2","function":{"name":"send","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]}}]}"#,
        ] {
            a.push(&Bytes::from(format!("data: {event}\n\n")));
        }
        a.push(&Bytes::from_static(b"data: [DONE]\n\n"));
        a.settle(None, None);
        assert_eq!(a.text.as_deref(), Some(""));
        assert_eq!(
            a.tool_calls.as_deref(),
            Some(r#"[{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"},{"name":"send","arguments":"{}"}]"#)
        );

        let mut j = LoggedAnswer::new(false);
        j.push(&Bytes::from_static(
            br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}"#,
        ));
        j.settle(None, None);
        assert_eq!(
            j.tool_calls.as_deref(),
            Some(r#"[{"name":"f","arguments":"{\"x\":1}"}]"#)
        );
    }
}
