//! Tollgate: an LLM edge gateway on Pingora.
//!
//! One OpenAI-compatible front door in front of many model providers. This crate is the Pingora
//! service and everything it wires together; see `shared/DESIGN.md` for the map. The Pingora
//! layer is thin ([`gateway`]); the decisions live in Pingora-free modules ([`pipeline`],
//! [`sse`], [`config`]) so they are testable without a server.

pub mod admin;
pub mod cli;
pub mod config;
pub mod context;
pub mod error;
pub mod gateway;
pub mod json_spans;
pub mod keys;
pub mod pipeline;
pub mod quota;
pub mod rate_headers;
pub mod ratelimit;
pub mod reload;
pub mod secret;
pub mod server;
pub mod simd_parse;
pub mod sse;
pub mod telemetry;
pub mod upstream;
