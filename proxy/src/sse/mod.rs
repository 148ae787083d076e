//! Server-sent events from providers, handled without copying.
//!
//! - [`scanner`]: splits a byte stream, cut at arbitrary chunk boundaries, into whole events.
//! - [`completion`]: the generated text, read back when a provider reports no usage.
//! - [`usage`]: reads token usage from an event or a JSON body, parsing only what holds it.
//! - [`tap`]: the per-response state that sits in the body path: forwards whole events as
//!   slices of the upstream's buffers, records usage, and drops the usage-only event when the
//!   gateway (not the client) asked for it.

pub mod completion;
pub mod scanner;
pub mod tap;
pub mod usage;

pub use tap::SseTap;
pub use usage::Usage;
