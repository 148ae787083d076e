//! Admission: may this request be served now, and what does it hold while it is?
//!
//! - [`quotas`]: calls per consumer, key or user in calendar windows (counted at admission).
//! - [`rate_limits`]: token and request buckets of the `[[limits]]` rules (reserved at
//!   admission, replaced by the real cost at the end).
//!
//! Everything a request books goes into its [`Ledger`]; [`Admission::settle`] is the one place a
//! ledger ends, whatever happened: the answer streamed to its end, the gateway refused, no
//! provider answered, the client left. Each settlement empties the ledger, so a request is
//! settled exactly once however many of those places see it.

pub mod quotas;
pub mod rate_limits;

use std::sync::Arc;

use http::HeaderMap;

use self::quotas::{Charge, QuotaStore};
use self::rate_limits::{Demand, Hold, KeySources, RateLimiter};
use super::auth::Identified;
use super::request::Peer;
use crate::context::{Outcome, RequestCtx};
use crate::error::ApiError;
use crate::live::Live;
use crate::pipeline::tokens::Estimator;
use crate::rate_headers::RateHeaders;
use crate::telemetry::Metrics;

/// A refusal by a quota or a limit: the error and the rate headers that go with it.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub headers: RateHeaders,
}

/// What one request holds until it ends: the quota counts it added (given back if the gateway
/// does not serve it) and its rate-limit reservations (replaced by the real cost).
#[derive(Debug, Default)]
pub struct Ledger {
    charges: Vec<Charge>,
    holds: Vec<Hold>,
}

/// How a request ended, as far as what it holds goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The gateway answered without serving it (refused, or no provider reached): quota counts
    /// are given back, reservations released.
    NotServed,
    /// A provider answered (whatever its status): quotas keep their counts, buckets are charged
    /// `tokens` (and one request) — nothing when `None` (no successful answer).
    Answered { tokens: Option<u64> },
}

impl Settlement {
    /// The settlement of a request that ends now, from what is known of it.
    pub fn of(ctx: &RequestCtx) -> Self {
        if ctx.answer.outcome == Outcome::Refused {
            Settlement::NotServed
        } else {
            Settlement::Answered {
                tokens: ctx.tokens_used(),
            }
        }
    }
}

/// Where a request's admission is decided and settled: the quota counts, the rate limits.
pub struct Admission {
    pub quotas: QuotaStore,
    pub limits: RateLimiter,
    pub metrics: Arc<Metrics>,
    /// Counts tokens for models without a tokenizer (prompts here, completions in the relay).
    pub estimator: Estimator,
}

/// What a request offers the rate limits' keys, beyond the caller and the body.
pub struct RequestFacts<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// The TCP peer (the client, unless a trusted proxy forwarded the request).
    pub peer: &'a (dyn Peer + Sync),
}

impl Admission {
    /// Count the request against every quota of the caller's consumer; the counts go into the
    /// ledger, the tightest quota into the rate headers.
    pub async fn quotas(
        &self,
        caller: &Identified,
        user: Option<&str>,
        headers: &HeaderMap,
        ledger: &mut Ledger,
        rate_headers: &mut RateHeaders,
    ) -> Result<(), Refusal> {
        let admitted = self
            .quotas
            .admit(&caller.consumer, &caller.key_id, user, headers, &self.metrics)
            .await?;
        rate_headers.requests = admitted.tightest;
        ledger.charges = admitted.charges;
        Ok(())
    }

    /// Reserve against every rate limit that selects this request; the holds go into the
    /// ledger, the `x-ratelimit-*` headers with them (a quota's `-requests` headers stay unless
    /// a request limit is tighter).
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; what a limit key may read, spelled out"
    )]
    pub async fn rate_limits(
        &self,
        live: &Live,
        caller: Option<&Identified>,
        model: &str,
        user: Option<&str>,
        req: &RequestFacts<'_>,
        demand: Demand,
        ledger: &mut Ledger,
        rate_headers: &mut RateHeaders,
    ) -> Result<(), Refusal> {
        let client_ip = || live.trusted_proxies.client_ip_of(req.peer.ip(), req.headers);
        let sources = KeySources {
            consumer: caller.map(|c| c.consumer.name.as_str()),
            key_id: caller.map(|c| &*c.key_id),
            user,
            model,
            client_ip: &client_ip,
            headers: req.headers,
            query: req.query,
        };
        let (holds, headers) = self.limits.admit(live, &sources, demand, &self.metrics).await?;
        ledger.holds = holds;
        rate_headers.tighten(headers);
        Ok(())
    }

    /// End what the request holds: the one place quota counts are given back and reservations
    /// replaced by the real cost. Called as soon as the outcome is known (a refusal before it is
    /// written, so a client that retries at once finds its counts back; the end of a body before
    /// the client sees it end), and again when the request is logged, where it finds nothing
    /// left unless the request ended some other way.
    pub async fn settle(&self, ledger: &mut Ledger, how: Settlement) {
        let tokens = match how {
            Settlement::NotServed => {
                if !ledger.charges.is_empty() {
                    let charges = std::mem::take(&mut ledger.charges);
                    // Boxed: a Redis refund's future is large and most requests never make one.
                    Box::pin(self.quotas.refund(charges, &self.metrics)).await;
                }
                None
            }
            Settlement::Answered { tokens } => {
                // A provider answered: the counts stand.
                ledger.charges.clear();
                tokens
            }
        };
        if !ledger.holds.is_empty() {
            let holds = std::mem::take(&mut ledger.holds);
            self.limits.settle(holds, tokens, &self.metrics);
        }
    }
}
