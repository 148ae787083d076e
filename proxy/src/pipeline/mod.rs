//! The request path, free of Pingora types: each stage takes typed input and returns "go on"
//! (`Ok`) or an [`Answer`] the gateway writes itself (`Err`), so the Pingora layer stays a few
//! lines of I/O and all of this is unit-testable without a server.
//!
//! In order ([`request`] holds the sequence's own stages):
//! - [`head`]: the request head within the operator's limits;
//! - [`endpoint`]: which API a method + path is, or the 404/405 it deserves;
//! - [`auth`]: who is calling, and whether they may call this endpoint and model;
//! - [`body`]: the request body parsed once into a small view, and the rewrite sent upstream;
//!   [`shape`]: its values checked against the API's types, the prompt located;
//! - [`admit`]: allow-lists, [`params`] (the caller's parameter policy, as splices), [`tokens`]
//!   (the prompt counted), quotas and rate limits, booked in one ledger per request;
//! - [`cache`]: the answer cache's lookup (a hit answers) and what the response side records;
//! - [`attempts`]: the plan of targets to try (fallback models after the model's own), and
//!   which upstream failures let it go on; [`health`]: what the node learnt of each target;
//! - [`response`]: the ordered chain of stages over the provider's answer.

pub mod admit;
pub mod attempts;
pub mod auth;
pub mod body;
pub mod cache;
pub mod endpoint;
pub mod head;
pub mod health;
pub mod params;
pub mod request;
pub mod response;
pub mod safety;
pub mod shape;
pub mod tokens;

use bytes::Bytes;

use crate::error::ApiError;
use crate::rate_headers::RateHeaders;

/// What the gateway answers itself when a stage ends the request.
#[derive(Debug)]
pub enum Answer {
    /// A local endpoint's JSON body (health, readiness, the model list), status 200.
    Local(Bytes),
    /// An error, with the rate headers that go with it (a refusal's `Retry-After`, the counter
    /// that refused). Boxed: every stage's result carries this variant's size.
    Error(Box<Refused>),
    /// A cached answer, replayed as the request asks (JSON or an event stream).
    Cached(Box<CachedReply>),
}

/// A cache hit, and how the caller wants it written.
pub struct CachedReply {
    pub found: cache::Found,
    pub stream: bool,
    pub include_usage: bool,
    /// The public model the caller asked for.
    pub model: String,
    pub prompt_tokens: u64,
}

impl std::fmt::Debug for CachedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedReply")
            .field("entry", &self.found.entry)
            .finish_non_exhaustive()
    }
}

/// An error answer and its rate headers.
#[derive(Debug)]
pub struct Refused {
    pub error: ApiError,
    pub headers: RateHeaders,
}

/// A stage's result: go on with `T`, or answer.
pub type Step<T> = Result<T, Answer>;

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Self {
        Answer::Error(Box::new(Refused {
            error,
            headers: RateHeaders::default(),
        }))
    }
}

impl From<admit::Refusal> for Answer {
    fn from(r: admit::Refusal) -> Self {
        Answer::Error(Box::new(Refused {
            error: r.error,
            headers: r.headers,
        }))
    }
}
