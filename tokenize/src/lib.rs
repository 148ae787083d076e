//! `tollgate-tokenize`: exact token counting for every model the gateway serves.
//!
//! The gateway must know a prompt's token count before forwarding it (to reserve against token
//! limits and refuse over-budget requests early) and must count a stream's completion when a
//! provider reports no usage. This crate will hold the count-first API (`count`, `count_chat`),
//! the built-in OpenAI encodings and Hugging Face `tokenizer.json` loading, with a SIMD fast
//! path whose counts equal the reference tokenizers'. It is a plain library: no HTTP, no Pingora.
//!
//! Empty until the tokenize issue lands; the gateway does not count tokens itself yet (it reads
//! the usage providers report).
