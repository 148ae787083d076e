//! The attempt plan: which targets a request tries, in which order, and which failures let it
//! go on to the next. Pure logic over the snapshot and the node's view of target health, with
//! time and randomness passed in.
//!
//! A plan is the model's targets (one weighted pick first, then the others, heaviest first),
//! then those of each fallback model in the chain, the same way. Targets that are ejected or
//! asked to be left alone ("retry after") are skipped; an ejected target whose cool-down is over
//! is tried by one request (the probe). With `retry.attempts` above the plan's length the plan
//! starts over, and a target tried again waits a backoff (exponential, full jitter) first.
//! Every attempt after the first takes a token from the model's retry budget and from that of
//! the target whose failure it answers (so a failing target cannot push more than the budget's
//! share of its own load onto the others): when either is spent the plan ends and the last
//! failure is the answer. Nothing is retried once a byte
//! reached the client: the forwarding loop only asks the plan while it has written nothing.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use smallvec::SmallVec;

use super::health::Availability;
use crate::config::fallback::RetryOn;
use crate::config::{Route, Snapshot, Target};
use crate::error::ApiError;

/// Target indices in attempt order. `seed` is any random number.
pub fn attempt_order(route: &Route, seed: u64) -> Vec<usize> {
    let mut order = Order::new();
    push_order(route, seed, 0, &mut order);
    order.into_iter().map(|(_, t)| t).collect()
}

/// Plans of up to this many targets in all (most of them) are kept without an allocation.
type Order = SmallVec<[(usize, usize); 8]>;

/// Append `(c, target index)` for each target of `route` in attempt order: one weighted pick
/// first, then the others, heaviest first.
fn push_order(route: &Route, seed: u64, c: usize, order: &mut Order) {
    let n = route.targets.len();
    if n == 0 {
        return;
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
    order.push((c, first));
    let start = order.len();
    order.extend((0..n).filter(|&i| i != first).map(|i| (c, i)));
    order[start..].sort_by_key(|&(_, i)| std::cmp::Reverse(route.targets[i].weight));
}

/// The attempts of one request, in order.
pub struct AttemptPlan<'r> {
    /// The requested model's route, then its fallbacks.
    chain: SmallVec<[&'r Arc<Route>; 4]>,
    /// (position in `chain`, target index), one pass.
    order: Order,
    /// Steps taken through `order` (past its end, it starts over).
    step: usize,
    /// Attempts handed out.
    made: u32,
    max: u32,
    /// `retry.attempts` was given: past the end of `order` the plan starts over.
    wraps: bool,
    seed: u64,
    /// The target of the last attempt handed out (whose failure a retry answers).
    last: Option<&'r Target>,
    /// Why the plan ended early, if it did.
    pub ended_by_budget: bool,
}

/// One attempt: a target of a route.
pub struct Attempt<'p> {
    pub route: &'p Arc<Route>,
    /// The target's index in the route (what the access log reports).
    pub index: usize,
    pub target: &'p Target,
    /// Wait this long first (a target tried again).
    pub backoff: Duration,
    /// A model of the fallback chain, not the requested one.
    pub fallback: bool,
}

/// Every target of the chain is ejected or asked to be left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllOut {
    /// The earliest one is back in this many milliseconds.
    pub retry_after_ms: u64,
}

