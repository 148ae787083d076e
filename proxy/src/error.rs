//! Every error a client can see, in one place, as one OpenAI-shaped JSON body.
//!
//! `{"error":{"message":..,"type":..,"code":..}}` with the status that matches. The codes are a
//! closed set ([`ErrorCode`]): each names its HTTP status and OpenAI error type once, here.
//! Messages are written for the client and never carry a secret or another tenant's data.

use bytes::Bytes;
use http::StatusCode;

/// Every `code` a client can get, with its status and `type` (see [`ErrorCode::answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    MissingModel,
    InvalidModel,
    BodyReadFailed,
    ParameterForbidden,
    ParameterInvalid,
    ParameterOutOfRange,
    InvalidConfig,
    InvalidKeyId,
    InvalidApiKey,
    EndpointNotAllowed,
    ModelNotAllowed,
    ModelNotFound,
    UnknownUrl,
    NotFound,
    MethodNotSupported,
    KeyIdTaken,
    KeyExpired,
    RequestTooLarge,
    UnsupportedMediaType,
    QuotaExceeded,
    RateLimitExceeded,
    /// A concurrency rule's slots are all taken.
    ConcurrencyLimitExceeded,
    RequestExceedsLimit,
    InvalidType,
    InvalidValue,
    /// A content safety rule blocked the prompt.
    ContentFilter,
    MissingRequiredParameter,
    InternalError,
    UpstreamUnreachable,
    QuotaStoreUnavailable,
    LimitStoreUnavailable,
    KeyStoreUnavailable,
    CacheStoreUnavailable,
    /// The usage ledger's Redis did not answer (`GET /admin/usage`).
    UsageStoreUnavailable,
    /// A fail-closed moderation service did not answer.
    ModerationUnavailable,
    UpstreamTimeout,
    /// Every target of the model's fallback chain is ejected or asked to be left alone.
    UpstreamsOut,
    ShuttingDown,
    RequestTimeout,
    HeadersTooLarge,
    UriTooLong,
    InvalidRequestHead,
    TooManyConnections,
}

