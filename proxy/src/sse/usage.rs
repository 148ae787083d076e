//! Token usage as providers report it, read from an SSE event or a JSON body.
//!
//! Only what holds usage is parsed: a `memmem` finds `"usage"`; `"usage":null` (sent on every
//! chunk by OpenAI when usage is requested) is skipped at once; otherwise the top-level members
//! are walked and just the usage object is read: member by member when it is plain (unescaped
//! keys, integer or null counts, as every provider writes it), else by simd-json, which reads
//! anything valid the same way. Tolerates providers that omit `total_tokens`, report cache hits
//! DeepSeek-style, or put usage on a content chunk.

use memchr::memmem;
use serde::Deserialize;

use super::scanner::event_data;
pub use crate::api::Usage;
use crate::json_spans::{for_each_member, skip_ws, top_level_member_at};

#[derive(Deserialize, Default, Debug, PartialEq, Eq)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<RawDetails>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default, Debug, PartialEq, Eq)]
struct RawDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// What one SSE event carries, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Usage and an empty `choices`: the event `include_usage` adds at the end of a stream.
    UsageOnly(Usage),
    /// Usage on an event that also carries content.
    WithUsage(Usage),
    Other,
}

/// Looks for usage in events and bodies; holds the prebuilt substring searcher.
pub struct UsageFinder {
    usage_key: memmem::Finder<'static>,
}

impl Default for UsageFinder {
    fn default() -> Self {
        UsageFinder {
            usage_key: memmem::Finder::new(b"\"usage\""),
        }
    }
}

impl UsageFinder {
    /// The process's one finder: building its searcher costs ~0.4 k instructions, too much to
    /// repeat for every response.
    pub fn shared() -> &'static UsageFinder {
        static SHARED: std::sync::LazyLock<UsageFinder> = std::sync::LazyLock::new(UsageFinder::default);
        &SHARED
    }

    /// Classify one complete SSE event (with its trailing blank line).
    pub fn inspect_event(&self, event: &[u8]) -> EventKind {
        if ends_with_null_usage(event) {
            return EventKind::Other;
        }
        self.search_event(event)
    }

    /// Classify an event by searching it for usage.
    fn search_event(&self, event: &[u8]) -> EventKind {
        if !self.may_hold_usage(event) {
            return EventKind::Other;
        }
        let data = event_data(event);
        match self.top_level(&data) {
            Some((usage, true)) => EventKind::UsageOnly(usage),
            Some((usage, false)) => EventKind::WithUsage(usage),
            None => EventKind::Other,
        }
    }

    /// Usage in a complete JSON response body.
    pub fn in_json(&self, body: &[u8]) -> Option<Usage> {
        // No `"usage"` anywhere: nothing to search for.
        let last = last_usage_key(body)?;
        // Providers write usage last, or nearly (OpenAI, then `system_fingerprint`): the last
        // `"usage"` of the body, when it is a top-level key, is read without a parse of the rest.
        if let Some(span) = top_level_member_at(body, last).filter(|span| body[span.start] == b'{') {
            return read_usage(&body[span]);
        }
        if !self.may_hold_usage(body) {
            return None;
        }
        self.top_level(body).map(|(u, _)| u)
    }

    /// Cheap pre-check: some `"usage"` key followed by something other than `null`.
    fn may_hold_usage(&self, text: &[u8]) -> bool {
        self.usage_key.find_iter(text).any(|at| {
            let i = skip_ws(text, at + 7);
            if text.get(i) != Some(&b':') {
                return false;
            }
            let j = skip_ws(text, i + 1);
            text.get(j) == Some(&b'{')
        })
    }

    /// Top-level usage and whether `choices` is present and empty.
    fn top_level(&self, json: &[u8]) -> Option<(Usage, bool)> {
        let mut usage = None;
        let mut choices_empty = false;
        for_each_member(json, |key, m| {
            match key {
                b"usage" => usage = Some(m.value),
                b"choices" => {
                    let v = &json[m.value];
                    choices_empty = v.first() == Some(&b'[') && skip_ws(v, 1) == v.len() - 1;
                }
                _ => {}
            }
            true
        })
        .ok()?;
        Some((read_usage(&json[usage?])?, choices_empty))
    }
}

