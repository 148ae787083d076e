//! Our counts against the reference implementations, on a corpus that ships with the tests
//! and on random strings. Every count must be equal.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::OnceLock;

use proptest::prelude::*;
use tollgate_tokenize::Tokenizer;

fn corpus() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    // Generated edge cases: long runs, whitespace runs, nothing at all.
    out.push(("repeated-a".into(), "a".repeat(20_000)));
    out.push(("repeated-space".into(), " ".repeat(5_000)));
    out.push(("repeated-newline".into(), "\n".repeat(3_000)));
    out.push(("repeated-cjk".into(), "好".repeat(5_000)));
    out.push(("repeated-emoji".into(), "🙂".repeat(2_000)));
    out.push((
        "mixed-whitespace".into(),
        " \t\n \r\n\t\t  \u{a0} \u{3000}x ".repeat(500),
    ));
    out.push(("digits".into(), "1234567890".repeat(500)));
    out.push(("empty".into(), String::new()));
    out
}

/// The reference encoders, loaded once (loading a rank file is far slower than counting).
fn reference(name: &str) -> &'static tiktoken_rs::CoreBPE {
    static O200K: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    static CL100K: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    match name {
        "o200k_base" => O200K.get_or_init(|| tiktoken_rs::o200k_base().unwrap()),
        _ => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().unwrap()),
    }
}

#[test]
fn the_built_in_encodings_use_the_fast_pipeline() {
    assert!(
        matches!(Tokenizer::o200k(), Tokenizer::Fast { .. }),
        "o200k fell back to bpe-openai"
    );
    assert!(
        matches!(Tokenizer::cl100k(), Tokenizer::Fast { .. }),
        "cl100k fell back to bpe-openai"
    );
}

#[test]
fn bpe_openai_counts_equal_tiktoken_on_the_corpus() {
    for ours in [Tokenizer::o200k_bpe_openai(), Tokenizer::cl100k_bpe_openai()] {
        let reference = reference(ours.name());
        for (file, text) in corpus() {
            assert_eq!(
                ours.count(&text),
                reference.encode_ordinary(&text).len(),
                "{} on {file}",
                ours.name()
            );
        }
    }
}

#[test]
fn openai_counts_equal_tiktoken_on_the_corpus() {
    for ours in [Tokenizer::o200k(), Tokenizer::cl100k()] {
        let reference = reference(ours.name());
        for (file, text) in corpus() {
            let want = reference.encode_ordinary(&text);
            assert_eq!(ours.count(&text), want.len(), "{} on {file}", ours.name());
            assert_eq!(ours.encode(&text), want, "{} ids on {file}", ours.name());
            for (n, line) in text.lines().enumerate() {
                assert_eq!(
                    ours.count(line),
                    reference.encode_ordinary(line).len(),
                    "{} on {file}:{}",
                    ours.name(),
                    n + 1
                );
            }
        }
    }
}

/// OpenAI's encodings as tokenizer.json files (fetched by `scripts/setup.sh`), run through the
/// `tokenizers` pipeline: the same counts as tiktoken, several times faster than the built-in
/// counter (see docs/BENCHMARKS.md). A model can use them via `[[tokenizers]]`.
fn openai_as_tokenizer_json(name: &str) -> Tokenizer {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.models/tokenizers")
        .join(format!("{name}.json"));
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    Tokenizer::from_tokenizer_json(name, &path).unwrap()
}

fn gpt4o() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| openai_as_tokenizer_json("gpt4o"))
}

fn gpt4() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| openai_as_tokenizer_json("gpt4"))
}

#[test]
fn openai_tokenizer_json_files_count_equal_to_tiktoken_on_the_corpus() {
    for (ours, encoding) in [(gpt4o(), "o200k_base"), (gpt4(), "cl100k_base")] {
        let reference = reference(encoding);
        for (file, text) in corpus() {
            assert_eq!(
                ours.count(&text),
                reference.encode_ordinary(&text).len(),
                "{encoding} file on {file}"
            );
            for (n, line) in text.lines().enumerate() {
                assert_eq!(
                    ours.count(line),
                    reference.encode_ordinary(line).len(),
                    "{encoding} file on {file}:{}",
                    n + 1
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn openai_counts_equal_tiktoken_on_random_strings(text in "\\PC{0,200}") {
        prop_assert_eq!(Tokenizer::o200k().count(&text), reference("o200k_base").encode_ordinary(&text).len());
        prop_assert_eq!(Tokenizer::cl100k().count(&text), reference("cl100k_base").encode_ordinary(&text).len());
    }

    #[test]
    fn openai_tokenizer_json_files_count_equal_to_tiktoken_on_random_strings(text in "\\PC{0,200}") {
        prop_assert_eq!(gpt4o().count(&text), reference("o200k_base").encode_ordinary(&text).len());
        prop_assert_eq!(gpt4().count(&text), reference("cl100k_base").encode_ordinary(&text).len());
    }

    #[test]
    fn openai_counts_equal_tiktoken_on_ascii_soup(text in "[ a-zA-Z0-9'\\n\\t.,!?\"-]{0,300}") {
        prop_assert_eq!(Tokenizer::o200k().count(&text), reference("o200k_base").encode_ordinary(&text).len());
    }
}
