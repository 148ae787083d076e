//! What the gateway tells operators: logs ([`logging`]), the per-request access line
//! ([`access`]) and Prometheus series ([`metrics`]).

pub mod access;
pub mod logging;
pub mod metrics;

pub use metrics::Metrics;
