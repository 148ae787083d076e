//! `tollgate-tokenize`: exact token counting for every model the gateway serves.
//!
//! The gateway needs a prompt's token count before it forwards it (to reserve against token
//! limits and refuse an over-budget request early) and a completion's count when a provider
//! reports no usage. Counting must equal the model's real tokenizer, always.
//!
//! - [`Tokenizer`]: OpenAI's `o200k_base` and `cl100k_base` built in (no download at run time),
//!   and any Hugging Face `tokenizer.json` (Qwen, Llama, DeepSeek families) from a file.
//! - [`chat`]: the chat template of each model family, so a list of messages is counted with
//!   the tokens the template adds around them.
//! - [`Registry`]: which tokenizer and template a model uses (configuration), with a clearly
//!   named estimate for models nobody configured.
//!
//! A plain library: no HTTP, no Pingora. The OpenAI encodings are counted by Tollgate's own
//! split and merge ([`bpe_fast`]) on the ranks bpe-openai embeds, with bpe-openai itself as the
//! fallback; tokenizer.json files run through the `tokenizers` 1.0 pipeline, and [`openai_fast`]
//! derives the OpenAI encodings in that form too (a bench baseline). Every count equals the
//! reference tokenizers' (tests).

pub mod bpe_fast;
pub mod chat;
pub mod openai_fast;
pub mod registry;
mod tokenizer;

pub use chat::{ChatTemplate, Message};
pub use registry::{Count, Registry};
pub use tokenizer::{Tokenizer, TokenizerError};
