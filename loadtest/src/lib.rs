//! `tollgate-loadtest`: the stand-in for a model provider, and the load-test tooling around it.
//!
//! No model provider is reachable from our machines, so every test and load run talks to
//! [`mock`]: a small, fast OpenAI-compatible server (chat, completions, embeddings, models) that
//! answers in JSON or streams SSE the way real providers do, reports usage, and injects faults on
//! request (error statuses at a rate, stalls, connections cut mid-stream). It records what it
//! received so tests can check what the gateway actually sent upstream. [`engines`] stands in for
//! search engines the same way.

pub mod engines;
pub mod mock;
pub mod planner;
