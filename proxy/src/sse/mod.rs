//! Server-sent events from providers, handled without copying.
//!
//! - [`scanner`]: splits a byte stream, cut at arbitrary chunk boundaries, into whole events.
//! - [`usage`]: reads token usage from an event or a JSON body, parsing only what holds it.
//! - [`completion`]: the generated text (content deltas), decoded from events or a JSON body.
//!
//! The response stages that use them are in `pipeline::response`.

pub mod completion;
pub mod scanner;
pub mod usage;

pub use usage::Usage;
