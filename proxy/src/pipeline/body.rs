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

use crate::error::ApiError;
use crate::json_spans::{for_each_member, nests_deeper_than, Member};

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
    model_span: Range<usize>,
    stream_options_span: Option<Range<usize>>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
}

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
    let mut scratch = body.to_vec();
    let fields: Fields<'_> =
        simd_json::serde::from_slice(&mut scratch).map_err(|e| ApiError::bad_json(describe(&e)))?;
    let model = match fields.model {
        Some(m) if !m.is_empty() => m.into_owned(),
        _ => return Err(ApiError::missing_model()),
    };
    let stream = fields.stream.unwrap_or(false);
    let include_usage = fields.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    let user = fields.user.map(|u| u.chars().take(128).collect());

    let mut model_span = None;
    let mut stream_options_span = None;
    for_each_member(body, |key, m: Member| {
        match key {
            b"model" => model_span = Some(m.value),
            b"stream_options" => stream_options_span = Some(m.value),
            _ => {}
        }
        true
    })
    .map_err(ApiError::bad_json)?;
    let model_span = model_span
        .ok_or_else(|| ApiError::bad_request("invalid_model", "The `model` key must be written without escapes."))?;
    Ok(RequestView {
        model,
        stream,
        include_usage,
        user,
        model_span,
        stream_options_span,
    })
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

impl Edit {
    /// Insert a member as the first of the top-level object.
    pub fn insert_member(body: &[u8], name: &str, value_json: &[u8]) -> Edit {
        let open = body.iter().position(|&b| b == b'{').unwrap_or(0);
        let mut m = Vec::with_capacity(name.len() + value_json.len() + 4);
        m.extend_from_slice(serde_json::Value::String(name.to_string()).to_string().as_bytes());
        m.push(b':');
        m.extend_from_slice(value_json);
        m.push(b',');
        Edit {
            range: open + 1..open + 1,
            bytes: Bytes::from(m),
        }
    }
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
            Err(e) => e.status,
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
