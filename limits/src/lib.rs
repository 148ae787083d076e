//! `tollgate-limits`: request quotas and rate limits, decided on the hot path.
//!
//! - [`window`]: calendar windows (minute, hour, day in a fixed UTC offset) and their bounds.
//! - [`clock`]: time through a trait, so tests move it by hand instead of sleeping.
//! - [`counter`]: window counters in a sharded in-memory table (one node).
//! - [`redis`]: the same counters in Redis (`fred`), atomic across nodes.
//!
//! Token buckets with background Redis sync (the limits issue) will live here too. A plain
//! library: no HTTP, no Pingora types in its API.

pub mod clock;
pub mod counter;
pub mod redis;
pub mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use counter::LocalCounters;
pub use redis::RedisCounters;
pub use window::{Period, Window};
