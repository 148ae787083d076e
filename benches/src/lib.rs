//! Inputs shared by the benches: realistic provider streams and request bodies, and a way to cut
//! a byte stream at random boundaries the way a network does.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "the",
    "gateway",
    "streams",
    "tokens",
    "quickly",
    "and",
    "safely",
    " across",
    "providers",
    "你好",
    "世界",
    "model",
    "—",
    "answer",
    "\\n",
    "code",
    "{",
    "}",
    "fn",
    "main()",
    "émoji",
    "🙂",
    "data",
    "usage",
];

/// An OpenAI-style chat stream of `events` content chunks, each with `"usage":null` (as when
/// usage was requested), then the usage-only event and `[DONE]`.
pub fn openai_stream(events: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(events * 220);
    for i in 0..events {
        let n = rng.gen_range(1..6);
        let mut content = String::new();
        for _ in 0..n {
            content.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
            content.push(' ');
        }
        out.extend_from_slice(
            format!(
                "data: {{\"id\":\"chatcmpl-AbC123xyz\",\"object\":\"chat.completion.chunk\",\"created\":1732500000,\
                 \"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{{\"index\":0,\
                 \"delta\":{{\"content\":\"{content}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
            )
            .as_bytes(),
        );
        let _ = i;
    }
    out.extend_from_slice(
        b"data: {\"id\":\"chatcmpl-AbC123xyz\",\"object\":\"chat.completion.chunk\",\"created\":1732500000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":812,\"completion_tokens\":1203,\"total_tokens\":2015,\"prompt_tokens_details\":{\"cached_tokens\":512}}}\n\n",
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// Cut `data` into chunks of random length in `min..=max` (a network's arbitrary boundaries).
pub fn split_random(data: &[u8], seed: u64, min: usize, max: usize) -> Vec<Bytes> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = rng.gen_range(min..=max).min(data.len() - at);
        out.push(Bytes::copy_from_slice(&data[at..at + n]));
        at += n;
    }
    out
}

/// Cut `data` at event boundaries, `per_chunk` events a chunk (how providers usually flush).
pub fn split_events(data: &[u8], per_chunk: usize) -> Vec<Bytes> {
    let text = Bytes::copy_from_slice(data);
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == b'\n' && data[i + 1] == b'\n' {
            count += 1;
            if count == per_chunk {
                out.push(text.slice(start..i + 2));
                start = i + 2;
                count = 0;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < data.len() {
        out.push(text.slice(start..));
    }
    out
}

/// A chat request body with `messages` turns of about `turn_bytes` each.
pub fn chat_body(messages: usize, turn_bytes: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"model":"gpt-4o-mini","stream":true,"temperature":0.7,"messages":["#);
    for i in 0..messages {
        if i > 0 {
            s.push(',');
        }
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let mut content = String::new();
        let mut k = 0;
        while content.len() < turn_bytes {
            content.push_str(WORDS[k % WORDS.len()]);
            content.push(' ');
            k += 7;
        }
        s.push_str(&format!(r#"{{"role":"{role}","content":"{content}"}}"#));
    }
    s.push_str(r#"],"max_tokens":512,"user":"u-123"}"#);
    s.into_bytes()
}
