//! What this node has learnt about its upstreams: per target, passive health (ejected after
//! consecutive failures or a high error rate, for a cool-down that grows on repeat, then let
//! back in through one probe at a time) and the provider's own "retry after"; per route and per
//! target, the retry budget that keeps retries a bounded fraction of first attempts.
//!
//! All of it is per node, lock-free (atomics), and driven by a millisecond clock passed in, so
//! tests move time by hand. It lives beside the config (each target and route holds its
//! `Arc`) and is carried over to the new config on reload for targets and routes that stay.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::fallback::{HealthPolicy, RetryPolicy};

/// Longest "retry after" a provider can impose on a target.
const MAX_RETRY_AFTER_MS: u64 = 300_000;

/// Length of the windows the error rate and the retry budget count over.
pub const WINDOW_MS: u64 = 10_000;

/// Whether a target may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Healthy: try it.
    Open,
    /// Ejected, cool-down over: one request may try it (whoever claimed the probe).
    Probe,
    /// Out until this time (ejected, or the provider asked to wait).
    OutUntil(u64),
}

/// Two adjacent counting windows of `N` counters: the current and the previous one, weighted
/// by overlap.
#[derive(Debug)]
struct Window<const N: usize> {
    /// Start of the current window (ms).
    start: AtomicU64,
    current: [AtomicU64; N],
    previous: [AtomicU64; N],
}

