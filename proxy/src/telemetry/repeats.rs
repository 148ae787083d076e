//! Warnings that would repeat: logged once per key per interval, the rest counted.
//!
//! Some conditions hold for as long as the traffic that causes them (a hot limit key under steady
//! load): a line each time says nothing new and buries the rest of the log. [`Repeats`] lets the
//! first occurrence of a key through, then one line per interval that says how many were held
//! back since; every occurrence still counts in the metrics of the caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tollgate_limits::clock::Clock;

/// Keys remembered at most; past it, keys not seen for an interval are forgotten.
const MAX_KEYS: usize = 4096;

/// When each key was last logged, and how many times it came since.
pub struct Repeats {
    interval_ms: u64,
    clock: Arc<dyn Clock>,
    seen: Mutex<HashMap<u64, Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    logged_at_ms: u64,
    held_back: u64,
}

impl Repeats {
    pub fn new(interval_ms: u64, clock: Arc<dyn Clock>) -> Self {
        Repeats {
            interval_ms,
            clock,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an occurrence of `key` is logged now: `Some(n)` with the `n` occurrences held back
    /// since its last line, or `None` (held back, and counted).
    pub fn admit(&self, key: u64) -> Option<u64> {
        let now = self.clock.now_ms();
        let Ok(mut seen) = self.seen.lock() else {
            return Some(0);
        };
        if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
            let horizon = now.saturating_sub(self.interval_ms);
            seen.retain(|_, s| s.logged_at_ms > horizon);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        match seen.get_mut(&key) {
            Some(s) if now < s.logged_at_ms.saturating_add(self.interval_ms) => {
                s.held_back += 1;
                None
            }
            Some(s) => {
                let held = s.held_back;
                *s = Seen {
                    logged_at_ms: now,
                    held_back: 0,
                };
                Some(held)
            }
            None => {
                seen.insert(
                    key,
                    Seen {
                        logged_at_ms: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_limits::ManualClock;

    #[test]
    fn a_key_is_logged_once_per_interval_with_the_count_held_back() {
        let clock = Arc::new(ManualClock::new(1_000));
        let repeats = Repeats::new(60_000, clock.clone());
        assert_eq!(repeats.admit(7), Some(0), "the first occurrence is logged");
        for _ in 0..59 {
            clock.advance_ms(1_000);
            assert_eq!(repeats.admit(7), None);
        }
        assert_eq!(repeats.admit(8), Some(0), "another key has its own interval");
        clock.advance_ms(1_000);
        assert_eq!(
            repeats.admit(7),
            Some(59),
            "one line a minute, saying how many were held back"
        );
        assert_eq!(repeats.admit(7), None);
    }

    #[test]
    fn many_keys_do_not_grow_it_without_bound() {
        let clock = Arc::new(ManualClock::new(0));
        let repeats = Repeats::new(1_000, clock.clone());
        for k in 0..(3 * MAX_KEYS as u64) {
            clock.advance_ms(1);
            assert_eq!(repeats.admit(k), Some(0));
        }
        assert!(repeats.seen.lock().unwrap().len() <= MAX_KEYS);
    }
}
