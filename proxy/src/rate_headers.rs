//! The OpenAI-style `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, shared by
//! quotas and rate limits, and the `Retry-After` of their refusals.
//!
//! They go on every answer a quota or limit applies to, so they are cheap: admission keeps only
//! the numbers ([`RateHeaders`]), and the values are written when the response header is built,
//! each in a buffer of its exact size (one allocation per value, no shared reference count to
//! take and drop; a fallback that builds the header again writes them again rather than
//! cloning). Names are constants.

use http::{HeaderMap, HeaderName, HeaderValue};

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
    /// Requests in flight at once (a concurrency rule): a limit and what remains, no reset.
    Concurrent,
}

const REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];
const CONCURRENT: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-limit-concurrent"),
    HeaderName::from_static("x-ratelimit-remaining-concurrent"),
];

/// One counter as a client sees it: its limit, what remains, and the milliseconds until it is
/// full again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

impl Counter {
    /// Put this counter in `slot` unless the one there already has fewer remaining: the
    /// tightest of several quotas or buckets is the one a client is told about.
    pub fn keep_tighter(self, slot: &mut Option<Counter>) {
        if slot.is_none_or(|t| self.remaining < t.remaining) {
            *slot = Some(self);
        }
    }
}

/// The rate headers an answer carries, as numbers until they are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// The tightest request counter (a quota's, or a limit's when tighter).
    pub requests: Option<Counter>,
    /// The tightest token bucket.
    pub tokens: Option<Counter>,
    /// The tightest concurrency rule (`reset_ms` unused: a slot frees when a request ends).
    pub concurrent: Option<Counter>,
    /// Refusals only: when to try again.
    pub retry_after_secs: Option<u64>,
}

impl RateHeaders {
    /// A refusal's headers: the counter that refused, and when to retry.
    pub fn refusal(unit: Unit, counter: Counter, retry_after_secs: u64) -> RateHeaders {
        let mut h = RateHeaders {
            retry_after_secs: Some(retry_after_secs),
            ..RateHeaders::default()
        };
        *h.slot(unit) = Some(counter);
        h
    }

    /// Only `Retry-After` (the store that decides could not be asked).
    pub fn retry_after(secs: u64) -> RateHeaders {
        RateHeaders {
            retry_after_secs: Some(secs),
            ..RateHeaders::default()
        }
    }

    pub fn slot(&mut self, unit: Unit) -> &mut Option<Counter> {
        match unit {
            Unit::Requests => &mut self.requests,
            Unit::Tokens => &mut self.tokens,
            Unit::Concurrent => &mut self.concurrent,
        }
    }

    /// Take `later`'s values where it has them (a refusal's over what admission set).
    pub fn merge(&mut self, later: RateHeaders) {
        self.requests = later.requests.or(self.requests);
        self.tokens = later.tokens.or(self.tokens);
        self.concurrent = later.concurrent.or(self.concurrent);
        self.retry_after_secs = later.retry_after_secs.or(self.retry_after_secs);
    }

    /// Take each of `later`'s counters where it is tighter (one admission after another: a
    /// rate limit's `-requests` headers replace a quota's only when fewer requests remain).
    pub fn tighten(&mut self, later: RateHeaders) {
        if let Some(c) = later.requests {
            c.keep_tighter(&mut self.requests);
        }
        if let Some(c) = later.tokens {
            c.keep_tighter(&mut self.tokens);
        }
        if let Some(c) = later.concurrent {
            c.keep_tighter(&mut self.concurrent);
        }
        self.retry_after_secs = later.retry_after_secs.or(self.retry_after_secs);
    }

