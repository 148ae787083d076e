//! The request body, parsed once, and the bytes sent upstream.
//!
//! simd-json validates the whole document and fills a small typed view (model, stream flag,
//! usage option); [`json_spans`](crate::json_spans) finds the byte spans to splice so the
//! upstream body is the client's body with only `model` (and `stream_options`) changed — no
//! value tree, no re-serialisation, whatever the body's size.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::json_spans::{for_each_element, for_each_member, nests_deeper_than, Member};

/// Deepest array/object nesting accepted in a request body (serde_json's default limit).
pub const MAX_NESTING: usize = 128;

/// What the gateway needs to know about a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub model: String,
    pub stream: bool,
    /// The client asked for `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// The body's `user` (the end user, as the client names them), at most 128 characters.
    pub user: Option<String>,
    /// What the model will read (messages, prompt or input), as spans of the body.
    pub prompt: Prompt,
    /// The completion budget the client asked for (`max_completion_tokens`, else `max_tokens`),
    /// when it is a non-negative number.
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`), at least 1.
    pub choices: u64,
    /// The top-level members, in order (parameter rules read them without a second walk).
    pub members: Vec<Member>,
    model_span: Range<usize>,
    stream_options_span: Option<Range<usize>>,
}

/// A piece of prompt text: the span of a JSON string's contents in the body (escapes intact; see
/// [`text_of`]), or a count of token ids sent as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Range<usize>),
    Tokens(usize),
}

/// One chat message's pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpans {
    pub role: Option<Range<usize>>,
    pub content: Vec<Piece>,
    pub name: Option<Range<usize>>,
}

/// The prompt of a request, located without copying it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Prompt {
    /// `messages` of a chat request.
    Chat(Vec<MessageSpans>),
    /// `prompt` (completions) or `input` (embeddings): texts or token ids.
    Texts(Vec<Piece>),
    /// Nothing the gateway could read as a prompt.
    #[default]
    None,
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    user: Option<String>,
}

/// The span of a JSON string literal's contents (inside the quotes), if `value` is a string.
fn string_contents(body: &[u8], value: Range<usize>) -> Option<Range<usize>> {
    (body.get(value.start) == Some(&b'"') && value.end >= value.start + 2).then(|| value.start + 1..value.end - 1)
}

/// Value spans of the array at `value`, in body offsets (empty if it is not an array).
fn elements(body: &[u8], value: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let base = value.start;
    let _ = for_each_element(&body[value], |r| out.push(base + r.start..base + r.end));
    out
}

/// Members of the object at `value` by name, in body offsets.
fn members<'a>(body: &'a [u8], value: Range<usize>, mut f: impl FnMut(&'a [u8], Range<usize>)) {
    let base = value.start;
    let _ = for_each_member(&body[value], |k, m| {
        f(k, base + m.value.start..base + m.value.end);
        true
    });
}

/// `prompt` / `input`: a string, strings, token ids, or lists of token ids.
fn text_pieces(body: &[u8], value: Range<usize>) -> Vec<Piece> {
    if let Some(s) = string_contents(body, value.clone()) {
        return vec![Piece::Text(s)];
    }
    let items = elements(body, value);
    if items
        .iter()
        .all(|r| body.get(r.start).is_some_and(|b| b.is_ascii_digit()))
        && !items.is_empty()
    {
        return vec![Piece::Tokens(items.len())];
    }
    items
        .into_iter()
        .filter_map(|r| match body.get(r.start) {
            Some(b'"') => string_contents(body, r).map(Piece::Text),
            Some(b'[') => Some(Piece::Tokens(elements(body, r).len())),
            _ => None,
        })
        .collect()
}

/// Locate the prompt (messages, prompt or input) without copying it. Lenient: a shape the
/// gateway does not know is no prompt, not an error; the provider judges the request.
/// `messages`, `prompt` and `input` are the value spans of those top-level members, if present.
fn prompt_spans(
    body: &[u8],
    messages: Option<Range<usize>>,
    prompt: Option<Range<usize>>,
    input: Option<Range<usize>>,
) -> Prompt {
    if let Some(list) = messages.filter(|v| body.get(v.start) == Some(&b'[')) {
        let mut out = Vec::new();
        for m in elements(body, list)
            .into_iter()
            .filter(|r| body.get(r.start) == Some(&b'{'))
        {
            let mut spans = MessageSpans {
                role: None,
                content: Vec::new(),
                name: None,
            };
            members(body, m, |k, v| match k {
                b"role" => spans.role = string_contents(body, v),
                b"name" => spans.name = string_contents(body, v),
                b"content" => {
                    if let Some(s) = string_contents(body, v.clone()) {
                        spans.content.push(Piece::Text(s));
                    } else {
                        for part in elements(body, v)
                            .into_iter()
                            .filter(|r| body.get(r.start) == Some(&b'{'))
                        {
                            members(body, part, |pk, pv| {
                                if pk == b"text" {
                                    if let Some(s) = string_contents(body, pv) {
                                        spans.content.push(Piece::Text(s));
                                    }
                                }
                            });
                        }
                    }
                }
                _ => {}
            });
            out.push(spans);
        }
        return Prompt::Chat(out);
    }
    match prompt.or(input) {
        Some(v) if matches!(body.get(v.start), Some(b'"' | b'[')) => Prompt::Texts(text_pieces(body, v)),
        _ => Prompt::None,
    }
}

pub use crate::json_spans::text_of;

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Parse and validate a request body.
pub fn parse(body: &[u8]) -> Result<RequestView, ApiError> {
    if nests_deeper_than(body, MAX_NESTING) {
        return Err(ApiError::bad_json(format!("nesting deeper than {MAX_NESTING} levels")));
    }
    let fields: Fields = crate::simd_parse::from_slice(body).map_err(|e| ApiError::bad_json(describe(&e)))?;
    let model = match fields.model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::missing_model()),
    };
    let stream = fields.stream.unwrap_or(false);
    let include_usage = fields.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    let user = fields.user.map(|mut u| {
        if let Some((cut, _)) = u.char_indices().nth(128) {
            u.truncate(cut);
        }
        u
    });

    // One walk over the top-level members finds every span the gateway needs.
    let mut model_span = None;
    let mut stream_options_span = None;
    let (mut messages, mut prompt, mut input) = (None, None, None);
    let (mut max_tokens, mut max_completion_tokens, mut choices) = (None, None, None);
    let mut members = Vec::with_capacity(8);
    for_each_member(body, |key, m: Member| {
        members.push(m.clone());
        match key {
            b"max_tokens" => max_tokens = number(&body[m.value]),
            b"max_completion_tokens" => max_completion_tokens = number(&body[m.value]),
            b"n" => choices = number(&body[m.value]),
            b"model" => model_span = Some(m.value),
            b"stream_options" => stream_options_span = Some(m.value),
            b"messages" => messages = Some(m.value),
            b"prompt" => prompt = Some(m.value),
            b"input" => input = Some(m.value),
            _ => {}
        }
        true
    })
    .map_err(ApiError::bad_json)?;
    let prompt = prompt_spans(body, messages, prompt, input);
    let model_span = model_span.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidModel,
            "The `model` key must be written without escapes.",
        )
    })?;
    Ok(RequestView {
        model,
        stream,
        include_usage,
        user,
        prompt,
        max_tokens: max_completion_tokens.or(max_tokens),
        choices: choices.unwrap_or(1).clamp(1, 128),
        members,
        model_span,
        stream_options_span,
    })
}

/// A JSON number that is a whole count (`256`, `256.0`), else `None`.
pub fn number(json: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(json).ok()?.parse::<f64>().ok()?;
    (v.is_finite() && v >= 0.0).then(|| v.min(u64::MAX as f64) as u64)
}

fn describe(e: &simd_json::Error) -> String {
    // simd-json's messages name the problem and the byte index; keep them short.
    let s = e.to_string();
    if s.contains("missing field") || s.contains("invalid type") || s.contains("duplicate field") {
        return s;
    }
    if matches!(e.error(), simd_json::ErrorType::ExpectedMap) {
        return "the body must be a JSON object".to_string();
    }
    s
}

/// Whether the gateway must ask upstream for usage the client did not ask for (and then strip
/// the usage-only event from the stream the client sees).
pub fn needs_forced_usage(view: &RequestView) -> bool {
    view.stream && !view.include_usage
}

/// One splice into a body: replace `range` with `bytes` (an empty range inserts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub bytes: Bytes,
}

/// The body to send upstream: `model` replaced by `target_model_json` (a JSON string literal),
/// `stream_options.include_usage` set to true when `force_usage`, and the policy's `edits`.
pub fn rewrite(body: &[u8], view: &RequestView, target_model_json: &[u8], force_usage: bool, edits: &[Edit]) -> Bytes {
    let mut all: Vec<(Range<usize>, Cow<'_, [u8]>)> = Vec::with_capacity(2 + edits.len());
    all.push((view.model_span.clone(), Cow::Borrowed(target_model_json)));
    if force_usage {
        match &view.stream_options_span {
            Some(span) => all.push((span.clone(), Cow::Owned(stream_options_with_usage(&body[span.clone()])))),
            None => {
                // Insert as the first member: the object has at least `model`, so a comma follows.
                let open = body.iter().position(|&b| b == b'{').unwrap_or(0);
                all.push((
                    open + 1..open + 1,
                    Cow::Borrowed(br#""stream_options":{"include_usage":true},"#),
                ));
            }
        }
    }
    all.extend(edits.iter().map(|e| (e.range.clone(), Cow::Borrowed(&e.bytes[..]))));
    all.sort_by_key(|(r, _)| r.start);
    let extra: usize = all.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (range, bytes) in &all {
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(bytes);
        at = range.end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

/// `stream_options` (an object or `null`) with `include_usage: true`, other members kept.
fn stream_options_with_usage(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 24);
    out.push(b'{');
    let _ = for_each_member(value, |key, m| {
        if key != b"include_usage" {
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            out.extend_from_slice(&value[m.value]);
            out.push(b',');
        }
        true
    });
    out.extend_from_slice(br#""include_usage":true}"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn status(body: &str) -> StatusCode {
        match parse(body.as_bytes()) {
            Ok(_) => StatusCode::OK,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn parses_model_stream_and_usage_option() {
        let v = parse(br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#)
            .unwrap();
        assert_eq!((v.model.as_str(), v.stream, v.include_usage), ("gpt-4o", true, true));
        let v = parse(br#"{"messages":[{"role":"user","content":"hi"}],"model":"m"}"#).unwrap();
        assert_eq!((v.stream, v.include_usage), (false, false));
    }

    #[test]
    fn malformed_missing_and_mistyped_bodies_are_400() {
        for bad in [
            "",
            "{",
            "[1]",
            "null",
            r#"{"model":1}"#,
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"a"} x"#,
            r#"{"stream":true}"#,
            r#"{"model":""}"#,
        ] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn the_prompt_is_located_in_messages_parts_prompt_and_input() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"be \"brief\""},{"role":"user","name":"bob","content":[{"type":"text","text":"one"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"two"}]},{"role":"assistant","content":null,"tool_calls":[]}]}"#;
        let v = parse(body).unwrap();
        let Prompt::Chat(msgs) = &v.prompt else {
            panic!("{:?}", v.prompt)
        };
        assert_eq!(msgs.len(), 3);
        assert_eq!(text_of(body, msgs[0].role.as_ref().unwrap()), "system");
        let Piece::Text(t) = &msgs[0].content[0] else { panic!() };
        assert_eq!(text_of(body, t), "be \"brief\"", "escapes are undone");
        let texts: Vec<Cow<'_, str>> = msgs[1]
            .content
            .iter()
            .map(|p| match p {
                Piece::Text(r) => text_of(body, r),
                Piece::Tokens(_) => Cow::Borrowed(""),
            })
            .collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(text_of(body, msgs[1].name.as_ref().unwrap()), "bob");
        assert!(msgs[2].content.is_empty());

        let v = parse(br#"{"model":"m","prompt":["a","b"]}"#).unwrap();
        assert!(matches!(&v.prompt, Prompt::Texts(p) if p.len() == 2));
        let v = parse(br#"{"model":"m","input":[1,2,3]}"#).unwrap();
        assert_eq!(v.prompt, Prompt::Texts(vec![Piece::Tokens(3)]));
        // Shapes the gateway does not know are not an error: the provider decides.
        let v = parse(br#"{"model":"m","messages":"odd","prompt":{"x":1}}"#).unwrap();
        assert_eq!(v.prompt, Prompt::None);
    }

    #[test]
    fn rewrite_changes_only_the_model() {
        let body =
            br#"{ "messages":[{"role":"user","content":"\"model\":\"x\""}], "model" : "public", "temperature":0.2}"#;
        let v = parse(body).unwrap();
        let out = rewrite(body, &v, br#""provider-name""#, false, &[]);
        assert_eq!(
            &out[..],
            br#"{ "messages":[{"role":"user","content":"\"model\":\"x\""}], "model" : "provider-name", "temperature":0.2}"#
        );
    }

    #[test]
    fn forced_usage_is_added_or_merged_and_the_result_stays_valid_json() {
        let cases: [(&str, &str); 3] = [
            (
                r#"{"model":"a","stream":true}"#,
                r#"{"stream_options":{"include_usage":true},"model":"b","stream":true}"#,
            ),
            (
                r#"{"model":"a","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
                r#"{"model":"b","stream":true,"stream_options":{"x":1,"include_usage":true}}"#,
            ),
            (
                r#"{"model":"a","stream":true,"stream_options":null}"#,
                r#"{"model":"b","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
        ];
        for (input, want) in cases {
            let v = parse(input.as_bytes()).unwrap();
            assert!(needs_forced_usage(&v));
            let out = rewrite(input.as_bytes(), &v, br#""b""#, true, &[]);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want);
            let reparsed = parse(&out).unwrap();
            assert!(reparsed.include_usage);
        }
    }
}
