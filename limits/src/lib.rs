//! `tollgate-limits`: token buckets and request counters for rate limits and quotas.
//!
//! Sharded in-memory tables (no global lock, bounded memory, idle-key eviction) decide on the
//! hot path without a network round trip; a background task syncs deltas through Redis (`fred`)
//! so many gateway nodes enforce one limit, with an exact per-request mode where a rule needs it.
//! A plain library: no HTTP, no Pingora.
//!
//! Empty until the limits issue lands.
