//! The admin listener (its own address, never the public one): `/metrics` for Prometheus,
//! `/healthz`, and behind the bearer admin token `POST /admin/reload`, `DELETE /admin/cache`
//! ([`cache`]), `GET /admin/upstreams` (targets' health, [`upstreams`]) and the key management
//! API of [`api_keys`]. Every admin action writes an audit line naming the holder of the token used
//! (`admin.token` is held by `admin`, each of `[[admin.tokens]]` by its name), and so does every
//! call refused for a missing or wrong token.

pub mod api_keys;
pub mod cache;
pub mod dashboard;
pub mod upstreams;
pub mod usage;

use crate::telemetry::audit::AdminAudit;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::api_keys::KeyRegistry;
use crate::error::{ApiError, ErrorCode};
use crate::live::LiveCell;
use crate::reload::Reloader;
use crate::telemetry::access::AccessLog;
use crate::telemetry::Metrics;

pub struct AdminApp {
    pub snapshot: Arc<LiveCell>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
    pub keys: Arc<KeyRegistry>,
    pub audit: AccessLog,
    pub cache: Option<Arc<crate::pipeline::cache::AnswerCache>>,
    pub usage: Arc<crate::telemetry::usage::UsageLedger>,
}

pub(crate) fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

pub(crate) fn error(e: ApiError) -> Response<Vec<u8>> {
    reply(e.status(), "application/json", e.body().to_vec())
}

impl AdminApp {
    /// The name of the holder of the token presented. Every token is compared, in constant
    /// time, whichever matches.
    fn authorized(&self, session: &ServerSession) -> Result<String, ApiError> {
        let snapshot = self.snapshot.load();
        if snapshot.admin_tokens.is_empty() {
            return Err(ApiError::unauthorized(
                "The admin API is disabled: set admin.token or admin.tokens in the config.",
            ));
        }
        let given = session
            .get_header(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        let mut holder = None;
        for t in &snapshot.admin_tokens {
            if crate::secret::constant_time_eq(given, t.token.expose().as_bytes()) {
                holder = Some(t.name.clone());
            }
        }
        holder.ok_or_else(|| ApiError::unauthorized("Missing or wrong admin token."))
    }

    /// Check the caller's token; a refusal is itself an audited admin action.
    fn authorize_audited(&self, session: &ServerSession, action: &'static str) -> Result<String, ApiError> {
        self.authorized(session).inspect_err(|e| {
            self.audit.admin_action(
                None,
                &peer(session),
                &AdminAudit {
                    action,
                    consumer: None,
                    key_id: None,
                    result: format!("refused: {}", e.code.as_str()),
                },
            );
        })
    }
}

fn peer(session: &ServerSession) -> String {
    session.client_addr().map(|a| a.to_string()).unwrap_or_default()
}

/// The request body (admin requests are small; capped at 64 KiB).
async fn read_body(session: &mut ServerSession) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        if body.len() + chunk.len() > 64 * 1024 {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics.render()),
            ("GET", "/healthz") => reply(StatusCode::OK, "application/json", b"{\"status\":\"ok\"}".to_vec()),
            ("POST", "/admin/reload") => {
                let who = match self.authorize_audited(session, "reload") {
                    Ok(who) => who,
                    Err(e) => return error(e),
                };
                let reloader = self.reloader.clone();
                let (response, result) = match tokio::task::spawn_blocking(move || reloader.reload("admin")).await {
                    Ok(Ok(version)) => (
                        reply(
                            StatusCode::OK,
                            "application/json",
                            format!("{{\"status\":\"reloaded\",\"config_version\":{version}}}").into_bytes(),
                        ),
                        format!("ok: config version {version}"),
                    ),
                    Ok(Err(e)) => (
                        error(ApiError::new(ErrorCode::InvalidConfig, e.to_string())),
                        "refused: invalid_config".to_string(),
                    ),
                    Err(_) => (error(ApiError::internal()), "failed".to_string()),
                };
                let audit = AdminAudit {
                    action: "reload",
                    consumer: None,
                    key_id: None,
                    result,
                };
                self.audit.admin_action(Some(&who), &peer(session), &audit);
                response
            }
            ("DELETE", "/admin/cache") => {
                let who = match self.authorize_audited(session, "cache.flush") {
                    Ok(who) => who,
                    Err(e) => return error(e),
                };
                let query = session.req_header().uri.query().map(str::to_string);
                let (response, audit) = cache::flush(self, query.as_deref()).await;
                self.audit.admin_action(Some(&who), &peer(session), &audit);
                response
            }
            ("GET", "/admin/upstreams") => match self.authorized(session) {
                Ok(_) => upstreams::list(self),
                Err(e) => error(e),
            },
            ("GET", "/dashboard") => dashboard::page(),
            ("GET", "/admin/dashboard.json") => {
                // Open without an admin token configured, as /metrics is.
                if self.snapshot.load().admin_tokens.is_empty() {
                    return dashboard::data(self);
                }
                match self.authorized(session) {
                    Ok(_) => dashboard::data(self),
                    Err(e) => error(e),
                }
            }
            ("GET", "/admin/usage") => match self.authorized(session) {
                Ok(_) => usage::usage(&self.usage, session.req_header().uri.query()).await,
                Err(e) => error(e),
            },
            (_, "/metrics" | "/healthz" | "/admin/reload" | "/admin/cache" | "/admin/upstreams" | "/admin/usage") => {
                error(ApiError::method_not_allowed(&method, &path))
            }
            (_, p) if p.starts_with("/admin/consumers/") => {
                let who = match self.authorize_audited(session, "keys") {
                    Ok(who) => who,
                    Err(e) => return error(e),
                };
                let body = read_body(session).await;
                let (response, audit) = api_keys::handle(self, &method, &path, &body).await;
                if let Some(a) = audit {
                    self.audit.admin_action(Some(&who), &peer(session), &a);
                }
                response
            }
            _ => error(ApiError::not_found(&path)),
        }
    }
}