/// Where the last `"usage"` of `text` starts (a vector search for its `u` from the end: near
/// the end, where usage is, a reverse substring search costs more).
fn last_usage_key(text: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'u', text)
        .find(|&u| u > 0 && text[u - 1] == b'"' && text[u..].starts_with(b"usage\""))
        .map(|u| u - 1)
}

/// The usage object (OpenAI's fields, DeepSeek's cache field).
fn read_usage(object: &[u8]) -> Option<Usage> {
    let raw = match read_plain(object) {
        Some(raw) => raw,
        None => crate::simd_parse::from_slice(object).ok()?,
    };
    let prompt = raw.prompt_tokens.unwrap_or(0);
    let completion = raw.completion_tokens.unwrap_or(0);
    let cached = raw
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .or(raw.prompt_cache_hit_tokens)
        .unwrap_or(0);
    let total = raw.total_tokens.unwrap_or(prompt.saturating_add(completion));
    Some(Usage {
        prompt,
        completion,
        total,
        cached,
    })
}

/// Whether the event's last line is a `data:` line whose JSON ends with `"usage":null}`. Then
/// the last member of the top-level object is a null usage, so the event reports none, which is
/// what searching it would conclude too (the last of duplicate keys wins there, and a JSON text
/// that does not close there is no usage either). This is the event OpenAI sends for every
/// chunk once usage is asked for, known from its last bytes.
fn ends_with_null_usage(event: &[u8]) -> bool {
    let text = event.trim_ascii_end();
    let line = memchr::memrchr(b'\n', text).map_or(text, |i| &text[i + 1..]);
    let Some(mut rest) = line.strip_prefix(b"data:") else {
        return false;
    };
    for token in [&b"}"[..], b"null", b":", b"\"usage\""] {
        match rest.trim_ascii_end().strip_suffix(token) {
            Some(before) => rest = before,
            None => return false,
        }
    }
    true
}

/// A usage object read member by member, or `None` when it is not plain: a key with an escape,
/// a count that is neither an unsigned integer nor `null`, a count given twice, or anything
/// malformed. Plain objects read the same as through serde; the rest go to simd-json.
fn read_plain(object: &[u8]) -> Option<RawUsage> {
    let mut raw = RawUsage::default();
    let mut seen = [false; 5];
    let mut plain = true;
    for_each_member(object, |key, m| {
        let value = &object[m.value];
        let (slot, at) = match key {
            b"prompt_tokens" => (&mut raw.prompt_tokens, 0),
            b"completion_tokens" => (&mut raw.completion_tokens, 1),
            b"total_tokens" => (&mut raw.total_tokens, 2),
            b"prompt_cache_hit_tokens" => (&mut raw.prompt_cache_hit_tokens, 3),
            b"prompt_tokens_details" => {
                plain = !std::mem::replace(&mut seen[4], true) && read_details(value, &mut raw.prompt_tokens_details);
                return plain;
            }
            k => {
                plain = !k.contains(&b'\\');
                return plain;
            }
        };
        plain = !std::mem::replace(&mut seen[at], true) && read_count(value, slot);
        plain
    })
    .ok()?;
    plain.then_some(raw)
}

/// `prompt_tokens_details`: `null`, or an object whose `cached_tokens` is a plain count.
fn read_details(value: &[u8], into: &mut Option<RawDetails>) -> bool {
    if value == b"null" {
        return true;
    }
    let mut details = RawDetails::default();
    let mut seen = false;
    let mut plain = true;
    let walked = for_each_member(value, |key, m| {
        plain = match key {
            b"cached_tokens" => {
                !std::mem::replace(&mut seen, true) && read_count(&value[m.value], &mut details.cached_tokens)
            }
            k => !k.contains(&b'\\'),
        };
        plain
    });
    *into = Some(details);
    walked.is_ok() && plain
}

