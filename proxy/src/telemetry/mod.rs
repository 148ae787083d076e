//! What the gateway tells operators: logs ([`logging`]), the per-request access line
//! ([`access`]), audit lines ([`audit`]) and Prometheus series ([`metrics`], booked per request
//! by [`request_metrics`]).

pub mod access;
pub mod audit;
pub mod logging;
pub mod metrics;
pub mod request_metrics;

pub use metrics::Metrics;
