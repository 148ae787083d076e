//! `GET /admin/upstreams`: what this node knows of each target's health, so an operator sees
//! ejections and "retry after" waits as the gateway acts on them.
//!
//! ```json
//! {"upstreams":[{"provider":"primary","target":"primary-model","models":["assistant"],
//!   "state":"ejected","ejected_ms":4200,"retry_after_ms":0,"consecutive_failures":0}]}
//! ```
//! `state` is `ok`, `ejected` (`ejected_ms` left; 0 once a probe may go), or `waiting` (the
//! provider asked to be left alone for `retry_after_ms`).

use http::{Response, StatusCode};
use tollgate_limits::clock::{Clock, SystemClock};

use super::{reply, AdminApp};

/// The body of `GET /admin/upstreams`.
pub fn list(app: &AdminApp) -> Response<Vec<u8>> {
    let body = serde_json::json!({ "upstreams": rows(app) });
    reply(StatusCode::OK, "application/json", body.to_string().into_bytes())
}

/// One row per target (shared by the models that use it).
pub fn rows(app: &AdminApp) -> Vec<serde_json::Value> {
    let live = app.snapshot.load();
    let now = SystemClock.now_ms();
    let mut rows: Vec<(serde_json::Value, *const crate::pipeline::health::TargetHealth)> = Vec::new();
    for route in &live.ordered {
        for t in &route.targets {
            let id = std::sync::Arc::as_ptr(&t.health);
            if let Some((row, _)) = rows.iter_mut().find(|(_, h)| *h == id) {
                if let Some(models) = row["models"].as_array_mut() {
                    models.push(route.name.clone().into());
                }
                continue;
            }
            let ejected = t.health.ejected(now);
            let waiting = t.health.waiting(now);
            let state = match (ejected, waiting) {
                (Some(_), _) => "ejected",
                (None, w) if w > 0 => "waiting",
                _ => "ok",
            };
            rows.push((
                serde_json::json!({
                    "provider": t.provider.name,
                    "target": t.model,
                    "models": [route.name],
                    "state": state,
                    "ejected_ms": ejected.unwrap_or(0),
                    "retry_after_ms": waiting,
                    "consecutive_failures": t.health.consecutive_failures(),
                }),
                id,
            ));
        }
    }
    rows.into_iter().map(|(r, _)| r).collect()
}
