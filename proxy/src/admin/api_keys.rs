//! Key management on the admin listener, for a consumer defined in the config:
//!
//! | request | effect |
//! |---|---|
//! | `POST /admin/consumers/{c}/keys` `{"id"?, "expires_in_secs"?}` | new key, shown once in the answer |
//! | `GET /admin/consumers/{c}/keys` | the consumer's keys (ids, origin, expiry, revocation; never a key or hash) |
//! | `DELETE /admin/consumers/{c}/keys/{id}` | revoke (config keys too) |
//! | `POST /admin/consumers/{c}/keys/{id}/rotate` `{"id"?, "expires_in_secs"?}` | new key, then the old one revoked |
//!
//! A rotated key keeps its predecessor's expiry (the same instant, not a fresh lifetime: a key
//! that was to end on Friday still ends on Friday) unless the rotation sets `expires_in_secs`,
//! and records the id it replaced (`rotated_from`), so the lineage can be followed.

use http::{Response, StatusCode};
use serde::Deserialize;

use super::{error, reply, AdminApp};
use crate::api_keys::{new_key, KeyRecord, Origin};
use crate::error::{ApiError, ErrorCode};
use crate::key_hash::format_hash;
use crate::telemetry::audit::AdminAudit;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: Option<String>,
    expires_in_secs: Option<u64>,
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string().into_bytes())
}

/// Serve one key-management request; the audit record when the request named an action.
pub async fn handle(app: &AdminApp, method: &str, path: &str, body: &[u8]) -> (Response<Vec<u8>>, Option<AdminAudit>) {
    let rest = path.trim_start_matches("/admin/consumers/");
    let parts: Vec<&str> = rest.split('/').collect();
    let (consumer, key_id, verb) = match parts.as_slice() {
        [c, "keys"] => (*c, None, None),
        [c, "keys", id] => (*c, Some(*id), None),
        [c, "keys", id, "rotate"] => (*c, Some(*id), Some("rotate")),
        _ => return (error(ApiError::not_found(path)), None),
    };
    let snapshot = app.snapshot.load();
    let known = snapshot
        .consumers
        .as_ref()
        .and_then(|c| c.by_name.get(consumer))
        .cloned();
    let Some(known) = known else {
        return (error(ApiError::not_found_named("consumer", consumer)), None);
    };
    let action = match (method, key_id, verb) {
        ("POST", None, None) => "key.create",
        ("GET", None, None) => "key.list",
        ("DELETE", Some(_), None) => "key.revoke",
        ("POST", Some(_), Some("rotate")) => "key.rotate",
        _ => return (error(ApiError::method_not_allowed(method, path)), None),
    };
    let result = match action {
        "key.list" => Ok(list(app, &snapshot, &known.name)),
        "key.create" => create(app, &snapshot, &known.name, body).await,
        "key.revoke" => revoke(app, &snapshot, &known.name, key_id.unwrap_or_default()).await,
        _ => rotate(app, &snapshot, &known.name, key_id.unwrap_or_default(), body).await,
    };
    let (response, outcome, id) = match result {
        Ok((status, v, id)) => (json(status, v), "ok".to_string(), id),
        Err(e) => {
            let outcome = format!("refused: {}", e.code.as_str());
            (error(e), outcome, key_id.unwrap_or_default().to_string())
        }
    };
    let audit = (action != "key.list").then(|| AdminAudit {
        action,
        consumer: Some(known.name.clone()),
        key_id: Some(id).filter(|id| !id.is_empty()),
        result: outcome,
    });
    (response, audit)
}

type Outcome = Result<(StatusCode, serde_json::Value, String), ApiError>;

/// Whether `id` is taken by any key, in the config or the registry.
fn id_taken(app: &AdminApp, snapshot: &crate::config::Snapshot, id: &str) -> bool {
    let in_config = snapshot
        .consumers
        .as_ref()
        .is_some_and(|c| c.by_hash.values().any(|e| &*e.key_id == id));
    in_config || app.keys.table().by_id(id).is_some()
}

fn list(app: &AdminApp, snapshot: &crate::config::Snapshot, consumer: &str) -> (StatusCode, serde_json::Value, String) {
    let table = app.keys.table();
    let mut data = Vec::new();
    if let Some(c) = &snapshot.consumers {
        for e in c.by_hash.values().filter(|e| e.consumer.name == consumer) {
            let revoked = table.by_hash.get(&e.hash).and_then(|r| r.revoked_ms);
            data.push(serde_json::json!({"id": &*e.key_id, "source": "config", "revoked_at_ms": revoked}));
        }
    }
    for r in table.records().filter(|r| r.consumer == consumer) {
        let from_config = snapshot
            .consumers
            .as_ref()
            .is_some_and(|c| c.by_hash.values().any(|e| *e.key_id == *r.id));
        if !from_config {
            data.push(serde_json::json!({
                "id": r.id, "source": "api", "created_at_ms": r.created_ms,
                "expires_at_ms": r.expires_ms, "revoked_at_ms": r.revoked_ms, "rotated_from": r.rotated_from,
            }));
        }
    }
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    (
        StatusCode::OK,
        serde_json::json!({"object": "list", "consumer": consumer, "data": data}),
        String::new(),
    )
}

