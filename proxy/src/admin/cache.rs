//! Flushing the answer cache on the admin listener:
//!
//! | request | effect |
//! |---|---|
//! | `DELETE /admin/cache` | every entry |
//! | `DELETE /admin/cache?model=NAME` | the entries of one public model |
//! | `DELETE /admin/cache?namespace=HEX` | one namespace (a response's `x-tollgate-cache-namespace`) |
//!
//! With Redis the entries are deleted there too and every other node is told to drop them; the
//! answer says how many were removed on this node and in Redis.

use http::{Response, StatusCode};

use super::{error, reply, AdminApp};
use crate::error::{ApiError, ErrorCode};
use crate::telemetry::audit::AdminAudit;
use tollgate_semantic::{Flush, Namespace};

/// The flush a query asks for.
fn scope(query: Option<&str>) -> Result<Flush, ApiError> {
    let mut scope = Flush::All;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| bad("a query value is not valid percent-encoded UTF-8"))?;
        let next = match k {
            "model" if !v.is_empty() => Flush::Model(v),
            "namespace" => u64::from_str_radix(&v, 16)
                .map(|n| Flush::Namespace(Namespace(n)))
                .map_err(|_| bad("namespace must be the hex value of an x-tollgate-cache-namespace header"))?,
            _ => return Err(bad("the query may name one model=NAME or one namespace=HEX")),
        };
        if scope != Flush::All {
            return Err(bad("name one model or one namespace, not both"));
        }
        scope = next;
    }
    Ok(scope)
}

fn bad(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidValue, message.to_string())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Serve `DELETE /admin/cache`; the audit record of what was done.
pub async fn flush(app: &AdminApp, query: Option<&str>) -> (Response<Vec<u8>>, AdminAudit) {
    let audit = |result: String| AdminAudit {
        action: "cache.flush",
        consumer: None,
        key_id: None,
        result,
    };
    let scope = match scope(query) {
        Ok(s) => s,
        Err(e) => {
            let result = format!("refused: {}", e.code.as_str());
            return (error(e), audit(result));
        }
    };
    let Some(cache) = app.cache.as_deref() else {
        let e = ApiError::not_found_named("cache", "answer cache");
        return (error(e), audit("refused: no cache".to_string()));
    };
    let local = cache.store.flush(&scope);
    let (redis, result) = match cache.shared.get() {
        None => (serde_json::Value::Null, format!("ok: {local} entries")),
        Some(shared) => match shared.flush(&scope).await {
            Ok(n) => (serde_json::json!(n), format!("ok: {local} entries, {n} in redis")),
            Err(e) => {
                tracing::warn!(error = %e, "cache flush: redis did not answer");
                let e = ApiError::new(
                    ErrorCode::CacheStoreUnavailable,
                    format!("This node's {local} entries were flushed, but Redis did not answer: the other nodes and Redis still hold theirs. Try again."),
                );
                return (error(e), audit(format!("failed: {local} entries, redis unavailable")));
            }
        },
    };
    let scope_json = match &scope {
        Flush::All => serde_json::json!({"all": true}),
        Flush::Model(m) => serde_json::json!({"model": m}),
        Flush::Namespace(ns) => serde_json::json!({"namespace": format!("{:016x}", ns.0)}),
    };
    let body = serde_json::json!({"flushed": local, "redis": redis, "scope": scope_json});
    (
        reply(StatusCode::OK, "application/json", body.to_string().into_bytes()),
        audit(result),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_one_scope() {
        assert_eq!(scope(None).unwrap(), Flush::All);
        assert_eq!(
            scope(Some("model=qwen%2Fchat+v2")).unwrap(),
            Flush::Model("qwen/chat v2".into())
        );
        assert_eq!(scope(Some("namespace=00ff")).unwrap(), Flush::Namespace(Namespace(255)));
        for wrong in [
            "namespace=xyz",
            "model=a&namespace=01",
            "other=1",
            "model=%zz",
            "model=",
        ] {
            assert!(scope(Some(wrong)).is_err(), "{wrong}");
        }
    }
}