impl<'r> AttemptPlan<'r> {
    /// The plan for `route` and its fallback chain (`live` resolves the chain; fallback
    /// models the caller `may_use` only); `seed` is any random number (it picks the weighted
    /// first targets and the backoff jitter).
    pub fn new(live: &'r Snapshot, route: &'r Arc<Route>, seed: u64, may_use: impl Fn(&Route) -> bool) -> Self {
        let mut chain: SmallVec<[&'r Arc<Route>; 4]> = SmallVec::new();
        chain.push(route);
        chain.extend(
            route
                .fallbacks
                .iter()
                .filter_map(|&i| live.route_at(i))
                .filter(|r| may_use(r)),
        );
        let mut order = Order::new();
        for (c, r) in chain.iter().enumerate() {
            let salt = seed.wrapping_add((c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            push_order(r, salt, c, &mut order);
        }
        let max = route.retry.attempts.unwrap_or(order.len() as u32);
        AttemptPlan {
            chain,
            order,
            step: 0,
            made: 0,
            max,
            wraps: route.retry.attempts.is_some(),
            seed,
            last: None,
            ended_by_budget: false,
        }
    }

    /// The model asked for (its policy governs the whole plan).
    pub fn primary(&self) -> &'r Arc<Route> {
        self.chain[0]
    }

    /// The first attempt; `Err` when every target is out at `now` (ms).
    pub fn first(&mut self, now: u64) -> Result<Attempt<'r>, AllOut> {
        let mut soonest = u64::MAX;
        match self.pick(now, &mut soonest) {
            Some(a) => {
                self.chain[0].budget.first(now);
                Ok(a)
            }
            None => Err(AllOut {
                retry_after_ms: soonest.saturating_sub(now).max(1),
            }),
        }
    }

    /// The attempt after a failure, if the plan, the health of the targets and the retry budget
    /// allow one.
    pub fn next_attempt(&mut self, now: u64) -> Option<Attempt<'r>> {
        if self.made >= self.max {
            return None;
        }
        let route = self.chain[0];
        let failed = self.last;
        let mut soonest = u64::MAX;
        // The budgets are asked only when a target is there to try: the model's, and that of
        // the target whose failure this retry answers.
        let step = self.step;
        let made = self.made;
        let attempt = self.pick(now, &mut soonest)?;
        let target_allows = failed.is_none_or(|t| t.health.retry_allowed(now, &route.retry));
        if !target_allows || !route.budget.allows(now, &route.retry) {
            self.step = step;
            self.made = made;
            self.last = failed;
            self.ended_by_budget = true;
            return None;
        }
        route.budget.retried(now);
        if let Some(t) = failed {
            t.health.retried(now);
        }
        Some(attempt)
    }

    /// The next target in order that may be tried at `now`.
    fn pick(&mut self, now: u64, soonest: &mut u64) -> Option<Attempt<'r>> {
        let n = self.order.len();
        if n == 0 {
            return None;
        }
        // At most one full pass looking for a target that is in.
        let limit = if self.wraps { self.step + n } else { n };
        while self.step < limit && self.made < self.max {
            let (c, t) = self.order[self.step % n];
            let round = (self.step / n) as u32;
            self.step += 1;
            let route = self.chain[c];
            let target = &route.targets[t];
            match target.health.availability(now) {
                Availability::OutUntil(until) => {
                    *soonest = (*soonest).min(until);
                    continue;
                }
                Availability::Open | Availability::Probe => {}
            }
            self.made += 1;
            self.last = Some(target);
            return Some(Attempt {
                route,
                index: t,
                target,
                backoff: if round == 0 {
                    Duration::ZERO
                } else {
                    backoff(&self.chain[0].retry, round, self.seed ^ u64::from(self.made))
                },
                fallback: c > 0,
            });
        }
        None
    }
}

/// Full-jitter exponential backoff before try number `round + 1` of a target: a uniform pick
/// in `[0, min(max, base × 2^(round-1))]`.
fn backoff(policy: &crate::config::fallback::RetryPolicy, round: u32, seed: u64) -> Duration {
    let base = policy.backoff.as_millis() as u64;
    let cap = (base.saturating_mul(1u64 << round.saturating_sub(1).min(20))).min(policy.max_backoff.as_millis() as u64);
    if cap == 0 {
        return Duration::ZERO;
    }
    let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    Duration::from_millis(r % (cap + 1))
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
    /// The provider said the prompt does not fit the model's context.
    ContextLength(StatusCode),
}

