//! Content safety over arbitrary text: the detectors, the normalisation's map back to the
//! original, masking, and the output guard over the text streamed in pieces cut anywhere never
//! panic; every match maps to whole characters of the original, and a masked text is valid.
//! With output moderation (a stand-in verdict: any window holding `zz` is flagged), no `zz`
//! ever reaches the client, wherever the pieces and windows cut it.
#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate::config::Snapshot;
use tollgate::guard::deny::DenyList;
use tollgate::guard::normalize::Normalized;
use tollgate::guard::pii::PiiKinds;
use tollgate::guard::{mask, Detector, Inspected};
use tollgate::pipeline::safety::output::OutputGuard;
use tollgate::pipeline::safety::review::Batch;
use tollgate::pipeline::safety::Verdict;

const CONFIG: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "m"
targets = [{ provider = "p" }]

[[models]]
name = "w"
targets = [{ provider = "p" }]

[[guardrails]]
name = "pii"
detect = "pii"
action = "mask"
on = ["output"]
hold_back = 16
models = ["m"]

[[guardrails]]
name = "deny"
detect = "deny_list"
phrases = ["launch codes", "敏感词", "ab"]
on = ["output"]
action = "block"
models = ["m"]

[[guardrails]]
name = "emails"
detect = "pii"
kinds = ["email"]
action = "mask"
on = ["output"]
models = ["w"]

[[guardrails]]
name = "service"
detect = "moderation"
url = "http://127.0.0.1:9/moderate"
protocol = "webhook"
on = ["output"]
window = 16
hold_back = 8
action = "block"
models = ["w"]
"#;

static SNAPSHOT: LazyLock<Snapshot> =
    LazyLock::new(|| tollgate::config::load_str(CONFIG, "fuzz.toml", None, 1).unwrap_or_else(|e| panic!("{e}")));

fuzz_target!(|input: &[u8]| {
    let (cuts, rest) = input.split_at(input.len().min(3));
    let text = String::from_utf8_lossy(rest);
    let norm = Normalized::new(&text);
    for end in (0..=norm.text.len()).filter(|&e| norm.text.is_char_boundary(e)).step_by(7) {
        let r = norm.original_range(&text, 0..end);
        assert!(r.end <= text.len() && text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
    }
    let deny = DenyList::new(&["launch codes", "敏感词", "ab"]).unwrap_or_else(|e| panic!("{e}"));
    let inspected = Inspected::new(&text);
    let mut hits = Vec::new();
    for d in [
        Detector::Deny(std::sync::Arc::new(deny)),
        Detector::Pii(PiiKinds::all()),
        Detector::Injection,
    ] {
        d.find(&inspected, true, &mut hits);
    }
    for h in &hits {
        assert!(h.range.end <= text.len() && text.is_char_boundary(h.range.start) && text.is_char_boundary(h.range.end));
    }
    let _ = mask(&text, &hits);

    for model in ["m", "w"] {
        stream(model, cuts, &text);
    }
});

/// The moderation stand-in: a batch holding `zz` is flagged.
fn verdicts(batch: &Batch) -> Vec<Verdict> {
    let flagged = batch.texts.iter().any(|t| t.contains("zz"));
    batch
        .rules
        .iter()
        .map(|_| if flagged { Verdict::Flagged(Vec::new()) } else { Verdict::Clean })
        .collect()
}

fn moderate(guard: &mut OutputGuard, out: &mut Vec<Bytes>) {
    while let Some(batch) = guard.moderation_due() {
        guard.moderated(&batch, &verdicts(&batch), "fuzz", out);
    }
}

/// Stream `text` cut where `cuts` say through the output guard of `model`.
fn stream(model: &str, cuts: &[u8], text: &str) {
    let Some(guards) = SNAPSHOT.route(model).and_then(|r| SNAPSHOT.guards_of(r)) else { return };
    let Some(mut guard) = OutputGuard::new(guards, None) else { return };
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let mut out = Vec::new();
    for c in cuts.iter().chain(std::iter::once(&255u8)) {
        let to = (*c as usize * chars.len()) / 255;
        if to < at {
            continue;
        }
        let piece: String = chars[at..to].iter().collect();
        at = to;
        let event = serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        guard.on_event(Bytes::from(format!("data: {event}\n\n")), &mut out);
        moderate(&mut guard, &mut out);
    }
    guard.on_event(Bytes::from_static(b"data: [DONE]\n\n"), &mut out);
    guard.finish(&mut out);
    moderate(&mut guard, &mut out);
    let mut sent = String::new();
    for event in out.concat().split(|&b| b == b'\n').filter(|l| l.starts_with(b"data: {")) {
        let v = serde_json::from_slice::<serde_json::Value>(&event[6..]);
        assert!(v.is_ok(), "every event stays JSON");
        if let Ok(v) = v {
            sent.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    if model == "w" {
        assert!(!sent.contains("zz"), "a flagged window reached the client: {sent:?}");
    }
}
