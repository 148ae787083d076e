//! The API surface: which endpoint a request is for.

use crate::error::ApiError;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
    Models,
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// Whether the request is proxied to a provider (and so carries a JSON body with `model`).
    pub fn is_proxied(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings
        )
    }

    /// A short stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Health => "healthz",
            Endpoint::Ready => "readyz",
            Endpoint::Models => "models",
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// Classify `method` + `path` (without query), or the error the client gets.
pub fn classify(method: &str, path: &str) -> Result<Endpoint, ApiError> {
    let (endpoint, allowed) = match path {
        "/healthz" => (Endpoint::Health, "GET"),
        "/readyz" => (Endpoint::Ready, "GET"),
        "/v1/models" => (Endpoint::Models, "GET"),
        "/v1/chat/completions" => (Endpoint::ChatCompletions, "POST"),
        "/v1/completions" => (Endpoint::Completions, "POST"),
        "/v1/embeddings" => (Endpoint::Embeddings, "POST"),
        _ => return Err(ApiError::not_found(path)),
    };
    if method == allowed || (allowed == "GET" && method == "HEAD") {
        Ok(endpoint)
    } else {
        Err(ApiError::method_not_allowed(method, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn known_paths_wrong_methods_and_unknown_paths() {
        assert_eq!(classify("POST", "/v1/chat/completions"), Ok(Endpoint::ChatCompletions));
        assert_eq!(classify("GET", "/v1/models"), Ok(Endpoint::Models));
        assert_eq!(
            classify("GET", "/v1/chat/completions").map_err(|e| e.status),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            classify("POST", "/v1/models").map_err(|e| e.status),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            classify("POST", "/v1/fine_tuning/jobs").map_err(|e| e.status),
            Err(StatusCode::NOT_FOUND)
        );
    }
}