impl<const N: usize> Default for Window<N> {
    fn default() -> Self {
        Window {
            start: AtomicU64::new(0),
            current: std::array::from_fn(|_| AtomicU64::new(0)),
            previous: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const N: usize> Window<N> {
    fn roll(&self, now: u64) {
        let start = self.start.load(Ordering::Relaxed);
        if now < start + WINDOW_MS {
            return;
        }
        if self
            .start
            .compare_exchange(start, now - now % WINDOW_MS, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let adjacent = now < start + 2 * WINDOW_MS;
        for k in 0..N {
            let c = self.current[k].swap(0, Ordering::Relaxed);
            self.previous[k].store(if adjacent { c } else { 0 }, Ordering::Relaxed);
        }
    }

    fn add(&self, now: u64, k: usize) {
        self.roll(now);
        self.current[k].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether one more retry (counter `retries`) stays within `ratio` × counter `base` plus the
    /// policy's floor of `budget_min_per_sec` per second, over the window.
    fn room_for_retry(&self, now: u64, base: usize, retries: usize, ratio: f64, policy: &RetryPolicy) -> bool {
        let floor = policy.budget_min_per_sec * (WINDOW_MS as f64 / 1000.0);
        self.count(now, retries) + 1.0 <= ratio * self.count(now, base) + floor
    }

    /// Counter `k` over the last [`WINDOW_MS`] (the previous window weighted by how much of it
    /// is still inside).
    fn count(&self, now: u64, k: usize) -> f64 {
        self.roll(now);
        let start = self.start.load(Ordering::Relaxed);
        let into = now.saturating_sub(start).min(WINDOW_MS) as f64 / WINDOW_MS as f64;
        self.current[k].load(Ordering::Relaxed) as f64 + self.previous[k].load(Ordering::Relaxed) as f64 * (1.0 - into)
    }
}

/// One target's health on this node.
#[derive(Debug, Default)]
pub struct TargetHealth {
    consecutive: AtomicU32,
    /// Requests (0), failures (1) and the retries its failures asked for (2) over the window.
    window: Window<3>,
    /// Ejected until this time (0: not ejected).
    ejected_until: AtomicU64,
    /// Ejections in a row (the cool-down doubles with each).
    ejections: AtomicU32,
    /// A probe is under way (while ejected).
    probing: AtomicU32,
    /// The provider asked not to be called before this time.
    retry_after_until: AtomicU64,
}

impl TargetHealth {
    /// Whether the target may be tried at `now`; a `Probe` answer has claimed the one probe.
    pub fn availability(&self, now: u64) -> Availability {
        let wait = self.retry_after_until.load(Ordering::Relaxed);
        if wait > now {
            return Availability::OutUntil(wait);
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return Availability::Open;
        }
        if until > now {
            return Availability::OutUntil(until);
        }
        match self.probing.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => Availability::Probe,
            // Someone else probes: out until they know (at most one more cool-down).
            Err(_) => Availability::OutUntil(now + 1_000),
        }
    }

    /// Whether the target is ejected at `now` (for the admin API and metrics).
    pub fn ejected(&self, now: u64) -> Option<u64> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until != 0).then_some(until.saturating_sub(now))
    }

    /// How long the provider asked to be left alone, from `now` (0: not waiting).
    pub fn waiting(&self, now: u64) -> u64 {
        self.retry_after_until.load(Ordering::Relaxed).saturating_sub(now)
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// The provider asked to wait `ms` before the next request.
    pub fn retry_after(&self, now: u64, ms: u64) {
        self.retry_after_until
            .fetch_max(now + ms.min(MAX_RETRY_AFTER_MS), Ordering::Relaxed);
    }

    /// An attempt answered (whatever the status, it was not the target's failure).
    pub fn succeeded(&self, now: u64) {
        self.window.add(now, 0);
        self.consecutive.store(0, Ordering::Relaxed);
        if self.ejected_until.load(Ordering::Relaxed) != 0 {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            self.probing.store(0, Ordering::Release);
        }
    }

    /// Whether its failures may ask for one more retry at `now`: the target's own retry budget,
    /// the retries after its failures within `target_budget_ratio` of the requests it had (so
    /// a failing target cannot push more than that share of its own load onto the others).
    pub fn retry_allowed(&self, now: u64, policy: &RetryPolicy) -> bool {
        self.window
            .room_for_retry(now, 0, 2, policy.target_budget_ratio, policy)
    }

    /// A retry after one of its failures was made at `now`.
    pub fn retried(&self, now: u64) {
        self.window.add(now, 2);
    }

    /// An attempt failed (transport, timeout, 5xx, 429). Returns whether this ejected it.
    pub fn failed(&self, now: u64, policy: &HealthPolicy) -> bool {
        self.window.add(now, 0);
        self.window.add(now, 1);
        let consecutive = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let probing = self.probing.swap(0, Ordering::AcqRel) == 1;
        let requests = self.window.count(now, 0);
        let failures = self.window.count(now, 1);
        let by_rate = policy.error_rate < 1.0
            && requests >= f64::from(policy.min_requests)
            && failures / requests >= policy.error_rate;
        let trip = probing || (policy.failures > 0 && consecutive >= policy.failures) || by_rate;
        if !trip {
            return false;
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let cooldown = policy.cooldown_ms.saturating_mul(1u64 << n).min(policy.max_cooldown_ms);
        self.ejected_until.store(now + cooldown.max(1), Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        true
    }
}

/// A route's retry budget: retries over the window stay within `ratio` of first attempts plus
/// a floor of `min_per_sec` per second.
#[derive(Debug, Default)]
pub struct RetryBudget {
    /// First attempts (0) and retries (1).
    window: Window<2>,
}

impl RetryBudget {
    /// A request's first attempt.
    pub fn first(&self, now: u64) {
        self.window.add(now, 0);
    }

    /// Whether one more retry fits at `now` (not counted: see [`RetryBudget::retried`]).
    pub fn allows(&self, now: u64, policy: &RetryPolicy) -> bool {
        self.window.room_for_retry(now, 0, 1, policy.budget_ratio, policy)
    }

    /// A retry was made at `now`.
    pub fn retried(&self, now: u64) {
        self.window.add(now, 1);
    }
}

/// A provider's "retry after" from its response headers: `Retry-After` (seconds, or an HTTP
/// date), else the longest of `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (`1s`,
/// `6m0s`, `20ms`, or plain seconds), in milliseconds.
pub fn retry_after_ms(headers: &http::HeaderMap, now_unix_ms: u64) -> Option<u64> {
    if let Some(v) = headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Ok(secs) = v.parse::<f64>() {
            return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            let at = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            return Some(at.saturating_sub(now_unix_ms));
        }
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .filter_map(duration_ms)
        .max()
}

/// `1s`, `6m0s`, `1h2m3.5s`, `20ms`, or a plain number of seconds, in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit..];
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failures: 3,
            error_rate: 0.5,
            min_requests: 20,
            cooldown_ms: 1_000,
            max_cooldown_ms: 8_000,
            ..HealthPolicy::default()
        }
    }

    #[test]
    fn consecutive_failures_eject_with_a_growing_cooldown_and_one_probe_readmits() {
        let h = TargetHealth::default();
        let p = policy();
        let mut now = 100_000;
        assert!(!h.failed(now, &p));
        assert!(!h.failed(now, &p));
        assert!(h.failed(now, &p), "the third failure in a row ejects");
        assert_eq!(h.availability(now), Availability::OutUntil(now + 1_000));
        now += 1_000;
        assert_eq!(h.availability(now), Availability::Probe);
        assert!(
            matches!(h.availability(now), Availability::OutUntil(_)),
            "one probe at a time"
        );
        assert!(h.failed(now, &p), "a failed probe ejects again");
        assert_eq!(
            h.availability(now),
            Availability::OutUntil(now + 2_000),
            "cool-down doubled"
        );
        now += 2_000;
        assert_eq!(h.availability(now), Availability::Probe);
        h.succeeded(now);
        assert_eq!(h.availability(now), Availability::Open);
        assert_eq!(h.ejected(now), None);
        // Back to the first cool-down after a success.
        for _ in 0..3 {
            h.failed(now, &p);
        }
        assert_eq!(h.availability(now), Availability::OutUntil(now + 1_000));
    }

    #[test]
    fn a_high_error_rate_ejects_without_consecutive_failures() {
        let h = TargetHealth::default();
        let p = HealthPolicy {
            failures: 0,
            ..policy()
        };
        let now = 50_000;
        let mut ejected = false;
        for i in 0..40 {
            if i % 3 == 0 {
                h.succeeded(now);
            } else {
                ejected |= h.failed(now, &p);
            }
        }
        assert!(ejected, "two failures in three over 20 requests");
        let ok = TargetHealth::default();
        for i in 0..40 {
            if i % 3 == 0 {
                assert!(!ok.failed(now, &p));
            } else {
                ok.succeeded(now);
            }
        }
    }

    #[test]
    fn retry_after_keeps_a_target_out_until_then() {
        let h = TargetHealth::default();
        h.retry_after(10_000, 30_000);
        assert_eq!(h.availability(39_999), Availability::OutUntil(40_000));
        assert_eq!(h.availability(40_000), Availability::Open);
        h.retry_after(0, u64::MAX / 2);
        assert_eq!(h.availability(1), Availability::OutUntil(MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn the_budget_caps_retries_at_a_fraction_of_first_attempts() {
        let b = RetryBudget::default();
        let p = RetryPolicy {
            budget_ratio: 0.2,
            budget_min_per_sec: 0.5,
            ..RetryPolicy::default()
        };
        let now = 1_000_000;
        for _ in 0..100 {
            b.first(now);
        }
        // As the attempt plan asks: a retry is made (and counted) only when it fits.
        let try_retry = |now| {
            let fits = b.allows(now, &p);
            if fits {
                b.retried(now);
            }
            fits
        };
        let granted = (0..100).filter(|_| try_retry(now)).count();
        // 0.2 × 100 + 0.5/s × 10 s.
        assert_eq!(granted, 25);
        // The window slides: later, the old counts fade out.
        assert!(try_retry(now + 3 * WINDOW_MS));
    }

    #[test]
    fn provider_retry_hints_are_read() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "30".parse().unwrap());
        assert_eq!(retry_after_ms(&h, 0), Some(30_000));
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:10 GMT".parse().unwrap());
        assert_eq!(retry_after_ms(&h, 1_445_412_480_000), Some(10_000));
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        assert_eq!(retry_after_ms(&h, 0), Some(360_000));
        assert_eq!(duration_ms("20ms"), Some(20));
        assert_eq!(duration_ms("1h2m3.5s"), Some(3_723_500));
        assert_eq!(duration_ms("soon"), None);
        assert_eq!(retry_after_ms(&http::HeaderMap::new(), 0), None);
    }
}
