//! The OpenAI-style `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, shared by
//! quotas and rate limits.
//!
//! They go on every answer a quota or limit applies to, so they are built cheaply: names are
//! constants, and the three values are written into one buffer and handed out as slices of it
//! (one allocation for the three, no intermediate strings).

use bytes::BytesMut;
use http::{HeaderName, HeaderValue};

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
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

/// The three headers of a counter: its limit, what remains, and when it is full again.
///
/// Each value owns its small buffer: numbers go in unvalidated (`From<u64>`), and no buffer is
/// shared, so building and dropping them takes no atomic reference counts.
pub fn headers(unit: Unit, limit: u64, remaining: u64, reset_ms: u64) -> [(HeaderName, HeaderValue); 3] {
    let mut reset = BytesMut::with_capacity(16);
    push_reset(&mut reset, reset_ms);
    // Digits and unit letters only: always a valid header value.
    let reset = HeaderValue::from_maybe_shared(reset.freeze()).unwrap_or(HeaderValue::from_static("0"));
    let [n_limit, n_remaining, n_reset] = match unit {
        Unit::Requests => REQUESTS,
        Unit::Tokens => TOKENS,
    };
    [
        (n_limit, HeaderValue::from(limit)),
        (n_remaining, HeaderValue::from(remaining)),
        (n_reset, reset),
    ]
}

/// An OpenAI-style reset duration: `250ms`, `12s`, `6m0s`, `1h2m3s`.
pub fn reset_text(ms: u64) -> String {
    let mut buf = BytesMut::with_capacity(16);
    push_reset(&mut buf, ms);
    String::from_utf8_lossy(&buf).into_owned()
}

fn push_reset(out: &mut BytesMut, ms: u64) {
    let mut num = itoa::Buffer::new();
    if ms < 1_000 {
        out.extend_from_slice(num.format(ms).as_bytes());
        out.extend_from_slice(b"ms");
        return;
    }
    let secs = ms.div_ceil(1_000);
    let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
    if h > 0 {
        out.extend_from_slice(num.format(h).as_bytes());
        out.extend_from_slice(b"h");
    }
    if h > 0 || m > 0 {
        out.extend_from_slice(num.format(m).as_bytes());
        out.extend_from_slice(b"m");
    }
    out.extend_from_slice(num.format(s).as_bytes());
    out.extend_from_slice(b"s");
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
    }

    #[test]
    fn the_three_headers_carry_their_own_values() {
        let h = headers(Unit::Tokens, 1_000_000, 999_950, 61_000);
        let pairs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(
            pairs,
            [
                ("x-ratelimit-limit-tokens", "1000000"),
                ("x-ratelimit-remaining-tokens", "999950"),
                ("x-ratelimit-reset-tokens", "1m1s"),
            ]
        );
        let h = headers(Unit::Requests, 20, 0, 5);
        assert_eq!(h[0].0.as_str(), "x-ratelimit-limit-requests");
        assert_eq!(h[1].1.to_str().unwrap(), "0");
        assert_eq!(h[2].1.to_str().unwrap(), "5ms");
    }
}
