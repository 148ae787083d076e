//! Property tests of the parsers that see untrusted bytes: the JSON member scanner, the body
//! rewrite, and the SSE event splitter with the response chain.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tollgate::api::Endpoint;
use tollgate::json_spans::for_each_member;
use tollgate::pipeline::body;
use tollgate::pipeline::response::{CountCompletion, ResponseChain};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        // Quarters are exact in binary: no float round-trip noise from the reference parser.
        (-4_000_000i64..4_000_000).prop_map(|n| json!(n as f64 / 4.0)),
        ".{0,12}".prop_map(Value::String),
        "[\"\\\\{}\\[\\]:,\\u{1}\\u{7f}é🙂]{0,8}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_\"\\\\]{1,8}", value(), 0..8).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn member_spans_match_a_real_json_parser(obj in object(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&obj).unwrap() } else { serde_json::to_string(&obj).unwrap() };
        let mut seen = Map::new();
        for_each_member(text.as_bytes(), |key, m| {
            let key: String = serde_json::from_slice(&[b"\"", key, b"\""].concat()).unwrap();
            let value: Value = serde_json::from_slice(&text.as_bytes()[m.value]).unwrap();
            seen.insert(key, value);
            true
        }).unwrap();
        prop_assert_eq!(seen, obj);
    }

    #[test]
    fn the_member_scanner_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = for_each_member(&bytes, |_, _| true);
        let _ = tollgate::json_spans::nests_deeper_than(&bytes, 8);
        let _ = body::parse(&bytes, Endpoint::ChatCompletions);
    }

    #[test]
    fn rewrite_changes_the_model_and_keeps_everything_else(mut obj in object(), stream in any::<bool>(), target in "[a-zA-Z0-9./\"-]{1,20}") {
        obj.insert("model".into(), json!("public"));
        obj.insert("stream".into(), json!(stream));
        obj.remove("stream_options");
        obj.insert("input".into(), json!("some text"));
        // Members whose types are checked (a wrong type is a 400, tested elsewhere).
        for checked in ["user", "n", "max_tokens", "max_completion_tokens"] {
            obj.remove(checked);
        }
        let text = serde_json::to_string(&obj).unwrap();
        let view = body::parse(text.as_bytes(), Endpoint::Embeddings).unwrap();
        let force = body::needs_forced_usage(&view);
        let target_json = serde_json::to_string(&target).unwrap();
        let out = body::rewrite(text.as_bytes(), &view, target_json.as_bytes(), force, &[]);
        let mut got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(got.remove("model"), Some(json!(target)));
        if force {
            prop_assert_eq!(got.remove("stream_options"), Some(json!({"include_usage": true})));
        }
        obj.remove("model");
        prop_assert_eq!(got, obj);
    }

    #[test]
    fn sse_tap_output_is_the_input_and_usage_is_found_whatever_the_cuts(
        contents in prop::collection::vec(".{0,30}", 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        crlf in any::<bool>(),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut stream = String::new();
        for c in &contents {
            let ev = json!({"choices": [{"delta": {"content": c}}], "usage": null});
            stream.push_str(&format!("data: {ev}{nl}{nl}"));
        }
        stream.push_str(&format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":{}}}}}{nl}{nl}", contents.len()));
        stream.push_str(&format!("data: [DONE]{nl}{nl}"));
        let bytes = stream.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chain = ResponseChain::new(true, true, false, CountCompletion::No);
        let mut out = Vec::new();
        let mut at = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            chain.push(Bytes::copy_from_slice(&bytes[at..p]), &mut out);
            at = p;
        }
        let learnt = chain.finish(&mut out);
        prop_assert_eq!(out.concat(), bytes.to_vec());
        let usage = learnt.usage.unwrap();
        prop_assert_eq!(usage.completion, contents.len() as u64);
        prop_assert_eq!(usage.total, 3 + contents.len() as u64);
    }
}