impl UpstreamError {
    /// Whether another target may be tried by default: every transport failure, and the
    /// statuses that say "not now, not here" (429 and 5xx). A provider's 4xx is the answer,
    /// whoever serves it.
    pub fn is_retryable(&self) -> bool {
        self.qualifies(&RetryOn::default())
    }

    /// Whether the model's retry policy lets another attempt follow this failure.
    pub fn qualifies(&self, on: &RetryOn) -> bool {
        match self {
            UpstreamError::Unreachable(_) | UpstreamError::BrokeBeforeBody(_) => on.connect,
            UpstreamError::Timeout(_) => on.timeout,
            UpstreamError::Status(s) => on.status(s.as_u16()),
            UpstreamError::ContextLength(s) => on.context_length || on.status(s.as_u16()),
        }
    }

    /// Whether the failure says the target is unwell (counted for ejection): transport
    /// failures, timeouts and 5xx; not 429 (the provider is well, and said when to come back)
    /// nor a 4xx about the request.
    pub fn is_target_failure(&self) -> bool {
        match self {
            UpstreamError::Unreachable(_) | UpstreamError::Timeout(_) | UpstreamError::BrokeBeforeBody(_) => true,
            UpstreamError::Status(s) => s.is_server_error(),
            UpstreamError::ContextLength(_) => false,
        }
    }

    /// The label of `tollgate_upstream_attempts_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::BrokeBeforeBody(_) => "broken_before_body",
            UpstreamError::Status(_) => "retryable_status",
            UpstreamError::ContextLength(_) => "context_length",
        }
    }

    /// What the client gets when this was the last attempt and the gateway answers itself.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            UpstreamError::Unreachable(m) | UpstreamError::BrokeBeforeBody(m) => ApiError::bad_gateway(m.clone()),
            UpstreamError::Timeout(m) => ApiError::gateway_timeout(m.clone()),
            UpstreamError::Status(s) | UpstreamError::ContextLength(s) => {
                ApiError::bad_gateway(format!("The upstream answered {}.", s.as_u16()))
            }
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

    const CHAIN: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "a"
targets = [{ provider = "p", model = "a1" }, { provider = "p", model = "a2" }]
fallbacks = ["b", "c"]
health = { failures = 1, cooldown_ms = 1000 }

[[models]]
name = "b"
targets = [{ provider = "p", model = "b1" }]

[[models]]
name = "c"
targets = [{ provider = "p", model = "c1" }]

