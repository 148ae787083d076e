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

use crate::api::Endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::json_spans::{for_each_member, nests_deeper_than, Member};
use crate::pipeline::shape::{self, Kind, PromptMembers};

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
    /// Where the message's object starts in the body (its `{`).
    pub start: usize,
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

impl Prompt {
    /// Call `f` with each text piece and the role of its message (`user` for `prompt`/`input`
    /// texts and for messages without a role), in order; stops at the first error.
    pub fn for_each_text<E>(
        &self,
        body: &[u8],
        mut f: impl FnMut(&str, &Range<usize>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (messages, texts): (&[MessageSpans], &[Piece]) = match self {
            Prompt::Chat(messages) => (messages, &[]),
            Prompt::Texts(texts) => (&[], texts),
            Prompt::None => (&[], &[]),
        };
        for m in messages {
            let role = m.role.as_ref().map_or(Cow::Borrowed("user"), |r| text_of(body, r));
            for piece in &m.content {
                if let Piece::Text(span) = piece {
                    f(&role, span)?;
                }
            }
        }
        for piece in texts {
            if let Piece::Text(span) = piece {
                f("user", span)?;
            }
        }
        Ok(())
    }
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

pub use crate::json_spans::text_of;

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Parse a request body for `endpoint` and check its shape (see [`shape`]): a JSON object whose
/// `model` is a string, `stream` a boolean, and whose prompt member is what the endpoint takes.
pub fn parse(body: &[u8], endpoint: Endpoint) -> Result<RequestView, ApiError> {
    if nests_deeper_than(body, MAX_NESTING) {
        return Err(ApiError::bad_json(format!("nesting deeper than {MAX_NESTING} levels")));
    }
    let fields = crate::simd_parse::from_slice::<Fields>(body);
    if let Err(e) = &fields {
        // A syntax error is reported as such; a value of the wrong type is found below, by path.
        if let Err(syntax) = simd_json::to_borrowed_value(&mut body.to_vec()) {
            return Err(ApiError::bad_json(describe(&syntax)));
        }
        if !matches!(first_byte(body), Some(b'{')) {
            let got = shape::Kind::of(body, &(skip_ws(body)..body.len()));
            return Err(ApiError::new(
                ErrorCode::InvalidType,
                format!(
                    "The request body must be a JSON object, but got {} instead.",
                    got.name()
                ),
            ));
        }
        tracing::debug!(error = %e, "body fields did not deserialize; checking shape");
    }

    // One walk over the top-level members finds every span the gateway needs.
    let mut model_span = None;
    let mut stream_options_span = None;
    let mut found = PromptMembers::default();
    let (mut max_tokens, mut max_completion_tokens, mut choices) = (None, None, None);
    let mut members = Vec::with_capacity(8);
    let mut wrong = None;
    for_each_member(body, |key, m: Member| {
        members.push(m.clone());
        let checked = match key {
            b"max_tokens" => number_or_null(body, "max_tokens", &m.value).map(|n| max_tokens = n),
            b"max_completion_tokens" => {
                number_or_null(body, "max_completion_tokens", &m.value).map(|n| max_completion_tokens = n)
            }
            b"n" => number_or_null(body, "n", &m.value).map(|n| choices = n),
            b"model" => {
                model_span = Some(m.value.clone());
                shape::expect(body, "model", &m.value, &[Kind::String], "a string")
            }
            b"stream" => shape::expect(body, "stream", &m.value, &[Kind::Boolean, Kind::Null], "a boolean"),
            b"user" => shape::expect(body, "user", &m.value, &[Kind::String, Kind::Null], "a string"),
            b"stream_options" => {
                stream_options_span = Some(m.value.clone());
                stream_options(body, &m.value)
            }
            b"messages" => {
                found.messages = Some(m.value.clone());
                Ok(())
            }
            b"prompt" => {
                found.prompt = Some(m.value.clone());
                Ok(())
            }
            b"input" => {
                found.input = Some(m.value.clone());
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = checked {
            wrong = Some(e);
            return false;
        }
        true
    })
    .map_err(ApiError::bad_json)?;
    if let Some(e) = wrong {
        return Err(e);
    }
    let fields = fields.map_err(|e| ApiError::bad_json(describe(&e)))?;
    let model = match fields.model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::missing_model()),
    };
    let model_span = model_span.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidModel,
            "The `model` key must be written without escapes.",
        )
    })?;
    let prompt = shape::prompt(body, endpoint, found)?;
    let user = fields.user.map(|mut u| {
        if let Some((cut, _)) = u.char_indices().nth(128) {
            u.truncate(cut);
        }
        u
    });
    Ok(RequestView {
        model,
        stream: fields.stream.unwrap_or(false),
        include_usage: fields.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        user,
        prompt,
        max_tokens: max_completion_tokens.or(max_tokens),
        choices: choices.unwrap_or(1).clamp(1, 128),
        members,
        model_span,
        stream_options_span,
    })
}

