//! Byte spans of an object's members in a JSON text, without building a value tree.
//!
//! The gateway rewrites a request's `model` (and `stream_options`) and reads a response's
//! `usage` without re-serialising the whole document: it finds where a member's value starts and
//! ends and splices bytes. Full validation is simd-json's job; this scanner only walks structure,
//! skips strings with `memchr`, and returns an error (never panics) on anything malformed.

use std::ops::Range;

/// The text is not the JSON object this scanner expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {0}")]
pub struct SpanError(pub usize);

/// One member of an object: its raw key (between the quotes, escapes untouched) and the byte
/// range of its value in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// Members of the object that starts at the first non-space byte of `text`, in order.
/// `f` returns `false` to stop early. Returns the end offset of the object when it was walked
/// to its closing brace (or where the walk stopped).
pub fn for_each_member<'a>(text: &'a [u8], mut f: impl FnMut(&'a [u8], Member) -> bool) -> Result<usize, SpanError> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return Err(SpanError(i));
    }
    i = skip_ws(text, i + 1);
    if text.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        if text.get(i) != Some(&b'"') {
            return Err(SpanError(i));
        }
        let key_end = skip_string(text, i + 1)?;
        let key = i + 1..key_end - 1;
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            return Err(SpanError(i));
        }
        let start = skip_ws(text, i + 1);
        let end = skip_value(text, start)?;
        if !f(&text[key.clone()], Member { key, value: start..end }) {
            return Ok(end);
        }
        i = skip_ws(text, end);
        match text.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            Some(b'}') => return Ok(i + 1),
            _ => return Err(SpanError(i)),
        }
    }
}

/// Elements of the array that starts at the first non-space byte of `text`, as value spans.
pub fn for_each_element(text: &[u8], mut f: impl FnMut(std::ops::Range<usize>)) -> Result<(), SpanError> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'[') {
        return Err(SpanError(i));
    }
    i = skip_ws(text, i + 1);
    if text.get(i) == Some(&b']') {
        return Ok(());
    }
    loop {
        let end = skip_value(text, i)?;
        f(i..end);
        i = skip_ws(text, end);
        match text.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            Some(b']') => return Ok(()),
            _ => return Err(SpanError(i)),
        }
    }
}

/// The value span of the top-level member named `name` (a plain key without escapes).
pub fn find_member(text: &[u8], name: &[u8]) -> Result<Option<Range<usize>>, SpanError> {
    let mut found = None;
    for_each_member(text, |key, m| {
        if key == name {
            found = Some(m.value);
            false
        } else {
            true
        }
    })?;
    Ok(found)
}

/// Whether arrays/objects in `text` nest deeper than `limit`. Iterative, so any input is safe;
/// run before handing untrusted JSON to a recursive deserializer.
pub fn nests_deeper_than(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                match skip_string(text, i + 1) {
                    Ok(next) => i = next,
                    Err(_) => return false,
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The text of a JSON string's contents (between the quotes): borrowed when it has no escapes,
/// unescaped otherwise (empty if the escapes are invalid).
pub fn unescape(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw);
    }
    let quoted = [&b"\""[..], raw, &b"\""[..]].concat();
    serde_json::from_slice::<String>(&quoted)
        .map(std::borrow::Cow::Owned)
        .unwrap_or(std::borrow::Cow::Borrowed(""))
}

pub fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(i) {
        i += 1;
    }
    i
}

/// `i` is just past an opening quote; returns the offset just past the closing quote.
fn skip_string(text: &[u8], mut i: usize) -> Result<usize, SpanError> {
    loop {
        let rest = text.get(i..).ok_or(SpanError(i))?;
        match memchr::memchr2(b'"', b'\\', rest) {
            None => return Err(SpanError(text.len())),
            Some(off) => {
                let at = i + off;
                if text[at] == b'\\' {
                    i = at + 2;
                } else {
                    return Ok(at + 1);
                }
            }
        }
    }
}

/// Returns the offset just past the value starting at `i`.
fn skip_value(text: &[u8], i: usize) -> Result<usize, SpanError> {
    match text.get(i) {
        None => Err(SpanError(i)),
        Some(b'"') => skip_string(text, i + 1),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&b) = text.get(j) {
                match b {
                    b'"' => {
                        j = skip_string(text, j + 1)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(SpanError(text.len()))
        }
        Some(_) => {
            let mut j = i;
            while let Some(&b) = text.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            if j == i {
                Err(SpanError(i))
            } else {
                Ok(j)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(String, String)> {
        let mut out = vec![];
        let r = for_each_member(text.as_bytes(), |k, m| {
            out.push((String::from_utf8_lossy(k).into_owned(), text[m.value].to_string()));
            true
        });
        assert!(r.is_ok(), "{r:?}");
        out
    }

    #[test]
    fn finds_each_top_level_member_with_nested_values_and_escapes() {
        let text = r#" { "model" : "gpt-4o", "messages":[{"role":"user","content":"a \"}] { x"}],
            "stream":true, "n": -1.5e3, "o":{"a":[1,{"b":"}"}]}, "e\"k": null } "#;
        let m = members(text);
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["model", "messages", "stream", "n", "o", "e\\\"k"]);
        assert_eq!(m[0].1, "\"gpt-4o\"");
        assert_eq!(m[1].1, r#"[{"role":"user","content":"a \"}] { x"}]"#);
        assert_eq!(m[2].1, "true");
        assert_eq!(m[3].1, "-1.5e3");
        assert_eq!(m[4].1, r#"{"a":[1,{"b":"}"}]}"#);
        assert_eq!(m[5].1, "null");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":\"x",
            "{\"a\":[1,2",
            "{\"a\":1,,}",
            "{\"a\" 1}",
            "{\"a\":\"\\",
        ] {
            assert!(
                for_each_member(bad.as_bytes(), |_, _| true).is_err(),
                "{bad:?} accepted"
            );
        }
        assert_eq!(for_each_member(b"{}", |_, _| true), Ok(2));
    }

    #[test]
    fn nesting_depth_is_measured_without_recursion() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(nests_deeper_than(deep.as_bytes(), 128));
        let flat = format!("{{\"a\":[{}]}}", "[1],".repeat(10_000) + "[2]");
        assert!(!nests_deeper_than(flat.as_bytes(), 3));
        assert!(!nests_deeper_than(br#"{"s":"[[[[[[[[[[[[\"[[[["}"#, 2));
        assert!(nests_deeper_than(br#"{"a":{"b":{"c":1}}}"#, 2));
    }

    #[test]
    fn find_member_ignores_nested_keys() {
        let text = br#"{"choices":[{"usage":{"x":1}}],"usage":{"prompt_tokens":3}}"#;
        let r = find_member(text, b"usage").ok().flatten().unwrap_or(0..0);
        assert_eq!(&text[r], br#"{"prompt_tokens":3}"#);
    }
}