fn parse_body(body: &[u8]) -> Result<CreateBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateBody::default());
    }
    serde_json::from_slice(body).map_err(ApiError::bad_json)
}

async fn create(app: &AdminApp, snapshot: &crate::config::Snapshot, consumer: &str, body: &[u8]) -> Outcome {
    let req = parse_body(body)?;
    let now = app.keys.now_ms();
    let expires = req.expires_in_secs.map(|s| now + s.saturating_mul(1000));
    issue(app, snapshot, consumer, req.id, expires, None).await
}

/// A new key for `consumer` expiring at `expires` (ms), replacing `rotated_from` if given.
async fn issue(
    app: &AdminApp,
    snapshot: &crate::config::Snapshot,
    consumer: &str,
    id: Option<String>,
    expires: Option<u64>,
    rotated_from: Option<String>,
) -> Outcome {
    let now = app.keys.now_ms();
    let (key, mut record) = new_key(consumer, String::new(), now, expires);
    record.rotated_from = rotated_from.clone();
    record.id = match id {
        Some(id) if id.is_empty() || id.len() > 64 => {
            return Err(ApiError::new(
                ErrorCode::InvalidKeyId,
                "A key id is 1 to 64 characters.",
            ))
        }
        Some(id) => id,
        None => format!("{consumer}-{}", &record.hash[7..15]),
    };
    if id_taken(app, snapshot, &record.id) {
        return Err(ApiError::new(
            ErrorCode::KeyIdTaken,
            format!("A key with id `{}` already exists.", record.id),
        ));
    }
    let id = record.id.clone();
    app.keys
        .put(record)
        .await
        .map_err(|e| ApiError::new(ErrorCode::KeyStoreUnavailable, e.to_string()))?;
    let mut v = serde_json::json!({"consumer": consumer, "id": id, "key": key, "expires_at_ms": expires});
    if let Some(old) = rotated_from {
        v["rotated_from"] = serde_json::Value::String(old);
    }
    Ok((StatusCode::CREATED, v, id))
}

async fn revoke(app: &AdminApp, snapshot: &crate::config::Snapshot, consumer: &str, id: &str) -> Outcome {
    let now = app.keys.now_ms();
    let existing = app.keys.table().by_id(id).filter(|r| r.consumer == consumer).cloned();
    let record = match existing {
        Some(r) => KeyRecord {
            revoked_ms: Some(now),
            ..r
        },
        None => {
            let entry = snapshot.consumers.as_ref().and_then(|c| {
                c.by_hash
                    .values()
                    .find(|e| &*e.key_id == id && e.consumer.name == consumer)
            });
            let Some(entry) = entry else {
                return Err(ApiError::not_found_named("key", id));
            };
            KeyRecord {
                consumer: consumer.to_string(),
                id: id.to_string(),
                hash: format_hash(&entry.hash),
                created_ms: now,
                expires_ms: None,
                revoked_ms: Some(now),
                origin: Some(Origin::Config),
                rotated_from: None,
            }
        }
    };
    app.keys
        .put(record)
        .await
        .map_err(|e| ApiError::new(ErrorCode::KeyStoreUnavailable, e.to_string()))?;
    Ok((
        StatusCode::OK,
        serde_json::json!({"consumer": consumer, "id": id, "revoked": true}),
        id.to_string(),
    ))
}

async fn rotate(app: &AdminApp, snapshot: &crate::config::Snapshot, consumer: &str, id: &str, body: &[u8]) -> Outcome {
    let req = parse_body(body)?;
    let stored = app.keys.table().by_id(id).filter(|r| r.consumer == consumer).cloned();
    let in_config = snapshot.consumers.as_ref().is_some_and(|c| {
        c.by_hash
            .values()
            .any(|e| &*e.key_id == id && e.consumer.name == consumer)
    });
    if stored.is_none() && !in_config {
        return Err(ApiError::not_found_named("key", id));
    }
    let now = app.keys.now_ms();
    let expires = match (req.expires_in_secs, stored.as_ref().and_then(|r| r.expires_ms)) {
        (Some(s), _) => Some(now + s.saturating_mul(1000)),
        (None, Some(at)) if at <= now => {
            return Err(ApiError::new(
                ErrorCode::KeyExpired,
                format!("Key `{id}` has expired; a rotation keeps the expiry, so give the new key its own `expires_in_secs` (or create one)."),
            ))
        }
        (None, at) => at,
    };
    // The new key first, so the consumer is never without one.
    let (status, mut v, new_id) = issue(app, snapshot, consumer, req.id, expires, Some(id.to_string())).await?;
    revoke(app, snapshot, consumer, id).await?;
    v["revoked"] = serde_json::Value::String(id.to_string());
    Ok((status, v, new_id))
}
