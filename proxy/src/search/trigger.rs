//! When a request searches: the triggers of [`asked`] (the request's own ask, or its model's or
//! consumer's standing rule), and what the ask changes in the body sent upstream.

use std::ops::Range;

use http::HeaderMap;

use crate::config::search::{ContextSize, SearchPolicy, Trigger};
use crate::json_spans::{for_each_member, text_of};
use crate::pipeline::body::{Prompt, RequestView};

/// The request header that asks for search (`on`) or declines it (`off`).
pub const HEADER: &str = "x-tollgate-search";

/// A request's ask for search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub size: ContextSize,
    /// The `web_search_options` member, removed from what goes upstream (the gateway serves it).
    pub strip: Option<Range<usize>>,
}

/// Whether this request searches. `online`: its model name carried the search suffix.
pub fn asked(
    policy: &SearchPolicy,
    model: &str,
    consumer: Option<&str>,
    online: bool,
    view: &RequestView,
    body: &[u8],
    headers: &HeaderMap,
) -> Option<Ask> {
    if !matches!(view.prompt, Prompt::Chat(_)) {
        return None;
    }
    let trigger = policy.trigger_for(model, consumer);
    if trigger == Trigger::Never {
        return None;
    }
    let header = headers.get(HEADER).map(|v| v.as_bytes().to_ascii_lowercase());
    if header.as_deref() == Some(b"off") {
        return None;
    }
    let options = view
        .members
        .iter()
        .position(|m| &body[m.key.clone()] == b"web_search_options");
    let by_request = online || options.is_some() || header.as_deref() == Some(b"on");
    if !by_request && trigger != Trigger::Always {
        return None;
    }
    let size = options
        .and_then(|i| context_size(body, &view.members[i].value))
        .unwrap_or(policy.context_size);
    Some(Ask {
        size,
        strip: options.map(|i| member_span(&view.members, i)),
    })
}

/// `search_context_size` of a `web_search_options` object.
fn context_size(body: &[u8], value: &Range<usize>) -> Option<ContextSize> {
    let mut size = None;
    let _ = for_each_member(&body[value.clone()], |k, m| {
        if k == b"search_context_size" {
            let v = value.start + m.value.start..value.start + m.value.end;
            if v.len() >= 2 {
                size = ContextSize::parse(&text_of(body, &(v.start + 1..v.end - 1)));
            }
        }
        true
    });
    size
}

/// The bytes of member `i` with one comma beside it, so the object stays valid without it.
fn member_span(members: &[crate::json_spans::Member], i: usize) -> Range<usize> {
    let this = &members[i];
    let start = this.key.start - 1;
    match (members.get(i + 1), i.checked_sub(1).and_then(|p| members.get(p))) {
        (Some(next), _) => start..next.key.start - 1,
        (None, Some(prev)) => prev.value.end..this.value.end,
        (None, None) => start..this.value.end,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::api::Endpoint;
    use crate::pipeline::body::{parse, rewrite, Edit};

    fn policy() -> std::sync::Arc<SearchPolicy> {
        let text = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "chat"
targets = [{ provider = "p" }]

[[models]]
name = "always"
targets = [{ provider = "p" }]

[search]
models = ["chat", "always"]
always = ["always"]
engines = [{ name = "web", kind = "searxng", url = "http://127.0.0.1:9/search" }]
"#;
        crate::config::load_str(text, "t.toml", None, 1)
            .unwrap()
            .search
            .clone()
            .unwrap()
    }

    fn ask(model: &str, body: &str, header: Option<&str>) -> Option<Ask> {
        let view = parse(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert(HEADER, h.parse().unwrap());
        }
        asked(&policy(), model, None, false, &view, body.as_bytes(), &headers)
    }

    #[test]
    fn search_runs_only_when_asked_or_always_on() {
        let plain = r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(ask("chat", plain, None), None);
        assert!(ask("chat", plain, Some("on")).is_some());
        assert!(ask("always", plain, None).is_some());
        assert_eq!(ask("always", plain, Some("off")), None);
        let opts = r#"{"model":"chat","web_search_options":{"search_context_size":"high"},"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(ask("chat", opts, None).unwrap().size, ContextSize::High);
        assert_eq!(ask("other", opts, None), None, "a model search is not on for");
    }

    #[test]
    fn web_search_options_is_removed_wherever_it_stands() {
        for body in [
            r#"{"web_search_options":{},"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"chat", "web_search_options" : {"search_context_size":"low"} ,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"web_search_options":{}}"#,
        ] {
            let view = parse(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
            let a = ask("chat", body, None).unwrap();
            let strip = Edit {
                range: a.strip.unwrap(),
                bytes: Bytes::new(),
            };
            let out = rewrite(body.as_bytes(), &view, br#""m""#, false, &[strip]);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert!(
                v.get("web_search_options").is_none(),
                "{}",
                String::from_utf8_lossy(&out)
            );
            assert_eq!(v["model"], "m");
            assert_eq!(v["messages"][0]["content"], "hi");
        }
    }
}
