//! The attempt plan: which targets a request tries, in which order, and which failures let it
//! go on to the next. Pure logic over the snapshot, seeded by the caller.
//!
//! Today a plan is the route's targets: one weighted pick first, then the others as fallbacks
//! (heaviest first). Fallback chains across models extend the plan, not the forwarding loop.
//! Nothing is retried once a byte reached the client: the loop only asks the plan while it has
//! written nothing.

use std::sync::Arc;

use http::StatusCode;

use crate::config::{Route, Target};
use crate::error::ApiError;

/// Target indices in attempt order. `seed` is any random number.
pub fn attempt_order(route: &Route, seed: u64) -> Vec<usize> {
    let n = route.targets.len();
    let mut order = Vec::with_capacity(n);
    if n == 0 {
        return order;
    }
    let first = if route.total_weight == 0 {
        0
    } else {
        let mut r = seed % route.total_weight;
        let mut pick = 0;
        for (i, t) in route.targets.iter().enumerate() {
            let w = u64::from(t.weight);
            if r < w {
                pick = i;
                break;
            }
            r -= w;
        }
        pick
    };
    order.push(first);
    let mut rest: Vec<usize> = (0..n).filter(|&i| i != first).collect();
    rest.sort_by_key(|&i| std::cmp::Reverse(route.targets[i].weight));
    order.extend(rest);
    order
}

/// The attempts of one request, in order.
pub struct AttemptPlan<'r> {
    route: &'r Arc<Route>,
    order: Vec<usize>,
    next: usize,
}

/// One attempt: a target of a route.
pub struct Attempt<'p> {
    pub route: &'p Arc<Route>,
    /// The target's index in the route (what the access log reports).
    pub index: usize,
    pub target: &'p Target,
    /// No attempt follows this one: whatever it gets is the answer.
    pub is_last: bool,
}

impl<'r> AttemptPlan<'r> {
    /// The plan for `route`; `seed` is any random number (it picks the weighted first target).
    pub fn new(route: &'r Arc<Route>, seed: u64) -> Self {
        let order = attempt_order(route, seed);
        AttemptPlan { route, order, next: 0 }
    }

    /// The next attempt, if any is left.
    pub fn next_attempt(&mut self) -> Option<Attempt<'r>> {
        let index = *self.order.get(self.next)?;
        self.next += 1;
        let route = self.route;
        Some(Attempt {
            route,
            index,
            target: &route.targets[index],
            is_last: self.next == self.order.len(),
        })
    }
}

/// Why an upstream attempt did not give the client its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// Could not connect, or the connection broke before the response header.
    Unreachable(String),
    /// Connecting or waiting for the header took too long.
    Timeout(String),
    /// The response header came, then the body broke before any byte reached the client.
    BrokeBeforeBody(String),
    /// The provider answered with this status.
    Status(StatusCode),
}

impl UpstreamError {
    /// Whether another target may be tried: every transport failure, and the statuses that say
    /// "not now, not here" (429 and 5xx). A provider's 4xx is the answer, whoever serves it.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Unreachable(_) | UpstreamError::Timeout(_) | UpstreamError::BrokeBeforeBody(_) => true,
            UpstreamError::Status(s) => *s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error(),
        }
    }

    /// The label of `tollgate_upstream_attempts_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::BrokeBeforeBody(_) => "broken_before_body",
            UpstreamError::Status(_) => "retryable_status",
        }
    }

    /// What the client gets when this was the last attempt and the gateway answers itself.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            UpstreamError::Unreachable(m) | UpstreamError::BrokeBeforeBody(m) => ApiError::bad_gateway(m.clone()),
            UpstreamError::Timeout(m) => ApiError::gateway_timeout(m.clone()),
            UpstreamError::Status(s) => ApiError::bad_gateway(format!("The upstream answered {}.", s.as_u16())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn route(weights: &[u32]) -> std::sync::Arc<Route> {
        let mut text = String::from("[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[[models]]\nname = \"m\"\ntargets = [");
        for (i, w) in weights.iter().enumerate() {
            text.push_str(&format!("{{ provider = \"p\", model = \"t{i}\", weight = {w} }},"));
        }
        text.push_str("]\n");
        load_str(&text, "t", None, 1).unwrap().route("m").unwrap().clone()
    }

    #[test]
    fn weighted_pick_follows_weights_and_every_target_stays_a_fallback() {
        let r = route(&[3, 1, 0]);
        let mut firsts = [0u32; 3];
        for seed in 0..4000u64 {
            let order = attempt_order(&r, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7);
            assert_eq!(order.len(), 3);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2]);
            firsts[order[0]] += 1;
        }
        assert_eq!(firsts[2], 0, "weight 0 is never picked first");
        let share = f64::from(firsts[0]) / 4000.0;
        assert!((0.70..0.80).contains(&share), "share of weight 3 of 4: {share}");
    }

    #[test]
    fn a_plan_offers_every_target_once_and_marks_the_last() {
        let r = route(&[1, 1, 1]);
        let mut plan = AttemptPlan::new(&r, 7);
        let mut seen = Vec::new();
        while let Some(a) = plan.next_attempt() {
            seen.push((a.index, a.is_last));
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.iter().filter(|(_, last)| *last).count(), 1);
        assert!(seen[2].1, "only the third attempt is the last");
        let mut targets: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
        targets.sort();
        assert_eq!(targets, [0, 1, 2]);
    }

    #[test]
    fn transport_failures_429_and_5xx_are_retryable_other_statuses_are_answers() {
        for e in [
            UpstreamError::Unreachable("x".into()),
            UpstreamError::Timeout("x".into()),
            UpstreamError::BrokeBeforeBody("x".into()),
            UpstreamError::Status(StatusCode::TOO_MANY_REQUESTS),
            UpstreamError::Status(StatusCode::INTERNAL_SERVER_ERROR),
            UpstreamError::Status(StatusCode::SERVICE_UNAVAILABLE),
        ] {
            assert!(e.is_retryable(), "{e:?}");
        }
        for s in [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::UNAUTHORIZED,
        ] {
            assert!(!UpstreamError::Status(s).is_retryable(), "{s}");
        }
        assert_eq!(
            UpstreamError::Timeout("t".into()).to_api_error().status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            UpstreamError::Unreachable("u".into()).to_api_error().status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
