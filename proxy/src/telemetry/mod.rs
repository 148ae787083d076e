//! What the gateway tells operators: logs ([`logging`]), the per-request access line
//! ([`access`]), audit lines ([`audit`]) and Prometheus series ([`metrics`], booked per request
//! by [`request_metrics`]); [`repeats`] keeps a condition that lasts from filling the log.

pub mod access;
pub mod audit;
pub mod conversation;
pub mod line;
pub mod logging;
pub mod metrics;
pub mod repeats;
pub mod request_metrics;
pub mod search_metrics;
pub mod sink;
pub mod trace;
pub mod usage;
pub mod usage_metrics;

pub use metrics::Metrics;
