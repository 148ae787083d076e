//! Search grounding through the gateway, over HTTP, against local engines serving a corpus
//! (SearXNG, Bing, Google Programmable Search, arXiv and Elasticsearch stand-ins) and the mock
//! upstream, one module per idea: what is asked for when and what reaches the provider and the
//! client ([`grounding`]); the planner ([`planner`]); full pages, the embedded knowledge base and
//! the search cache ([`sources`]); what the guardrails and the ranking by meaning do with
//! passages ([`passages`]).

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly on setup errors")]

#[path = "../common/mod.rs"]
mod common;
mod grounding;
mod passages;
mod planner;
mod sources;
mod support;
