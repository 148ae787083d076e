//! Token-bucket arithmetic, free of storage and time sources.
//!
//! A [`Limit`] of `capacity` per `period` is a bucket that holds at most `capacity` tokens and
//! refills evenly, `capacity / period` per millisecond. A request takes its cost from the bucket
//! when it is admitted; once its real cost is known the difference is charged or given back
//! ([`Bucket::adjust`]). A charge past the reservation can take the level below zero: that debt
//! is repaid by refill before anything else is admitted, so a request that overran its reserve
//! still counts in full.

/// A limit: `capacity` tokens (or requests), refilled evenly over `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub capacity: u64,
    pub period_ms: u64,
}

impl Limit {
    pub fn new(capacity: u64, period_ms: u64) -> Self {
        Limit {
            capacity,
            period_ms: period_ms.max(1),
        }
    }

    pub fn capacity_f(&self) -> f64 {
        self.capacity as f64
    }

    /// Tokens refilled per millisecond.
    pub fn rate_per_ms(&self) -> f64 {
        self.capacity as f64 / self.period_ms as f64
    }

    /// Milliseconds until `missing` more tokens have been refilled.
    pub fn ms_to_refill(&self, missing: f64) -> u64 {
        if missing <= 0.0 {
            return 0;
        }
        let rate = self.rate_per_ms();
        if rate <= 0.0 {
            return self.period_ms;
        }
        (missing / rate).ceil() as u64
    }
}

/// What a reservation got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Taken; `remaining` tokens are left (as far as this node knows).
    Admitted { remaining: u64 },
    /// Not taken: `retry_after_ms` until it would fit (if nothing else takes the refill).
    Refused { remaining: u64, retry_after_ms: u64 },
    /// The cost is larger than the whole capacity: it can never fit.
    TooLarge,
    /// The shared store is needed (fail-closed rule, or exact mode) and did not answer.
    Unavailable,
}

impl Decision {
    pub fn admitted(&self) -> bool {
        matches!(self, Decision::Admitted { .. })
    }
}