/// A count: `null`, or an unsigned integer that fits in 64 bits.
fn read_count(value: &[u8], into: &mut Option<u64>) -> bool {
    if value == b"null" {
        *into = None;
        return true;
    }
    if value.is_empty()
        || value.len() > 20
        || !value.iter().all(u8::is_ascii_digit)
        || (value.len() > 1 && value[0] == b'0')
    {
        return false;
    }
    let n = value
        .iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
    *into = n;
    n.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn plain_usage_objects_read_as_serde_reads_them(
            counts in prop::collection::vec(prop::option::of(prop_oneof![0u64..100_000, Just(u64::MAX)]), 5),
            order in Just(vec![0usize, 1, 2, 3, 4]).prop_shuffle(),
            spaced in any::<bool>(),
            extra in any::<bool>(),
        ) {
            let names = ["prompt_tokens", "completion_tokens", "total_tokens", "prompt_cache_hit_tokens", "prompt_tokens_details"];
            let count = |c: Option<u64>| c.map_or("null".to_string(), |n| n.to_string());
            let sep = if spaced { " , " } else { "," };
            let mut members: Vec<String> = order.iter().map(|&i| {
                let v = if i == 4 { format!("{{\"audio_tokens\":0,\"cached_tokens\":{}}}", count(counts[4])) } else { count(counts[i]) };
                format!("\"{}\":{}{}", names[i], if spaced { " " } else { "" }, v)
            }).collect();
            if extra {
                members.push("\"completion_tokens_details\":{\"reasoning_tokens\":3}".to_string());
            }
            let object = format!("{{{}}}", members.join(sep));
            let by_serde: RawUsage = crate::simd_parse::from_slice(object.as_bytes()).unwrap();
            prop_assert_eq!(read_plain(object.as_bytes()), Some(by_serde));
        }
    }

    /// A JSON value that may hold `usage` keys at any depth and strings that look like them.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            (0u64..1000).prop_map(Value::from),
            prop::sample::select(vec![
                "usage",
                "\"usage\":{\"prompt_tokens\":7}",
                "say \"usage",
                "\\",
                "a\\\"usage\":{",
                "}}",
                "",
            ])
            .prop_map(Value::from),
            (0u64..50, 0u64..50).prop_map(|(p, c)| serde_json::json!({"prompt_tokens": p, "completion_tokens": c})),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["usage", "choices", "say \"usage", "x"]),
                        inner
                    ),
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn usage_read_from_the_tail_agrees_with_a_full_search(
            members in prop::collection::vec((prop::sample::select(vec!["usage", "choices", "say \"usage", "id", "system_fingerprint"]), value()), 0..6),
            spaced in any::<bool>(),
        ) {
            // Written by hand so duplicate keys stay (the last one wins, as in a parse).
            let sep = if spaced { " ,\n " } else { "," };
            let body = format!("{{{}}}", members.iter().map(|(k, v)| format!("{}:{}", serde_json::Value::from(*k), v)).collect::<Vec<_>>().join(sep));
            let f = UsageFinder::default();
            let searched = f.may_hold_usage(body.as_bytes()).then(|| f.top_level(body.as_bytes()).map(|(u, _)| u)).flatten();
            prop_assert_eq!(f.in_json(body.as_bytes()), searched, "{}", body);
        }
    }

    #[test]
    fn the_tail_path_reads_only_a_top_level_key() {
        let f = UsageFinder::default();
        let u = |p| {
            Some(Usage {
                prompt: p,
                completion: 0,
                total: p,
                cached: 0,
            })
        };
        let cases: [(&[u8], Option<Usage>); 7] = [
            (
                br#"{"choices":[],"usage":{"prompt_tokens":3},"system_fingerprint":"fp"}"#,
                u(3),
            ),
            (
                br#"{"usage":{"prompt_tokens":1},"x":{"usage":{"prompt_tokens":2}}}"#,
                u(1),
            ),
            (br#"{"x":{"usage":{"prompt_tokens":2}}}"#, None),
            (br#"{"say \"usage":{"prompt_tokens":2}}"#, None),
            (
                br#"{"usage":{"prompt_tokens":1},"a\\":"b\\\"usage\":{\"prompt_tokens\":5}"}"#,
                u(1),
            ),
            // Not read from the tail; the search reads the object and ignores what follows.
            (br#"{"usage":{"prompt_tokens":4}} trailing"#, u(4)),
            (br#"{"usage":{"prompt_tokens":4}"#, None),
        ];
        for (body, want) in cases {
            assert_eq!(f.in_json(body), want, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            top_level_member_at(cases[0].0, memchr::memmem::rfind(cases[0].0, b"\"usage\"").unwrap()),
            Some(22..41),
            "read from the tail"
        );
    }

    #[test]
    fn an_event_ending_in_null_usage_is_known_from_its_end_and_agrees_with_a_search() {
        let f = UsageFinder::default();
        let events: [&[u8]; 9] = [
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            b"data: {\"choices\":[],\"usage\" : null }\r\n\r\n",
            b"data: {\"usage\":{\"prompt_tokens\":1},\"usage\":null}\n\n",
            b"data: {\"a\":1,\ndata: \"usage\":null}\n\n",
            b"data: {\"a\":{\"usage\":null}\n\n",
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
            b"data: {\"usage\":null}\nid: 4\n\n",
            b": comment \"usage\":null}\n\n",
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"x\":{\"usage\":null}}}\n\n",
        ];
        let fast: Vec<bool> = events.iter().map(|e| ends_with_null_usage(e)).collect();
        assert_eq!(fast, [true, true, true, true, true, false, false, false, false]);
        for event in events {
            assert_eq!(
                f.inspect_event(event),
                f.search_event(event),
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }

    #[test]
    fn usage_objects_that_are_not_plain_go_to_simd_json() {
        for object in [
            &br#"{"prompt\u005ftokens":5}"#[..],
            br#"{"prompt_tokens":5.0}"#,
            br#"{"prompt_tokens":-1}"#,
            br#"{"prompt_tokens":"5"}"#,
            br#"{"prompt_tokens":05}"#,
            br#"{"prompt_tokens":18446744073709551616}"#,
            br#"{"prompt_tokens":5,"prompt_tokens":6}"#,
            br#"{"prompt_tokens_details":{"cached\u005ftokens":1}}"#,
            br#"{"prompt_tokens_details":[]}"#,
            br#"{"prompt_tokens":5"#,
        ] {
            assert_eq!(read_plain(object), None, "{}", String::from_utf8_lossy(object));
        }
        let f = UsageFinder::default();
        let escaped = br#"{"choices":[],"usage":{"prompt\u005ftokens":5,"completion_tokens":1}}"#;
        assert_eq!(f.in_json(escaped).map(|u| (u.prompt, u.total)), Some((5, 6)));
    }

    #[test]
    fn usage_only_event_is_recognised_and_null_usage_is_skipped() {
        let f = UsageFinder::default();
        let ev = b"data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n";
        assert_eq!(
            f.inspect_event(ev),
            EventKind::UsageOnly(Usage {
                prompt: 5,
                completion: 7,
                total: 12,
                cached: 2
            })
        );
        let null = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
        assert_eq!(f.inspect_event(null), EventKind::Other);
        assert_eq!(f.inspect_event(b"data: [DONE]\n\n"), EventKind::Other);
    }

    #[test]
    fn tolerates_missing_total_deepseek_cache_and_usage_on_content() {
        let f = UsageFinder::default();
        let ev = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"prompt_cache_hit_tokens\":1}}\n\n";
        assert_eq!(
            f.inspect_event(ev),
            EventKind::WithUsage(Usage {
                prompt: 3,
                completion: 4,
                total: 7,
                cached: 1
            })
        );
    }

    #[test]
    fn usage_quoted_inside_content_is_not_usage() {
        let f = UsageFinder::default();
        let ev = br#"data: {"choices":[{"delta":{"content":"say \"usage\": {\"prompt_tokens\": 9}"}}]}"#;
        assert_eq!(f.inspect_event(&[&ev[..], b"\n\n"].concat()), EventKind::Other);
        let nested = br#"{"choices":[{"message":{"usage":{"prompt_tokens":9}}}]}"#;
        assert_eq!(f.in_json(nested), None);
    }

    #[test]
    fn json_body_usage() {
        let f = UsageFinder::default();
        let body = br#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}"#;
        assert_eq!(
            f.in_json(body),
            Some(Usage {
                prompt: 10,
                completion: 2,
                total: 12,
                cached: 0
            })
        );
        let emb = br#"{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(
            f.in_json(emb),
            Some(Usage {
                prompt: 4,
                completion: 0,
                total: 4,
                cached: 0
            })
        );
    }
}
