//! Tollgate: an LLM edge gateway on Pingora.
//!
//! One OpenAI-compatible front door in front of many model providers. This crate is the Pingora
//! service and everything it wires together; see `shared/DESIGN.md` for the map.
//!
//! # Map of the request path
//!
//! The Pingora layer ([`gateway`]) does I/O only; every decision is a Pingora-free stage in
//! [`pipeline`] that returns "go on" or an [`Answer`](pipeline::Answer):
//!
//! | # | stage | file |
//! |---|---|---|
//! | 1 | endpoint, key, local answers (`open`) | `pipeline/request.rs`, `pipeline/endpoint.rs`, `pipeline/auth.rs` |
//! | 2 | read the body (I/O) | `gateway/serve.rs` |
//! | 3 | parse once, route by model (`parse`) | `pipeline/request.rs`, `pipeline/body.rs` |
//! | 4 | admit: allow-lists, parameter rules, prompt tokens, quotas, rate limits, one ledger | `pipeline/request.rs`, `pipeline/admit/` |
//! | 5 | input guardrails: in-process rules, then moderation services; block, mask, reroute, log | `pipeline/safety/mod.rs`, `guard/`, `upstream/moderation.rs`, `gateway/serve.rs` |
//! | 6 | cache lookup (a hit answers) | `pipeline/cache/` |
//! | 6b | search: plan (LLM, own routing), engines, pages, rank, fit the budget, inject | `search/`, `gateway/serve.rs` |
//! | 7 | plan the attempts; retry only what may be retried | `pipeline/attempts.rs`, `gateway/forward.rs` |
//! | 8 | relay through the response chain: usage → completion count → output guard (hold-back window) → cache recorder → references | `gateway/relay.rs`, `pipeline/response.rs` |
//! | 9 | settle the ledger, access and audit lines, metrics | `pipeline/admit/mod.rs`, `telemetry/access.rs` |
//!
//! Every answer the gateway writes itself leaves through `gateway/respond.rs`.
//!
//! # Layers
//!
//! Imports go down this list, never up (nor across a comma): [`api`], [`error`], [`key_hash`],
//! [`rate_headers`], [`guard`], [`kb`] and the parsing helpers → [`config`] → [`context`] → [`sse`] → [`telemetry`]
//! → [`live`], [`api_keys`] → [`pipeline`] → [`upstream`] → [`search`] → [`reload`], [`tls`], [`drain`], [`edge`] → [`gateway`], [`admin`],
//! [`cli`] → [`server`].

pub mod admin;
pub mod api;
pub mod api_keys;
pub mod cli;
pub mod config;
pub mod context;
pub mod drain;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod guard;
pub mod html;
pub mod json_spans;
pub mod kb;
pub mod key_hash;
pub mod live;
pub mod pipeline;
pub mod rate_headers;
pub mod reload;
pub mod search;
pub mod secret;
pub mod server;
pub mod simd_parse;
pub mod sse;
pub mod telemetry;
pub mod tls;
pub mod upstream;