/// A bucket's level at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    level: f64,
    at_ms: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn full(capacity: f64, now_ms: u64) -> Self {
        Bucket {
            level: capacity,
            at_ms: now_ms,
        }
    }

    pub fn with_level(level: f64, now_ms: u64) -> Self {
        Bucket { level, at_ms: now_ms }
    }

    pub fn level(&self) -> f64 {
        self.level
    }

    /// Add what refilled since the last update, up to `capacity`. Returns the tokens added. A
    /// clock that went backwards adds nothing (and does not move the bucket's time back).
    pub fn refill(&mut self, capacity: f64, rate_per_ms: f64, now_ms: u64) -> f64 {
        if now_ms <= self.at_ms {
            return 0.0;
        }
        let elapsed = (now_ms - self.at_ms) as f64;
        self.at_ms = now_ms;
        if self.level >= capacity {
            return 0.0;
        }
        let before = self.level;
        self.level = (self.level + elapsed * rate_per_ms).min(capacity);
        self.level - before
    }

    /// Move the bucket's time to `now_ms` without refilling.
    pub fn touch(&mut self, now_ms: u64) {
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Take `cost` if the level (after refill) covers it.
    pub fn take(&mut self, limit: &Limit, cost: u64, now_ms: u64) -> Decision {
        self.refill(limit.capacity_f(), limit.rate_per_ms(), now_ms);
        self.take_refilled(limit, cost)
    }

    /// Take `cost` from the current level, without refilling first.
    pub fn take_refilled(&mut self, limit: &Limit, cost: u64) -> Decision {
        if cost > limit.capacity {
            return Decision::TooLarge;
        }
        let cost = cost as f64;
        if self.level >= cost {
            self.level -= cost;
            Decision::Admitted {
                remaining: self.level.max(0.0) as u64,
            }
        } else {
            Decision::Refused {
                remaining: self.level.max(0.0) as u64,
                retry_after_ms: limit.ms_to_refill(cost - self.level),
            }
        }
    }

    /// Charge `delta` more tokens (positive) or give `-delta` back (negative). A refund never
    /// lifts the level above `capacity`; a charge may take it below zero.
    pub fn adjust(&mut self, capacity: f64, delta: f64) {
        if delta >= 0.0 {
            self.level -= delta;
        } else {
            self.level = (self.level - delta).min(capacity.max(self.level));
        }
    }

    /// Add `tokens` without the capacity check (tokens granted by the shared store).
    pub fn add(&mut self, tokens: f64) {
        self.level += tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn refills_evenly_and_never_past_capacity() {
        let l = Limit::new(600, MINUTE);
        let mut b = Bucket::with_level(0.0, 0);
        b.refill(l.capacity_f(), l.rate_per_ms(), 1_000);
        assert!((b.level() - 10.0).abs() < 1e-9, "{}", b.level());
        b.refill(l.capacity_f(), l.rate_per_ms(), 10 * MINUTE);
        assert_eq!(b.level(), 600.0);
    }

    #[test]
    fn takes_what_fits_and_says_when_the_rest_will() {
        let l = Limit::new(100, 1_000);
        let mut b = Bucket::full(100.0, 0);
        assert_eq!(b.take(&l, 60, 0), Decision::Admitted { remaining: 40 });
        assert_eq!(
            b.take(&l, 60, 0),
            Decision::Refused {
                remaining: 40,
                retry_after_ms: 200
            }
        );
        assert_eq!(b.take(&l, 60, 200), Decision::Admitted { remaining: 0 });
        assert_eq!(b.take(&l, 101, 10_000), Decision::TooLarge);
    }

    #[test]
    fn overrun_is_debt_repaid_by_refill_first() {
        let l = Limit::new(100, 1_000);
        let mut b = Bucket::full(100.0, 0);
        assert!(b.take(&l, 50, 0).admitted());
        b.adjust(100.0, 100.0); // the request used 150, not 50
        assert_eq!(b.level(), -50.0);
        assert!(!b.take(&l, 1, 500).admitted(), "debt of 50 is repaid first");
        assert!(b.take(&l, 1, 510).admitted());
    }

    #[test]
    fn refund_returns_tokens_but_not_past_capacity() {
        let l = Limit::new(100, 1_000);
        let mut b = Bucket::full(100.0, 0);
        assert!(b.take(&l, 80, 0).admitted());
        b.adjust(100.0, -50.0);
        assert_eq!(b.level(), 70.0);
        b.adjust(100.0, -500.0);
        assert_eq!(b.level(), 100.0);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let l = Limit::new(100, 1_000);
        let mut b = Bucket::with_level(0.0, 5_000);
        b.refill(l.capacity_f(), l.rate_per_ms(), 4_000);
        assert_eq!(b.level(), 0.0);
        b.refill(l.capacity_f(), l.rate_per_ms(), 5_100);
        assert!((b.level() - 10.0).abs() < 1e-9);
    }

    proptest! {
        /// Over any sequence of reservations at non-decreasing times, what is admitted never
        /// exceeds the capacity plus what refilled in the elapsed time.
        #[test]
        fn admitted_never_exceeds_capacity_plus_refill(
            cap in 1u64..10_000,
            period in 1u64..100_000,
            steps in proptest::collection::vec((0u64..5_000, 0u64..2_000), 1..200),
        ) {
            let l = Limit::new(cap, period);
            let mut b = Bucket::full(cap as f64, 0);
            let mut now = 0;
            let mut admitted = 0u64;
            for (dt, cost) in steps {
                now += dt;
                if b.take(&l, cost, now).admitted() {
                    admitted += cost;
                }
                prop_assert!(b.level() <= cap as f64 + 1e-6);
                prop_assert!(b.level() >= -1e-6);
            }
            let bound = cap as f64 + now as f64 * l.rate_per_ms();
            prop_assert!(admitted as f64 <= bound + 1e-6, "{admitted} > {bound}");
        }

        /// Reserve then reconcile to the real cost is the same as having charged the real cost.
        #[test]
        fn reserve_then_reconcile_equals_charging_the_real_cost(
            cap in 1u64..10_000,
            reserve in 0u64..10_000,
            real in 0u64..20_000,
        ) {
            let l = Limit::new(cap, 1_000);
            let mut b = Bucket::full(cap as f64, 0);
            if b.take(&l, reserve, 0).admitted() {
                b.adjust(cap as f64, real as f64 - reserve as f64);
                let expected = (cap as f64 - real as f64).min(cap as f64);
                prop_assert!((b.level() - expected).abs() < 1e-6);
            }
        }

        /// A refused request is told a wait after which it fits, and not much more than needed.
        #[test]
        fn retry_after_is_when_it_fits(cap in 1u64..10_000, period in 1u64..100_000, taken in 0u64..10_000, cost in 0u64..10_000) {
            let l = Limit::new(cap, period);
            let mut b = Bucket::full(cap as f64, 0);
            let _ = b.take(&l, taken.min(cap), 0);
            if let Decision::Refused { retry_after_ms, .. } = b.take(&l, cost, 0) {
                let mut later = b;
                prop_assert!(later.take(&l, cost, retry_after_ms).admitted());
                if retry_after_ms > 2 {
                    // (2 ms of slack for the float division's rounding)
                    let mut earlier = b;
                    prop_assert!(!earlier.take(&l, cost, retry_after_ms - 2).admitted());
                }
            }
        }
    }
}
