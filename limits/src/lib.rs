//! `tollgate-limits`: request quotas and token rate limits, decided on the hot path.
//!
//! - [`bucket`]: token-bucket arithmetic (refill, reserve, reconcile).
//! - [`table`]: the sharded in-memory table of buckets, local or leased from a shared limit.
//! - [`sync`]: the background sync of shared limits through Redis (`fred`).
//! - [`exact`]: exact mode, one atomic Redis script per decision.
//! - [`slots`]: concurrency slots (requests in flight per key), with a first-come queue.
//! - [`shared_slots`]: concurrency slots shared by every node, each leasing them through Redis.
//! - [`window`], [`counter`], [`redis`]: calendar-window request counters (quotas), in memory
//!   and in Redis.
//! - [`redis_key`]: Redis keys with Cluster hash tags.
//! - [`clock`]: time through a trait, so tests move it by hand instead of sleeping.
//!
//! A plain library: no HTTP, no Pingora types in its API.

pub mod bucket;
pub mod clock;
pub mod counter;
pub mod exact;
pub mod redis;
pub mod redis_key;
pub mod shared_slots;
pub mod slots;
pub mod sync;
pub mod table;
pub mod window;

pub use bucket::{Bucket, Decision, Limit};
pub use clock::{Clock, ManualClock, SystemClock};
pub use counter::LocalCounters;
pub use exact::ExactBuckets;
pub use redis::RedisCounters;
pub use shared_slots::{SharedSlotOptions, SharedSlots};
pub use slots::{Acquire, SlotKey, SlotTable, Waiting};
pub use sync::{SyncOptions, SyncStats, Syncer};
pub use table::{BucketTable, KeyId, TableOptions};
pub use window::{Calendar, Period, Window};
