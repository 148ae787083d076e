//! The request body's shape, checked before anything is counted, booked or forwarded.
//!
//! A body is valid JSON by the time it gets here; this module says whether its values have the
//! types the OpenAI API documents, and locates the prompt (without copying it) in the same walk.
//! Each refusal names the first wrong value by its path (`messages[3].role`) in `param` and in
//! the message, in the words OpenAI uses, so an SDK user sees what to fix. Members the gateway
//! does not read are the provider's to judge and pass untouched.

use std::ops::Range;

use crate::api::Endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::json_spans::{for_each_element, for_each_member, text_of};
use crate::pipeline::body::{MessageSpans, Piece, Prompt};

/// Roles a chat message may have.
const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// The type of the JSON value that starts at `value` (the body is known to be valid JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

impl Kind {
    pub fn of(body: &[u8], value: &Range<usize>) -> Kind {
        match body.get(value.start) {
            Some(b'"') => Kind::String,
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b't' | b'f') => Kind::Boolean,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Boolean => "a boolean",
            Kind::Null => "null",
            Kind::Object => "an object",
            Kind::Array => "an array",
        }
    }
}

/// `param` is `expected` but the body has a value of kind `got`.
pub fn wrong_type(param: impl Into<String>, expected: &str, got: Kind) -> ApiError {
    let param = param.into();
    ApiError::new(
        ErrorCode::InvalidType,
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            got.name()
        ),
    )
    .at(param)
}

/// `param` is required and absent.
pub fn missing(param: impl Into<String>) -> ApiError {
    let param = param.into();
    ApiError::new(
        ErrorCode::MissingRequiredParameter,
        format!("Missing required parameter: '{param}'."),
    )
    .at(param)
}

fn empty_array(param: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidValue,
        format!(
            "Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead."
        ),
    )
    .at(param)
}

fn bad_role(param: String, value: &str) -> ApiError {
    let shown: String = value.chars().take(64).collect();
    ApiError::new(
        ErrorCode::InvalidValue,
        format!(
            "Invalid value for '{param}': '{shown}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'."
        ),
    )
    .at(param)
}

/// Check that the top-level member `name` at `value` is of one of the `allowed` kinds.
pub fn expect(body: &[u8], name: &str, value: &Range<usize>, allowed: &[Kind], expected: &str) -> Result<(), ApiError> {
    let got = Kind::of(body, value);
    if allowed.contains(&got) {
        Ok(())
    } else {
        Err(wrong_type(name, expected, got))
    }
}

/// The span of a JSON string literal's contents (inside the quotes), if `value` is a string.
fn string_contents(body: &[u8], value: &Range<usize>) -> Option<Range<usize>> {
    (Kind::of(body, value) == Kind::String && value.end >= value.start + 2).then(|| value.start + 1..value.end - 1)
}

/// Value spans of the array at `value`, in body offsets.
fn elements(body: &[u8], value: &Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let base = value.start;
    let _ = for_each_element(&body[value.clone()], |r| out.push(base + r.start..base + r.end));
    out
}

/// Members of the object at `value`, in body offsets.
fn members<'a>(body: &'a [u8], value: &Range<usize>, mut f: impl FnMut(&'a [u8], Range<usize>)) {
    let base = value.start;
    let _ = for_each_member(&body[value.clone()], |k, m| {
        f(k, base + m.value.start..base + m.value.end);
        true
    });
}

/// The prompt members of a body: the value spans of `messages`, `prompt` and `input`.
#[derive(Debug, Default)]
pub struct PromptMembers {
    pub messages: Option<Range<usize>>,
    pub prompt: Option<Range<usize>>,
    pub input: Option<Range<usize>>,
}

/// Check the prompt member the endpoint requires and locate its text.
pub fn prompt(body: &[u8], endpoint: Endpoint, found: PromptMembers) -> Result<Prompt, ApiError> {
    match endpoint {
        Endpoint::ChatCompletions => match found.messages {
            Some(list) => messages(body, &list).map(Prompt::Chat),
            None => Err(missing("messages")),
        },
        Endpoint::Completions => match found.prompt {
            Some(v) => texts(body, &v, "prompt").map(Prompt::Texts),
            None => Err(missing("prompt")),
        },
        Endpoint::Embeddings => match found.input {
            Some(v) => texts(body, &v, "input").map(Prompt::Texts),
            None => Err(missing("input")),
        },
        Endpoint::Health | Endpoint::Ready | Endpoint::Models => Ok(Prompt::None),
    }
}

/// `messages`: a non-empty array of message objects.
fn messages(body: &[u8], list: &Range<usize>) -> Result<Vec<MessageSpans>, ApiError> {
    let kind = Kind::of(body, list);
    if kind != Kind::Array {
        return Err(wrong_type("messages", "an array of message objects", kind));
    }
    let items = elements(body, list);
    if items.is_empty() {
        return Err(empty_array("messages"));
    }
    items.iter().enumerate().map(|(i, m)| message(body, i, m)).collect()
}

