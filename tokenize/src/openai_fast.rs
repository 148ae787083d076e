//! OpenAI's encodings through the `tokenizers` pipeline, built from the ranks bpe-openai embeds.
//!
//! The `tokenizers` 1.0 pipeline (a SIMD pre-tokenizer and a fast BPE) counts several times
//! faster than bpe-openai, but it reads a `tokenizer.json`. Rather than ship or download one, the
//! equivalent file is derived here, once per process, from the rank table already compiled into
//! the binary: the vocabulary is every token's bytes in GPT-2's byte-level alphabet, and each
//! token's merge is found by running BPE on its bytes with only lower ranks allowed (the last
//! merge that produces it). The split pattern is the encoding's own. Counts equal tiktoken's;
//! `tests/differential.rs` checks that on a corpus and on random strings.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use tokenizers::pipeline::PipelineTokenizer;

/// o200k_base's pre-tokenization pattern, as tiktoken defines it.
pub const O200K_PATTERN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// cl100k_base's pre-tokenization pattern, as tiktoken defines it.
pub const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's map from bytes to printable characters, used by byte-level BPE vocabularies.
fn byte_alphabet() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\u{FFFD}');
            n += 1;
            c
        };
    }
    out
}

fn byte_level(bytes: &[u8], alphabet: &[char; 256]) -> String {
    bytes.iter().map(|&b| alphabet[b as usize]).collect()
}

/// The two parts BPE joins last to make `token`, using only ranks below `max_rank`.
fn last_merge<'a>(token: &'a [u8], ranks: &HashMap<&[u8], u32>, max_rank: u32) -> Option<(&'a [u8], &'a [u8])> {
    let mut bounds: Vec<usize> = (0..=token.len()).collect();
    while bounds.len() > 3 {
        let mut best: Option<(u32, usize)> = None;
        for i in 0..bounds.len() - 2 {
            if let Some(&r) = ranks.get(&token[bounds[i]..bounds[i + 2]]) {
                if r < max_rank && best.is_none_or(|(b, _)| r < b) {
                    best = Some((r, i));
                }
            }
        }
        let (_, i) = best?;
        bounds.remove(i + 1);
    }
    (bounds.len() == 3).then(|| (&token[..bounds[1]], &token[bounds[1]..]))
}

/// A pipeline equivalent to `bpe` with the split `pattern`.
pub fn pipeline(bpe: &bpe_openai::Tokenizer, pattern: &str) -> Result<PipelineTokenizer, String> {
    let n = bpe.bpe.num_tokens();
    let tokens: Vec<&[u8]> = (0..n).map(|i| bpe.bpe.token_bytes(i as u32)).collect();
    let ranks: HashMap<&[u8], u32> = tokens.iter().enumerate().map(|(i, t)| (*t, i as u32)).collect();
    let alphabet = byte_alphabet();
    let mut vocab = Map::with_capacity(n);
    let mut merges = Vec::with_capacity(n);
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(byte_level(token, &alphabet), Value::from(id));
        if token.len() >= 2 {
            let (a, b) = last_merge(token, &ranks, id as u32).ok_or_else(|| format!("token {id} has no merge"))?;
            merges.push(Value::String(format!(
                "{} {}",
                byte_level(a, &alphabet),
                byte_level(b, &alphabet)
            )));
        }
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]
        },
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
            "vocab": Value::Object(vocab), "merges": merges
        }
    });
    let canonical = tokenizers::canonicalize_str(&doc.to_string()).map_err(|e| e.to_string())?;
    tokenizers::from_json(&canonical).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let a = byte_alphabet();
        assert_eq!(a[b' ' as usize], 'Ġ');
        assert_eq!(a[b'\n' as usize], 'Ċ');
        assert_eq!(a[b'a' as usize], 'a');
        let mut all: Vec<char> = a.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 256);
    }
}