[[models]]
name = "solo"
targets = [{ provider = "p", model = "s1" }]
retry = { attempts = 4, backoff_ms = 100, max_backoff_ms = 250, budget_ratio = 0.0, budget_min_per_sec = 0.2 }
"#;

    fn walk(plan: &mut AttemptPlan<'_>, now: u64) -> Vec<(String, bool, Duration)> {
        let mut seen = Vec::new();
        let mut next = plan.first(now).ok();
        while let Some(a) = next {
            seen.push((a.target.model.clone(), a.fallback, a.backoff));
            next = plan.next_attempt(now);
        }
        seen
    }

    #[test]
    fn a_plan_tries_the_model_then_its_fallback_chain_each_target_once() {
        let s = load_str(CHAIN, "t", None, 1).unwrap();
        let a = s.route("a").unwrap();
        let seen = walk(&mut AttemptPlan::new(&s, a, 3, |_| true), 1_000_000);
        let models: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(models.len(), 4);
        assert!(models[..2].contains(&"a1") && models[..2].contains(&"a2"), "{models:?}");
        assert_eq!(&models[2..], ["b1", "c1"]);
        assert_eq!(
            seen.iter().map(|(_, f, _)| *f).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        assert!(
            seen.iter().all(|(_, _, b)| b.is_zero()),
            "no backoff between different targets"
        );
    }

    #[test]
    fn ejected_targets_are_skipped_and_a_chain_all_out_says_when_to_come_back() {
        let s = load_str(CHAIN, "t", None, 1).unwrap();
        let a = s.route("a").unwrap();
        let now = 5_000_000;
        for t in &a.targets {
            assert!(t.health.failed(now, &a.health));
        }
        let seen = walk(&mut AttemptPlan::new(&s, a, 3, |_| true), now);
        assert_eq!(
            seen.iter().map(|(m, _, _)| m.as_str()).collect::<Vec<_>>(),
            ["b1", "c1"]
        );
        for r in ["b", "c"] {
            let r = s.route(r).unwrap();
            r.targets[0].health.retry_after(now, 30_000);
        }
        let out = AttemptPlan::new(&s, a, 3, |_| true).first(now).err().unwrap();
        assert_eq!(out.retry_after_ms, 1_000, "the ejected targets are back first");
        // Cool-down over: one request probes each ejected target.
        let later = now + 1_000;
        let seen = walk(&mut AttemptPlan::new(&s, a, 3, |_| true), later);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            AttemptPlan::new(&s, a, 3, |_| true).first(later).is_err(),
            "the probes are taken"
        );
    }

    #[test]
    fn attempts_beyond_the_targets_retry_with_capped_jittered_backoff_within_the_budget() {
        let s = load_str(CHAIN, "t", None, 1).unwrap();
        let solo = s.route("solo").unwrap();
        let now = 9_000_000;
        let seen = walk(&mut AttemptPlan::new(&s, solo, 11, |_| true), now);
        assert_eq!(
            seen.len(),
            3,
            "the budget (0.2/s over 10 s) allows two retries: {seen:?}"
        );
        assert!(seen[0].2.is_zero());
        assert!(seen[1].2 <= Duration::from_millis(100) && seen[2].2 <= Duration::from_millis(200));
        let mut plan = AttemptPlan::new(&s, solo, 11, |_| true);
        assert!(plan.first(now).is_ok());
        assert!(plan.next_attempt(now).is_none());
        assert!(plan.ended_by_budget, "the budget is spent");
        let mut spread = std::collections::HashSet::new();
        for seed in 0..200 {
            let d = backoff(&solo.retry, 3, seed);
            assert!(d <= Duration::from_millis(250), "capped: {d:?}");
            spread.insert(d);
        }
        assert!(spread.len() > 50, "jittered");
    }

    #[test]
    fn a_failing_target_retries_within_its_own_budget_though_the_model_has_room() {
        let text = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "m"
targets = [{ provider = "p", model = "bad", weight = 1 }, { provider = "p", model = "good", weight = 0 }]
retry = { budget_ratio = 0.9, target_budget_ratio = 0.5, budget_min_per_sec = 0.0 }
health = { failures = 0, error_rate = 1.0 }
"#;
        let s = load_str(text, "t", None, 1).unwrap();
        let m = s.route("m").unwrap();
        let now = 7_000_000;
        // The model served 100 requests well elsewhere: its budget has room for 90 retries.
        for _ in 0..100 {
            m.budget.first(now);
        }
        let mut granted = 0;
        for seed in 0..20 {
            let mut plan = AttemptPlan::new(&s, m, seed, |_| true);
            let first = plan.first(now).ok().unwrap();
            assert_eq!(first.target.model, "bad", "weight 0 is never first");
            first.target.health.failed(now, &m.health);
            if let Some(next) = plan.next_attempt(now) {
                assert_eq!(next.target.model, "good");
                granted += 1;
            } else {
                assert!(plan.ended_by_budget);
            }
        }
        assert_eq!(granted, 10, "half of the failing target's own 20 requests");
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
        let context = UpstreamError::ContextLength(StatusCode::BAD_REQUEST);
        assert!(!context.is_retryable() && !context.is_target_failure());
        let on = RetryOn {
            context_length: true,
            ..RetryOn::default()
        };
        assert!(context.qualifies(&on));
        assert!(!UpstreamError::Status(StatusCode::BAD_REQUEST).qualifies(&on));
        assert!(!UpstreamError::Status(StatusCode::TOO_MANY_REQUESTS).is_target_failure());
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
