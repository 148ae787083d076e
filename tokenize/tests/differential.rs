//! Our counts against the reference implementations, on a corpus that ships with the tests
//! and on random strings. Every count must be equal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::OnceLock;

use proptest::prelude::*;
use tollgate_tokenize::{bpe_fast, openai_fast, Tokenizer};

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
fn the_built_in_encodings_use_tollgates_own_counter() {
    assert!(
        matches!(Tokenizer::o200k(), Tokenizer::Native { .. }),
        "o200k fell back to bpe-openai"
    );
    assert!(
        matches!(Tokenizer::cl100k(), Tokenizer::Native { .. }),
        "cl100k fell back to bpe-openai"
    );
}

/// tiktoken's split: its pattern in the regex engine tiktoken-rs uses.
fn reference_split(name: &str) -> &'static fancy_regex::Regex {
    static O200K: OnceLock<fancy_regex::Regex> = OnceLock::new();
    static CL100K: OnceLock<fancy_regex::Regex> = OnceLock::new();
    match name {
        "o200k_base" => O200K.get_or_init(|| fancy_regex::Regex::new(openai_fast::O200K_PATTERN).unwrap()),
        _ => CL100K.get_or_init(|| fancy_regex::Regex::new(openai_fast::CL100K_PATTERN).unwrap()),
    }
}

fn native(tokenizer: &Tokenizer) -> &'static bpe_fast::Encoding {
    match tokenizer {
        Tokenizer::Native { inner, .. } => inner,
        other => panic!("{} is not Tollgate's own counter", other.name()),
    }
}

fn assert_same_split(text: &str, context: &str) {
    for tokenizer in [Tokenizer::o200k(), Tokenizer::cl100k()] {
        let want: Vec<&str> = reference_split(tokenizer.name())
            .find_iter(text)
            .map(|m| m.unwrap().as_str())
            .collect();
        let ours = native(&tokenizer).pieces(text);
        if ours != want {
            let at = ours
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(ours.len().min(want.len()));
            panic!(
                "{} splits {context} differently at piece {at}: ours {:?}, tiktoken {:?}",
                tokenizer.name(),
                &ours[at..(at + 3).min(ours.len())],
                &want[at..(at + 3).min(want.len())]
            );
        }
    }
}

#[test]
fn splits_equal_tiktokens_regex_on_the_corpus() {
    for (file, text) in corpus() {
        assert_same_split(&text, &file);
    }
}

#[test]
fn baseline_counts_equal_tiktoken_on_the_corpus() {
    for ours in [
        Tokenizer::o200k_bpe_openai(),
        Tokenizer::cl100k_bpe_openai(),
        Tokenizer::o200k_pipeline(),
        Tokenizer::cl100k_pipeline(),
    ] {
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
/// `tokenizers` pipeline: the same counts as tiktoken. A model can use them via `[[tokenizers]]`.
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
    fn splits_equal_tiktokens_regex_on_random_strings(text in "\\PC{0,200}") {
        assert_same_split(&text, "a random string");
    }

    /// Characters at the edges of the pattern's classes: marks, title case, modifier letters,
    /// non-ASCII numbers and spaces, the long s that folds to `s` in `'s`.
    #[test]
    fn splits_and_counts_equal_tiktoken_on_class_edge_soup(
        text in "[ a-zA-Z0-9'\n\r\t/.!\u{301}\u{2028}\u{a0}\u{85}\u{3000}\u{17f}\u{1c5}\u{2b0}\u{bd}\u{663}\u{c4}\u{e9}好ア🙂]{0,80}"
    ) {
        assert_same_split(&text, "an edge-class string");
        prop_assert_eq!(Tokenizer::o200k().count(&text), reference("o200k_base").encode_ordinary(&text).len());
        prop_assert_eq!(Tokenizer::cl100k().count(&text), reference("cl100k_base").encode_ordinary(&text).len());
        prop_assert_eq!(Tokenizer::o200k().encode(&text), reference("o200k_base").encode_ordinary(&text));
    }

    #[test]
    fn openai_counts_equal_tiktoken_on_ascii_soup(text in "[ a-zA-Z0-9'\\n\\t.,!?\"-]{0,300}") {
        prop_assert_eq!(Tokenizer::o200k().count(&text), reference("o200k_base").encode_ordinary(&text).len());
    }
}
