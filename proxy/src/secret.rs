//! Secrets (provider keys, admin tokens) in a wrapper that never prints them.
//!
//! Config refers to secrets by reference (`env:NAME` or `file:/path`); a literal value in the file
//! is refused so keys do not end up in repositories. `Debug` and `Display` redact.

use std::fmt;

/// A value that must never reach a log, a metric or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself; call sites are the only places it is used.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Compare two byte strings in time that depends only on their lengths, so a secret cannot be
/// guessed byte by byte from response timings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a secret reference could not be resolved. Names the reference, never a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {0}: {1}")]
    File(String, String),
    #[error("secret file {0} is empty")]
    EmptyFile(String),
    #[error("secrets must be references (`env:NAME` or `file:/path`), not literal values")]
    Literal,
}

/// Resolve `env:NAME` or `file:/path` to the secret's value.
pub fn resolve(reference: &str) -> Result<Secret<String>, SecretError> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name)
            .map(Secret::new)
            .map_err(|_| SecretError::MissingEnv(name.to_string()));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        // A secret is short: a file of more than 64 KiB is not one.
        let bytes = crate::config::files::read(std::path::Path::new(path), 64 * 1024)
            .map_err(|e| SecretError::File(path.to_string(), e))?;
        let value = String::from_utf8_lossy(&bytes).trim().to_string();
        if value.is_empty() {
            return Err(SecretError::EmptyFile(path.to_string()));
        }
        return Ok(Secret::new(value));
    }
    Err(SecretError::Literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-very-secret".to_string());
        assert!(!format!("{s:?}").contains("sk-very"));
        assert!(!format!("{s}").contains("sk-very"));
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[test]
    fn literal_values_are_refused_and_errors_name_only_the_reference() {
        assert_eq!(resolve("sk-live-123"), Err(SecretError::Literal));
        let err = resolve("env:TOLLGATE_TEST_SURELY_UNSET_VAR")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("environment variable TOLLGATE_TEST_SURELY_UNSET_VAR is not set")
        );
    }
}
