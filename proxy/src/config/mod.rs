//! Configuration: one TOML file, raw → validated → immutable snapshot.
//!
//! [`raw`] mirrors the file (`deny_unknown_fields`, spans for line numbers); [`snapshot`] is the
//! validated, compiled form the hot path reads (swapped whole on reload, see `live`). Everything a
//! request would otherwise look up by string (providers, peers, auth headers, the `/v1/models`
//! body) is resolved here, once, at load.

pub mod admin;
pub mod cache;
pub mod consumers;
pub mod fallback;
pub mod files;
pub mod glob;
pub mod guardrails;
pub mod param_rules;
pub mod problems;
pub mod providers;
pub mod quotas;
pub mod rate_limits;
pub mod raw;
pub mod read;
pub mod routes;
pub mod search;
pub mod snapshot;
pub mod tokenizers;

use std::path::Path;

pub use problems::LoadOptions;
pub use providers::Provider;
pub use routes::{Route, Target};
pub use snapshot::Snapshot;

/// A config file that cannot be used; lists every problem found, each with its line and field.
#[derive(Debug, thiserror::Error)]
#[error("invalid config {path}:\n  {}", problems.join("\n  "))]
pub struct ConfigError {
    pub path: String,
    pub problems: Vec<String>,
    /// What was found besides (printed by `tollgate check` with the problems).
    pub warnings: Vec<String>,
}

/// Read, validate and compile the config file at `path`.
pub fn load(path: &Path, version: u64) -> Result<Snapshot, ConfigError> {
    load_with(path, version, LoadOptions::default())
}

/// [`load`] with options (`tollgate check --offline`, the run's `--completion-reserve`).
pub fn load_with(path: &Path, version: u64, options: LoadOptions) -> Result<Snapshot, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: shown.clone(),
        problems: vec![format!("cannot read file: {e}")],
        warnings: Vec::new(),
    })?;
    load_str_with(&text, &shown, path.parent(), version, options)
}

/// Validate and compile config text; `base_dir` resolves relative file paths in it.
pub fn load_str(text: &str, shown: &str, base_dir: Option<&Path>, version: u64) -> Result<Snapshot, ConfigError> {
    load_str_with(text, shown, base_dir, version, LoadOptions::default())
}

/// [`load_str`] with options.
pub fn load_str_with(
    text: &str,
    shown: &str,
    base_dir: Option<&Path>,
    version: u64,
    options: LoadOptions,
) -> Result<Snapshot, ConfigError> {
    let mut problems = problems::Problems::with_options(text, options);
    let raw = read::read(text, &mut problems);
    snapshot::compile(raw, problems, base_dir, version).map_err(|(problems, warnings)| ConfigError {
        path: shown.to_string(),
        problems,
        warnings,
    })
}

/// Log what loaded but likely does not work as meant.
pub fn log_warnings(snapshot: &Snapshot) {
    for w in &snapshot.warnings {
        tracing::warn!(warning = %w, "config");
    }
}
