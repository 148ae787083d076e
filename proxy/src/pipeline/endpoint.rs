//! The first stage: which endpoint a method + path is, or the 404/405 it deserves.

pub use crate::api::Endpoint;
use crate::error::ApiError;

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
            classify("GET", "/v1/chat/completions").map_err(|e| e.status()),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            classify("POST", "/v1/models").map_err(|e| e.status()),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            classify("POST", "/v1/fine_tuning/jobs").map_err(|e| e.status()),
            Err(StatusCode::NOT_FOUND)
        );
    }
}
