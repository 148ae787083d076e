//! Who is calling: the presented key, the consumer it belongs to, and what that consumer may do.
//!
//! Keys are read from `Authorization: Bearer`, `x-api-key` or `api-key` (Azure style). A missing
//! or unknown key is a 401 whose message never echoes the key; a known key used for an endpoint
//! or model its consumer may not use is a 403.

use std::sync::Arc;

use http::HeaderMap;

use super::endpoint::Endpoint;
use crate::api_keys::{KeyRegistry, Verdict};
use crate::config::consumers::{Consumer, Consumers};
use crate::config::Route;
use crate::error::{ApiError, ErrorCode};
use crate::key_hash::hash_key;

/// A caller whose key checked out.
#[derive(Debug, Clone)]
pub struct Identified {
    pub consumer: Arc<Consumer>,
    pub key_id: Arc<str>,
}

/// The key the client presented, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let b = v.as_bytes();
        if b.len() > 7 && b[..7].eq_ignore_ascii_case(b"bearer ") {
            let key = b[7..].trim_ascii();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    for name in ["x-api-key", "api-key"] {
        if let Some(v) = headers.get(name) {
            let key = v.as_bytes().trim_ascii();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    None
}

/// The key entry of the caller; `Ok(None)` when the gateway has no consumers (open API).
///
/// Keys managed at run time (the registry) are checked first: a revocation there also covers a
/// key written in the config file.
pub fn authenticate(
    consumers: Option<&Consumers>,
    registry: &KeyRegistry,
    headers: &HeaderMap,
) -> Result<Option<Identified>, ApiError> {
    let Some(consumers) = consumers else { return Ok(None) };
    let Some(key) = presented_key(headers) else {
        return Err(ApiError::unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`, `x-api-key` or `api-key`.",
        ));
    };
    let refused = || ApiError::unauthorized("Incorrect API key provided, or the key was revoked or expired.");
    let hash = hash_key(key);
    let table = registry.table();
    match registry.check(&table, &hash) {
        Verdict::Refused => Err(refused()),
        Verdict::Valid { consumer, id } => consumers
            .by_name
            .get(consumer)
            .map(|c| {
                Some(Identified {
                    consumer: c.clone(),
                    key_id: Arc::from(id),
                })
            })
            .ok_or_else(refused),
        Verdict::Unknown => consumers
            .lookup_hash(&hash)
            .map(|e| {
                Some(Identified {
                    consumer: e.consumer.clone(),
                    key_id: e.key_id.clone(),
                })
            })
            .ok_or_else(refused),
    }
}

/// Whether the caller's consumer may call `endpoint`.
pub fn authorize_endpoint(entry: &Identified, endpoint: Endpoint) -> Result<(), ApiError> {
    if entry.consumer.may_call(endpoint) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::EndpointNotAllowed,
            format!("Your API key may not call the {} endpoint.", endpoint.name()),
        ))
    }
}

/// Whether the caller's consumer may use the configured model `route`.
pub fn authorize_route(entry: &Identified, route: &Route) -> Result<(), ApiError> {
    if entry.consumer.may_use_route(route) {
        Ok(())
    } else {
        let shown: String = route.name.chars().take(128).collect();
        Err(ApiError::new(
            ErrorCode::ModelNotAllowed,
            format!("Your API key may not use the model `{shown}`."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_are_read_from_each_supported_header() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer tg-1")])),
            Some(&b"tg-1"[..])
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  tg-2 ")])),
            Some(&b"tg-2"[..])
        );
        assert_eq!(presented_key(&headers(&[("x-api-key", "tg-3")])), Some(&b"tg-3"[..]));
        assert_eq!(presented_key(&headers(&[("api-key", "tg-4")])), Some(&b"tg-4"[..]));
        assert_eq!(presented_key(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(presented_key(&headers(&[])), None);
    }
}