    /// How many header fields [`RateHeaders::write`] adds.
    pub fn len(&self) -> usize {
        3 * (self.requests.is_some() as usize + self.tokens.is_some() as usize)
            + 2 * self.concurrent.is_some() as usize
            + self.retry_after_secs.is_some() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Put the headers in `headers`, replacing any of the same name.
    pub fn write(&self, headers: &mut HeaderMap) {
        for (names, counter) in [(&REQUESTS, self.requests), (&TOKENS, self.tokens)] {
            let Some(c) = counter else { continue };
            let [n_limit, n_remaining, n_reset] = names.clone();
            headers.insert(n_limit, number(c.limit));
            headers.insert(n_remaining, number(c.remaining));
            headers.insert(n_reset, value(Reset::of(c.reset_ms).as_bytes()));
        }
        if let Some(c) = self.concurrent {
            let [n_limit, n_remaining] = CONCURRENT.clone();
            headers.insert(n_limit, number(c.limit));
            headers.insert(n_remaining, number(c.remaining));
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(http::header::RETRY_AFTER, number(secs));
        }
    }
}

/// A number as a header value, in a buffer of its exact size.
fn number(n: u64) -> HeaderValue {
    value(itoa::Buffer::new().format(n).as_bytes())
}

/// Digits and unit letters only: always a valid header value.
fn value(text: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(text).unwrap_or(HeaderValue::from_static("0"))
}

/// An OpenAI-style reset duration: `250ms`, `12s`, `6m0s`, `1h2m3s`.
pub fn reset_text(ms: u64) -> String {
    String::from_utf8_lossy(Reset::of(ms).as_bytes()).into_owned()
}

/// A reset duration written on the stack: at most `5124095576030h25m52s` (20 bytes).
struct Reset {
    buf: [u8; 32],
    len: usize,
}

impl Reset {
    fn of(ms: u64) -> Reset {
        let mut r = Reset { buf: [0; 32], len: 0 };
        let mut num = itoa::Buffer::new();
        if ms < 1_000 {
            r.push(num.format(ms).as_bytes());
            r.push(b"ms");
            return r;
        }
        let secs = ms.div_ceil(1_000);
        let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
        if h > 0 {
            r.push(num.format(h).as_bytes());
            r.push(b"h");
        }
        if h > 0 || m > 0 {
            r.push(num.format(m).as_bytes());
            r.push(b"m");
        }
        r.push(num.format(s).as_bytes());
        r.push(b"s");
        r
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(slot) = self.buf.get_mut(self.len..end) {
            slot.copy_from_slice(bytes);
            self.len = end;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openai_s() {
        assert_eq!(reset_text(0), "0ms");
        assert_eq!(reset_text(250), "250ms");
        assert_eq!(reset_text(1_000), "1s");
        assert_eq!(reset_text(1_001), "2s");
        assert_eq!(reset_text(360_000), "6m0s");
        assert_eq!(reset_text(3_600_000), "1h0m0s");
        assert_eq!(reset_text(3_723_000), "1h2m3s");
        assert_eq!(reset_text(u64::MAX), "5124095576030h25m52s");
    }

    fn pairs(h: &RateHeaders) -> Vec<(String, String)> {
        let mut map = HeaderMap::new();
        h.write(&mut map);
        assert_eq!(map.len(), h.len());
        map.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn each_counter_writes_its_own_three_values() {
        let mut h = RateHeaders::default();
        assert!(h.is_empty());
        *h.slot(Unit::Tokens) = Some(Counter {
            limit: 1_000_000,
            remaining: 999_950,
            reset_ms: 61_000,
        });
        let mut got = pairs(&h);
        got.sort();
        let want = [
            ("x-ratelimit-limit-tokens", "1000000"),
            ("x-ratelimit-remaining-tokens", "999950"),
            ("x-ratelimit-reset-tokens", "1m1s"),
        ];
        assert_eq!(got, want.map(|(n, v)| (n.to_string(), v.to_string())));
        let r = RateHeaders::refusal(
            Unit::Requests,
            Counter {
                limit: 20,
                remaining: 0,
                reset_ms: 5,
            },
            1,
        );
        let got = pairs(&r);
        assert!(got.contains(&("x-ratelimit-limit-requests".into(), "20".into())));
        assert!(got.contains(&("x-ratelimit-remaining-requests".into(), "0".into())));
        assert!(got.contains(&("x-ratelimit-reset-requests".into(), "5ms".into())));
        assert!(got.contains(&("retry-after".into(), "1".into())));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn a_refusal_s_values_replace_admission_s() {
        let admitted = Counter {
            limit: 10,
            remaining: 9,
            reset_ms: 1_000,
        };
        let mut h = RateHeaders {
            requests: Some(admitted),
            ..RateHeaders::default()
        };
        let tokens = Counter {
            limit: 100,
            remaining: 3,
            reset_ms: 500,
        };
        h.merge(RateHeaders::refusal(Unit::Tokens, tokens, 2));
        assert_eq!(h.requests, Some(admitted), "kept where the refusal says nothing");
        assert_eq!(h.tokens, Some(tokens));
        assert_eq!(h.retry_after_secs, Some(2));
        let newer = Counter {
            remaining: 0,
            ..admitted
        };
        h.merge(RateHeaders::refusal(Unit::Requests, newer, 7));
        assert_eq!((h.requests, h.retry_after_secs), (Some(newer), Some(7)));
        h.merge(RateHeaders::default());
        assert_eq!((h.requests, h.tokens), (Some(newer), Some(tokens)));
    }

    #[test]
    fn a_later_admission_s_counters_count_only_where_tighter() {
        let quota = Counter {
            limit: 20,
            remaining: 5,
            reset_ms: 1_000,
        };
        let mut h = RateHeaders {
            requests: Some(quota),
            ..RateHeaders::default()
        };
        let looser = Counter {
            limit: 100,
            remaining: 50,
            reset_ms: 60_000,
        };
        let tokens = Counter {
            limit: 1_000,
            remaining: 900,
            reset_ms: 60_000,
        };
        h.tighten(RateHeaders {
            requests: Some(looser),
            tokens: Some(tokens),
            concurrent: None,
            retry_after_secs: None,
        });
        assert_eq!((h.requests, h.tokens), (Some(quota), Some(tokens)));
        let same = Counter { remaining: 5, ..looser };
        h.tighten(RateHeaders {
            requests: Some(same),
            ..RateHeaders::default()
        });
        assert_eq!(h.requests, Some(quota), "a tie keeps the first");
        let tighter = Counter { remaining: 4, ..looser };
        h.tighten(RateHeaders {
            requests: Some(tighter),
            ..RateHeaders::default()
        });
        assert_eq!(h.requests, Some(tighter));
    }

    #[test]
    fn a_concurrency_counter_writes_its_limit_and_what_remains() {
        let slots = Counter {
            limit: 10,
            remaining: 3,
            reset_ms: 0,
        };
        let h = RateHeaders::refusal(Unit::Concurrent, slots, 2);
        let mut headers = HeaderMap::new();
        h.write(&mut headers);
        assert_eq!(headers.len(), h.len());
        assert_eq!(headers["x-ratelimit-limit-concurrent"], "10");
        assert_eq!(headers["x-ratelimit-remaining-concurrent"], "3");
        assert_eq!(headers["retry-after"], "2");
    }
}
