//! The gateway's observability as an operator reads it, driven over HTTP, one module per idea:
//! series (tokens and cost by consumer and model, refusals, overhead, bounded label sets, an
//! exposition `promtool` accepts: [`series`]); OpenTelemetry traces ([`traces`]); access, audit
//! and conversation logs ([`logs`]); the usage API on two nodes ([`usage`]); the live dashboard
//! in a headless browser ([`dashboard`]).

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly on setup errors")]

#[path = "../common/mod.rs"]
mod common;
mod dashboard;
mod logs;
mod series;
mod support;
mod traces;
mod usage;
