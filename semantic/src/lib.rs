//! `tollgate-semantic`: the semantic cache's engine.
//!
//! An in-process ONNX sentence embedder (`ort`) and an HNSW index (`hnsw_rs`) over cached
//! questions, false-hit guards that compare what a threshold cannot (numbers, negation, opposite
//! actions, entities), namespaced entries with a TTL and a byte budget. A plain library: no HTTP,
//! no Pingora; the proxy consults it before any upstream is touched.

pub mod embedder;
pub mod eval;
pub mod guard;
pub mod index;
pub mod pool;
pub mod store;

pub use embedder::{cosine, load_runtime, normalise, Embedder, ModelFiles};
pub use guard::{compare, Block, HitPolicy, Question, Verdict};
pub use pool::{EmbedPool, PoolSize, Shed};
pub use store::{ExactKey, Flush, Hit, Namespace, NewEntry, Store, StoreLimits, StoreStats};

/// The hit decision's defaults, measured on the shipped evaluation set (`semantic-eval`).
pub const DEFAULT_POLICY: HitPolicy = HitPolicy {
    threshold: 0.80,
    strict: 0.93,
};

#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error("ONNX Runtime could not be loaded: {0}")]
    Runtime(String),
    #[error("embedding model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("embedding tokenizer {path}: {reason}")]
    Tokenizer { path: String, reason: String },
    #[error("embedding failed: {0}")]
    Run(String),
}
