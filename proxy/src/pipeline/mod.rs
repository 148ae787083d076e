//! Pingora-free request logic: each stage takes typed input and returns a typed decision, so the
//! gateway's phases stay a few lines and all of this is unit-testable without a server.
//!
//! - [`endpoint`]: which API a method + path is, or the 404/405 it deserves.
//! - [`body`]: the request body parsed once into a small view, and the rewrite sent upstream.
//! - [`auth`]: who is calling, and whether they may call this endpoint and model.
//! - [`params`]: the caller's parameter policy, as splices into the body.
//! - [`route`]: the order in which a route's targets are tried.
//! - [`tokens`]: the prompt's tokens, exact with the model's tokenizer or a marked estimate.

pub mod auth;
pub mod body;
pub mod endpoint;
pub mod params;
pub mod route;
pub mod tokens;
