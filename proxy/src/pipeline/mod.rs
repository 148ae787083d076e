//! Pingora-free request logic: each stage takes typed input and returns a typed decision, so the
//! gateway's phases stay a few lines and all of this is unit-testable without a server.
//!
//! - [`endpoint`]: which API a method + path is, or the 404/405 it deserves.
//! - [`body`]: the request body parsed once into a small view, and the rewrite sent upstream.
//! - [`route`]: the order in which a route's targets are tried.

pub mod body;
pub mod endpoint;
pub mod route;