/// One chat message: a known `role`, and `content` as the role allows.
fn message(body: &[u8], i: usize, m: &Range<usize>) -> Result<MessageSpans, ApiError> {
    let kind = Kind::of(body, m);
    if kind != Kind::Object {
        return Err(wrong_type(format!("messages[{i}]"), "an object", kind));
    }
    let (mut role, mut content, mut name) = (None, None, None);
    members(body, m, |k, v| match k {
        b"role" => role = Some(v),
        b"content" => content = Some(v),
        b"name" => name = Some(v),
        _ => {}
    });
    let role = role.ok_or_else(|| missing(format!("messages[{i}].role")))?;
    let Some(role_text) = string_contents(body, &role) else {
        return Err(wrong_type(
            format!("messages[{i}].role"),
            "a string",
            Kind::of(body, &role),
        ));
    };
    let role_name = text_of(body, &role_text);
    if !ROLES.contains(&role_name.as_ref()) {
        return Err(bad_role(format!("messages[{i}].role"), &role_name));
    }
    let name = match name {
        Some(v) if Kind::of(body, &v) == Kind::Null => None,
        Some(v) => Some(
            string_contents(body, &v)
                .ok_or_else(|| wrong_type(format!("messages[{i}].name"), "a string", Kind::of(body, &v)))?,
        ),
        None => None,
    };
    // An assistant message may carry tool calls instead of content; every other role speaks.
    let optional = role_name == "assistant";
    let content = match content {
        None if optional => Vec::new(),
        None => return Err(missing(format!("messages[{i}].content"))),
        Some(v) => match Kind::of(body, &v) {
            Kind::Null if optional => Vec::new(),
            Kind::String => string_contents(body, &v).map(Piece::Text).into_iter().collect(),
            Kind::Array => parts(body, i, &v)?,
            other => {
                return Err(wrong_type(
                    format!("messages[{i}].content"),
                    "a string or an array of content parts",
                    other,
                ))
            }
        },
    };
    Ok(MessageSpans {
        start: m.start,
        role: Some(role_text),
        content,
        name,
    })
}

/// Content parts: objects with a string `type`; a `text` part's `text` is a string.
fn parts(body: &[u8], i: usize, list: &Range<usize>) -> Result<Vec<Piece>, ApiError> {
    let mut out = Vec::new();
    for (j, part) in elements(body, list).iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        let kind = Kind::of(body, part);
        if kind != Kind::Object {
            return Err(wrong_type(at(), "an object", kind));
        }
        let (mut kind_of_part, mut text) = (None, None);
        members(body, part, |k, v| match k {
            b"type" => kind_of_part = Some(v),
            b"text" => text = Some(v),
            _ => {}
        });
        let ty = kind_of_part.ok_or_else(|| missing(format!("{}.type", at())))?;
        let Some(ty_text) = string_contents(body, &ty) else {
            return Err(wrong_type(format!("{}.type", at()), "a string", Kind::of(body, &ty)));
        };
        if &body[ty_text] != b"text" {
            continue;
        }
        let text = text.ok_or_else(|| missing(format!("{}.text", at())))?;
        match string_contents(body, &text) {
            Some(s) => out.push(Piece::Text(s)),
            None => return Err(wrong_type(format!("{}.text", at()), "a string", Kind::of(body, &text))),
        }
    }
    Ok(out)
}

/// `prompt` / `input`: a string, a non-empty array of strings, of token ids, or of token-id arrays.
fn texts(body: &[u8], value: &Range<usize>, name: &str) -> Result<Vec<Piece>, ApiError> {
    const EXPECTED: &str = "a string, an array of strings or an array of token ids";
    match Kind::of(body, value) {
        Kind::String => return Ok(string_contents(body, value).map(Piece::Text).into_iter().collect()),
        Kind::Array => {}
        other => return Err(wrong_type(name, EXPECTED, other)),
    }
    let items = elements(body, value);
    if items.is_empty() {
        return Err(empty_array(name));
    }
    if Kind::of(body, &items[0]) == Kind::Number {
        return token_ids(body, &items, name).map(|n| vec![Piece::Tokens(n)]);
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match Kind::of(body, item) {
            Kind::String => out.extend(string_contents(body, item).map(Piece::Text)),
            Kind::Array => out.push(Piece::Tokens(token_ids(
                body,
                &elements(body, item),
                &format!("{name}[{i}]"),
            )?)),
            other => {
                return Err(wrong_type(
                    format!("{name}[{i}]"),
                    "a string or an array of token ids",
                    other,
                ))
            }
        }
    }
    Ok(out)
}

