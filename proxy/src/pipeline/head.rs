//! The request head within the gateway's limits: header count, header bytes, request target.
//!
//! Pingora parses heads up to its own hard limits (256 headers, 1 MiB); these are the operator's
//! lower ones, checked on the parsed head before anything else reads it. A refusal is `431`
//! (headers) or `414` (request target), as JSON, and closes the connection.

use http::{HeaderMap, Uri};

use crate::error::{ApiError, ErrorCode};

/// Largest request head the gateway reads (CLI flags).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_headers: usize,
    /// Header names and values together, with their separators.
    pub max_header_bytes: usize,
    /// The request target (path and query).
    pub max_target_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_headers: 100,
            max_header_bytes: 32 * 1024,
            max_target_bytes: 8 * 1024,
        }
    }
}

/// Check a parsed head against `limits`.
pub fn check(limits: &HeadLimits, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_target_bytes {
        return Err(ApiError::new(
            ErrorCode::UriTooLong,
            format!(
                "The request target is {target} bytes; at most {} are accepted.",
                limits.max_target_bytes
            ),
        ));
    }
    if headers.len() > limits.max_headers {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "The request has {} headers; at most {} are accepted.",
                headers.len(),
                limits.max_headers
            ),
        ));
    }
    let bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if bytes > limits.max_header_bytes {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "The request headers are {bytes} bytes; at most {} are accepted.",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn headers(n: usize, value_len: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        for i in 0..n {
            h.append(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_str(&"v".repeat(value_len)).unwrap(),
            );
        }
        h
    }

    #[test]
    fn heads_past_each_limit_are_refused_with_their_status() {
        let limits = HeadLimits::default();
        let uri: Uri = "/v1/chat/completions".parse().unwrap();
        assert!(check(&limits, &uri, &headers(100, 10)).is_ok());
        let e = check(&limits, &uri, &headers(101, 1)).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code), (431, ErrorCode::HeadersTooLarge));
        let e = check(&limits, &uri, &headers(2, 20_000)).unwrap_err();
        assert_eq!(e.status().as_u16(), 431);
        let long: Uri = format!("/v1/models?q={}", "a".repeat(9000)).parse().unwrap();
        let e = check(&limits, &long, &headers(1, 1)).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code), (414, ErrorCode::UriTooLong));
    }
}
