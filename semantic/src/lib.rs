//! `tollgate-semantic`: the semantic cache's engine.
//!
//! An in-process ONNX sentence embedder (`ort`) and an HNSW index (`hnsw_rs`) over cached
//! answers, namespaced by model, tenant and system prompt, with entries in memory and in Redis
//! and a TTL. A plain library: no HTTP, no Pingora; the proxy consults it from `request_filter`
//! and answers a hit without touching an upstream.
//!
//! Empty until the semantic-cache work lands (see ROADMAP).