/// A list of token ids: every element a number. Returns how many.
fn token_ids(body: &[u8], items: &[Range<usize>], name: &str) -> Result<usize, ApiError> {
    for (i, item) in items.iter().enumerate() {
        let kind = Kind::of(body, item);
        if kind != Kind::Number {
            return Err(wrong_type(format!("{name}[{i}]"), "an integer token id", kind));
        }
    }
    Ok(items.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::body::parse;

    /// The refusal of `body` on `endpoint`: (code, param, message).
    fn refusal(endpoint: Endpoint, body: &str) -> (&'static str, Option<String>, String) {
        match parse(body.as_bytes(), endpoint) {
            Ok(v) => panic!("accepted {body}: {v:?}"),
            Err(e) => (e.code.as_str(), e.param, e.message),
        }
    }

    fn chat(body: &str) -> (&'static str, Option<String>, String) {
        refusal(Endpoint::ChatCompletions, body)
    }

    #[test]
    fn valid_json_of_the_wrong_shape_is_named_by_path() {
        let (code, param, msg) = chat(r#"[{"model":"m"}]"#);
        assert_eq!((code, param), ("invalid_type", None));
        assert_eq!(msg, "The request body must be a JSON object, but got an array instead.");

        let (code, param, msg) = chat(r#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!((code, param.as_deref()), ("invalid_type", Some("model")));
        assert_eq!(
            msg,
            "Invalid type for 'model': expected a string, but got a number instead."
        );

        let (_, param, msg) = chat(r#"{"model":"m","messages":"hi"}"#);
        assert_eq!(param.as_deref(), Some("messages"));
        assert!(
            msg.contains("expected an array of message objects, but got a string"),
            "{msg}"
        );

        let four = r#"{"role":"system","content":"a"},{"role":"user","content":[{"type":"text","text":"b"}]},{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"c","tool_call_id":"x"}"#;
        let cases = [
            (r#"{"role":"bot","content":"x"}"#, "invalid_value", "messages[4].role"),
            (r#"{"role":1,"content":"x"}"#, "invalid_type", "messages[4].role"),
            (r#"{"content":"x"}"#, "missing_required_parameter", "messages[4].role"),
            (
                r#"{"role":"user"}"#,
                "missing_required_parameter",
                "messages[4].content",
            ),
            (
                r#"{"role":"user","content":null}"#,
                "invalid_type",
                "messages[4].content",
            ),
            (
                r#"{"role":"user","content":{"text":"x"}}"#,
                "invalid_type",
                "messages[4].content",
            ),
            (
                r#"{"role":"user","content":["x"]}"#,
                "invalid_type",
                "messages[4].content[0]",
            ),
            (
                r#"{"role":"user","content":[{"text":"x"}]}"#,
                "missing_required_parameter",
                "messages[4].content[0].type",
            ),
            (
                r#"{"role":"user","content":[{"type":"text","text":3}]}"#,
                "invalid_type",
                "messages[4].content[0].text",
            ),
            (
                r#"{"role":"user","content":"x","name":7}"#,
                "invalid_type",
                "messages[4].name",
            ),
            (r#""just text""#, "invalid_type", "messages[4]"),
        ];
        for (fifth, want_code, want_param) in cases {
            let body = format!(r#"{{"model":"m","messages":[{four},{fifth}]}}"#);
            let (code, param, msg) = chat(&body);
            assert_eq!(
                (code, param.as_deref()),
                (want_code, Some(want_param)),
                "{fifth}: {msg}"
            );
            assert!(msg.contains(want_param), "the message names the path: {msg}");
        }

        assert_eq!(chat(r#"{"model":"m","messages":[]}"#).0, "invalid_value");
        assert_eq!(chat(r#"{"model":"m"}"#).1.as_deref(), Some("messages"));
        for (member, value) in [
            ("stream", r#""yes""#),
            ("stream_options", "true"),
            ("user", "5"),
            ("n", r#""2""#),
            ("max_tokens", "[1]"),
        ] {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"{member}":{value}}}"#);
            let (code, param, _) = chat(&body);
            assert_eq!((code, param.as_deref()), ("invalid_type", Some(member)), "{body}");
        }
        let (_, param, _) = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":"yes"}}"#,
        );
        assert_eq!(param.as_deref(), Some("stream_options.include_usage"));
    }

    #[test]
    fn prompts_and_inputs_take_texts_or_token_ids() {
        for ok in [r#""a""#, r#"["a","b"]"#, "[1,2]", "[[1],[2,3]]", r#"["a",[1]]"#] {
            let body = format!(r#"{{"model":"m","input":{ok}}}"#);
            assert!(parse(body.as_bytes(), Endpoint::Embeddings).is_ok(), "{body}");
        }
        for (bad, param) in [
            ("3", "input"),
            ("[]", "input"),
            (r#"[1,"a"]"#, "input[1]"),
            (r#"["a",{}]"#, "input[1]"),
            (r#"[[1,"x"]]"#, "input[0][1]"),
        ] {
            let body = format!(r#"{{"model":"m","input":{bad}}}"#);
            assert_eq!(refusal(Endpoint::Embeddings, &body).1.as_deref(), Some(param), "{body}");
        }
        assert_eq!(
            refusal(Endpoint::Completions, r#"{"model":"m","messages":[]}"#)
                .1
                .as_deref(),
            Some("prompt")
        );
    }

    #[test]
    fn broken_json_is_still_invalid_json() {
        for bad in ["{", r#"{"model":"m",}"#, r#"{"model":"a"} x"#, ""] {
            assert_eq!(chat(bad).0, "invalid_json", "{bad:?}");
        }
    }
}
