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
pub fn for_each_member<'a>(text: &'a [u8], f: impl FnMut(&'a [u8], Member) -> bool) -> Result<usize, SpanError> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return Err(SpanError(i));
    }
    i = skip_ws(text, i + 1);
    if text.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    members_from(text, i, f)
}

/// Members from the key whose opening quote is at `i` to the object's closing brace, as
/// [`for_each_member`] walks them.
fn members_from<'a>(
    text: &'a [u8],
    mut i: usize,
    mut f: impl FnMut(&'a [u8], Member) -> bool,
) -> Result<usize, SpanError> {
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

/// The span of the value of a key whose opening quote is at `key` (found by a byte search, not
/// a parse), if that key is a member of the top-level object of `text`: what follows its
/// value must be the object's other members, its closing brace, then nothing. A key at any
/// deeper level is followed by more closing brackets, and a `"` that closes a string (or is
/// escaped) cannot start a key of well-formed JSON, so only the bytes after the key are read.
pub fn top_level_member_at(text: &[u8], key: usize) -> Option<Range<usize>> {
    if text.get(skip_ws(text, 0)) != Some(&b'{') || text.get(key) != Some(&b'"') {
        return None;
    }
    let escaped = text[..key].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
    if escaped {
        return None;
    }
    let mut value = None;
    let end = members_from(text, key, |_, m| {
        value.get_or_insert(m.value);
        true
    })
    .ok()?;
    (skip_ws(text, end) == text.len()).then_some(value?)
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
    if memchr::memchr(b'\\', raw).is_none() {
        return match std::str::from_utf8(raw) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(raw),
        };
    }
    let quoted = [&b"\""[..], raw, &b"\""[..]].concat();
    serde_json::from_slice::<String>(&quoted)
        .map(std::borrow::Cow::Owned)
        .unwrap_or(std::borrow::Cow::Borrowed(""))
}

/// Whether any byte of `s` must be escaped in a JSON string (control characters, `"`, `\\`,
/// DEL). Eight bytes per step: log lines carry short plain names, so the common answer, no, is
/// found in a few word operations instead of four comparisons per byte.
pub fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero exactly when the high bit of the same byte of the result is set
    // (for bytes below 0x80; higher bytes are masked out with `!x`).
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // Below 0x20: subtracting 0x20 borrows into the high bit, for ASCII bytes.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let hit = control
            | zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            | zero_byte(x ^ (ONES * 0x7f));
        if hit != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
}

/// Append `s` as a JSON string literal (quoted, escaped where it must be).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !needs_escape(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
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

/// The text of a string's contents span: borrowed when it has no escapes, unescaped otherwise.
pub fn text_of<'a>(body: &'a [u8], span: &Range<usize>) -> std::borrow::Cow<'a, str> {
    unescape(body.get(span.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_check_agrees_with_the_byte_rule() {
        let rule = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f);
        let mut texts: Vec<Vec<u8>> = vec![b"plain-model-name-gpt-4o".to_vec(), "é漢字🙂".as_bytes().to_vec()];
        for bad in [0u8, 0x1f, b'"', b'\\', 0x7f, b'\n'] {
            for at in 0..20 {
                let mut t = b"abcdefghijklmnopqrstu".to_vec();
                t[at] = bad;
                texts.push(t);
            }
        }
        // Bytes that are near a trigger but are not one.
        for near in [0x20u8, b'!', b'#', b'[', b']', 0x7e, 0x80, 0x9f, 0xa0, 0xff] {
            texts.push(vec![near; 17]);
        }
        // And random bytes, mostly plain, of every length up to 40.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..4000 {
            let t: Vec<u8> = (0..n % 41)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed.is_multiple_of(16) {
                        (seed >> 8) as u8
                    } else {
                        b'a' + (seed >> 8) as u8 % 26
                    }
                })
                .collect();
            texts.push(t);
        }
        for t in texts {
            assert_eq!(needs_escape(&t), rule(&t), "{t:?}");
        }
    }

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
