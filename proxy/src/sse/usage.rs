//! Token usage as providers report it, read from an SSE event or a JSON body.
//!
//! Only what holds usage is parsed: a `memmem` finds `"usage"`; `"usage":null` (sent on every
//! chunk by OpenAI when usage is requested) is skipped at once; otherwise the top-level members
//! are walked and just the usage object is handed to simd-json. Tolerates providers that omit
//! `total_tokens`, report cache hits DeepSeek-style, or put usage on a content chunk.

use memchr::memmem;
use serde::Deserialize;

use super::scanner::event_data;
use crate::json_spans::{for_each_member, skip_ws};

/// Tokens of one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached: u64,
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
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
    /// Classify one complete SSE event (with its trailing blank line).
    pub fn inspect_event(&self, event: &[u8]) -> EventKind {
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
        let span = usage?;
        let raw: RawUsage = crate::simd_parse::from_slice(&json[span]).ok()?;
        let prompt = raw.prompt_tokens.unwrap_or(0);
        let completion = raw.completion_tokens.unwrap_or(0);
        let cached = raw
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .or(raw.prompt_cache_hit_tokens)
            .unwrap_or(0);
        let total = raw.total_tokens.unwrap_or(prompt + completion);
        Some((
            Usage {
                prompt,
                completion,
                total,
                cached,
            },
            choices_empty,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