fn skip_ws(body: &[u8]) -> usize {
    body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len())
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.get(skip_ws(body)).copied()
}

/// A count parameter: a number (whole and non-negative, else not read) or `null`.
fn number_or_null(body: &[u8], name: &str, value: &Range<usize>) -> Result<Option<u64>, ApiError> {
    shape::expect(body, name, value, &[Kind::Number, Kind::Null], "a number")?;
    Ok(number(&body[value.clone()]))
}

/// `stream_options`: an object (whose `include_usage` is a boolean) or `null`.
fn stream_options(body: &[u8], value: &Range<usize>) -> Result<(), ApiError> {
    shape::expect(body, "stream_options", value, &[Kind::Object, Kind::Null], "an object")?;
    let mut wrong = Ok(());
    let base = value.start;
    let _ = for_each_member(&body[value.clone()], |k, m| {
        if k == b"include_usage" {
            let v = base + m.value.start..base + m.value.end;
            wrong = shape::expect(
                body,
                "stream_options.include_usage",
                &v,
                &[Kind::Boolean, Kind::Null],
                "a boolean",
            );
        }
        true
    });
    wrong
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

/// `body` with only `edits` applied (its `model` as the client sent it).
pub fn with_edits(body: &[u8], view: &RequestView, edits: &[Edit]) -> Bytes {
    rewrite(body, view, &body[view.model_span.clone()], false, edits)
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

    fn chat(body: &[u8]) -> Result<RequestView, ApiError> {
        parse(body, Endpoint::ChatCompletions)
    }

    fn status(body: &str) -> StatusCode {
        match chat(body.as_bytes()) {
            Ok(_) => StatusCode::OK,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn parses_model_stream_and_usage_option() {
        let v = chat(br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#)
            .unwrap();
        assert_eq!((v.model.as_str(), v.stream, v.include_usage), ("gpt-4o", true, true));
        let v = chat(br#"{"messages":[{"role":"user","content":"hi"}],"model":"m"}"#).unwrap();
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
        let v = chat(body).unwrap();
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

        let v = parse(br#"{"model":"m","prompt":["a","b"]}"#, Endpoint::Completions).unwrap();
        assert!(matches!(&v.prompt, Prompt::Texts(p) if p.len() == 2));
        let v = parse(br#"{"model":"m","input":[1,2,3]}"#, Endpoint::Embeddings).unwrap();
        assert_eq!(v.prompt, Prompt::Texts(vec![Piece::Tokens(3)]));
        // Members the endpoint does not read are the provider's to judge.
        let v = parse(br#"{"model":"m","messages":"odd","input":"x"}"#, Endpoint::Embeddings).unwrap();
        assert_eq!(v.prompt, Prompt::Texts(vec![Piece::Text(39..40)]));
    }

    #[test]
    fn rewrite_changes_only_the_model() {
        let body =
            br#"{ "messages":[{"role":"user","content":"\"model\":\"x\""}], "model" : "public", "temperature":0.2}"#;
        let v = chat(body).unwrap();
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
                r#"{"model":"a","input":"x","stream":true}"#,
                r#"{"stream_options":{"include_usage":true},"model":"b","input":"x","stream":true}"#,
            ),
            (
                r#"{"model":"a","input":"x","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
                r#"{"model":"b","input":"x","stream":true,"stream_options":{"x":1,"include_usage":true}}"#,
            ),
            (
                r#"{"model":"a","input":"x","stream":true,"stream_options":null}"#,
                r#"{"model":"b","input":"x","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
        ];
        for (input, want) in cases {
            let v = parse(input.as_bytes(), Endpoint::Embeddings).unwrap();
            assert!(needs_forced_usage(&v));
            let out = rewrite(input.as_bytes(), &v, br#""b""#, true, &[]);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want);
            let reparsed = parse(&out, Endpoint::Embeddings).unwrap();
            assert!(reparsed.include_usage);
        }
    }
}