impl ErrorCode {
    /// The status, OpenAI error `type` and `code` string of this code.
    pub fn answer(self) -> (StatusCode, &'static str, &'static str) {
        use ErrorCode::*;
        const BAD: StatusCode = StatusCode::BAD_REQUEST;
        const INVALID: &str = "invalid_request_error";
        match self {
            InvalidJson => (BAD, INVALID, "invalid_json"),
            MissingModel => (BAD, INVALID, "missing_model"),
            InvalidModel => (BAD, INVALID, "invalid_model"),
            BodyReadFailed => (BAD, INVALID, "body_read_failed"),
            ParameterForbidden => (BAD, INVALID, "parameter_forbidden"),
            ParameterInvalid => (BAD, INVALID, "parameter_invalid"),
            ParameterOutOfRange => (BAD, INVALID, "parameter_out_of_range"),
            InvalidConfig => (BAD, INVALID, "invalid_config"),
            InvalidKeyId => (BAD, INVALID, "invalid_key_id"),
            InvalidApiKey => (StatusCode::UNAUTHORIZED, INVALID, "invalid_api_key"),
            EndpointNotAllowed => (StatusCode::FORBIDDEN, INVALID, "endpoint_not_allowed"),
            ModelNotAllowed => (StatusCode::FORBIDDEN, INVALID, "model_not_allowed"),
            ModelNotFound => (StatusCode::NOT_FOUND, INVALID, "model_not_found"),
            UnknownUrl => (StatusCode::NOT_FOUND, INVALID, "unknown_url"),
            NotFound => (StatusCode::NOT_FOUND, INVALID, "not_found"),
            MethodNotSupported => (StatusCode::METHOD_NOT_ALLOWED, INVALID, "method_not_supported"),
            KeyIdTaken => (StatusCode::CONFLICT, INVALID, "key_id_taken"),
            KeyExpired => (StatusCode::CONFLICT, INVALID, "key_expired"),
            RequestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, INVALID, "request_too_large"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, INVALID, "unsupported_media_type"),
            QuotaExceeded => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "quota_exceeded"),
            RateLimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded"),
            ConcurrencyLimitExceeded => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "concurrency_limit_exceeded",
            ),
            RequestExceedsLimit => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "request_exceeds_limit",
            ),
            InvalidType => (BAD, INVALID, "invalid_type"),
            ContentFilter => (BAD, INVALID, "content_filter"),
            InvalidValue => (BAD, INVALID, "invalid_value"),
            MissingRequiredParameter => (BAD, INVALID, "missing_required_parameter"),
            InternalError => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
            UpstreamUnreachable => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_unreachable"),
            QuotaStoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "quota_store_unavailable",
            ),
            LimitStoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "limit_store_unavailable",
            ),
            KeyStoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "key_store_unavailable"),
            CacheStoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "cache_store_unavailable",
            ),
            UsageStoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "usage_store_unavailable",
            ),
            ModerationUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "moderation_unavailable",
            ),
            UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout"),
            UpstreamsOut => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_error",
                "upstreams_unavailable",
            ),
            ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "shutting_down"),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, INVALID, "request_timeout"),
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                INVALID,
                "request_headers_too_large",
            ),
            UriTooLong => (StatusCode::URI_TOO_LONG, INVALID, "uri_too_long"),
            InvalidRequestHead => (BAD, INVALID, "invalid_request_head"),
            TooManyConnections => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too_many_connections",
            ),
        }
    }

    /// A refusal of how the client sends (its head, its body, its connections), counted in
    /// `tollgate_downstream_refusals_total`.
    pub fn is_downstream_limit(self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            RequestTimeout | HeadersTooLarge | UriTooLong | InvalidRequestHead | TooManyConnections
        )
    }

    /// The `code` string clients, logs and audit lines see.
    pub fn as_str(self) -> &'static str {
        self.answer().2
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client-facing error: a code and a message written for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request parameter at fault, as a path (`messages[3].role`), when one is.
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            param: None,
        }
    }

    /// The same error, naming the parameter at fault.
    pub fn at(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.code.answer().0
    }

    pub fn bad_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidJson,
            format!("We could not parse the JSON body of your request: {detail}"),
        )
    }

    pub fn missing_model() -> Self {
        Self::new(ErrorCode::MissingModel, "You must provide a model parameter.")
    }

    pub fn unknown_model(model: &str) -> Self {
        let shown: String = model.chars().take(128).collect();
        Self::new(
            ErrorCode::ModelNotFound,
            format!("The model `{shown}` does not exist or you do not have access to it."),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::RequestTooLarge,
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "The request body must be JSON (Content-Type: application/json).",
        )
    }

    pub fn not_found(path: &str) -> Self {
        let shown: String = path.chars().take(128).collect();
        Self::new(ErrorCode::UnknownUrl, format!("Unknown request URL: {shown}."))
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            ErrorCode::MethodNotSupported,
            format!("{method} is not supported for {path}."),
        )
    }

    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::UpstreamUnreachable, detail)
    }

    pub fn gateway_timeout(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::UpstreamTimeout, detail)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidApiKey, message)
    }

    pub fn not_found_named(what: &str, name: &str) -> Self {
        let shown: String = name.chars().take(128).collect();
        Self::new(ErrorCode::NotFound, format!("No {what} named `{shown}`."))
    }

    pub fn shutting_down() -> Self {
        Self::new(
            ErrorCode::ShuttingDown,
            "The gateway is shutting down; requests in flight finish, new ones go elsewhere.",
        )
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "The gateway failed to process the request.")
    }

    /// The whole HTTP/1.1 response carrying this error, closing the connection: for refusals
    /// written below the HTTP layer (a request head that never completed or could not be read).
    pub fn raw_http1(&self) -> Bytes {
        let body = self.body();
        let status = self.status();
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let (_, kind, code) = self.code.answer();
        let v = serde_json::json!({
            "error": { "message": self.message, "type": kind, "code": code, "param": self.param }
        });
        Bytes::from(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_and_escapes_the_message() {
        let e = ApiError::unknown_model("a\"b");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap_or_default();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains("a\"b"));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
