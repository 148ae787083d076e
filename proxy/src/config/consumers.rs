//! Consumers (tenants), their keys and their rules, compiled for the hot path.
//!
//! Keys are held only as SHA-256 hashes: a presented key is hashed once and looked up in a map
//! (O(1)), and the stored hash is compared in constant time. Parameter rules are turned into
//! ready-to-splice JSON once, at load (`param_rules`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::glob;
use super::param_rules::{self, ParamPolicy};
use super::problems::Problems;
use super::quotas::{self, Quota};
use super::raw::RawConsumer;
use crate::api::Endpoint;
use crate::key_hash::{parse_hash, KeyHash};

/// A tenant of the gateway.
#[derive(Debug)]
pub struct Consumer {
    pub name: String,
    /// For each configured model ([`Route::index`](super::routes::Route)), whether the consumer's model
    /// names and globs allow it: the globs are matched once at load, not on every request.
    pub allowed_routes: Vec<bool>,
    /// Endpoints allowed; `None` means all.
    pub endpoints: Option<Vec<Endpoint>>,
    pub params: ParamPolicy,
    pub metadata: BTreeMap<String, String>,
    /// `metadata` as a JSON object, ready for audit lines.
    pub metadata_json: String,
    /// The request body goes into audit lines (redacted, see `pipeline::safety::redact`).
    pub log_prompts: bool,
    /// The answer's text goes into audit lines (as the client got it, redacted).
    pub log_answers: bool,
    pub quotas: Vec<Quota>,
    /// Pre-rendered `GET /v1/models` for this consumer (only the models it may use).
    pub models_body: Bytes,
}

impl Consumer {
    /// Whether this consumer may use the configured model `route`.
    pub fn may_use_route(&self, route: &super::routes::Route) -> bool {
        self.allowed_routes.get(route.index).copied().unwrap_or(false)
    }

    pub fn may_call(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Health | Endpoint::Ready => true,
            e => self.endpoints.as_ref().is_none_or(|list| list.contains(&e)),
        }
    }
}

/// A key, known by its hash.
#[derive(Debug)]
pub struct KeyEntry {
    pub consumer: Arc<Consumer>,
    /// The loggable name of the key.
    pub key_id: Arc<str>,
    pub hash: KeyHash,
}

/// Every consumer and key of a snapshot.
#[derive(Debug, Default)]
pub struct Consumers {
    /// Keyed by SHA-256 digests, read on every request: a fast seeded hash suffices (the table
    /// is fixed at load; a client cannot add entries to it).
    pub by_hash: foldhash::HashMap<KeyHash, KeyEntry>,
    pub list: Vec<Arc<Consumer>>,
    pub by_name: foldhash::HashMap<String, Arc<Consumer>>,
}

impl Consumers {
    /// The config key entry with this hash, if any (map lookup, then constant-time check).
    pub fn lookup_hash(&self, hash: &KeyHash) -> Option<&KeyEntry> {
        self.by_hash
            .get(hash)
            .filter(|e| crate::secret::constant_time_eq(&e.hash, hash))
    }
}

fn endpoint_named(name: &str) -> Option<Endpoint> {
    match name {
        "chat" => Some(Endpoint::ChatCompletions),
        "completions" => Some(Endpoint::Completions),
        "embeddings" => Some(Endpoint::Embeddings),
        "models" => Some(Endpoint::Models),
        _ => None,
    }
}

/// Compile the consumers; `model_names` are the configured public models (for `/v1/models`).
pub fn compile(raw: &[RawConsumer], model_names: &[String], problems: &mut Problems<'_>) -> Option<Consumers> {
    if raw.is_empty() {
        return None;
    }
    let mut out = Consumers::default();
    let mut names = std::collections::HashSet::new();
    let mut key_ids = std::collections::HashSet::new();
    for c in raw {
        let i = c.index;
        let name = c.name.get_ref();
        if name.is_empty() || !names.insert(name.clone()) {
            problems.at(
                c.name.span(),
                format_args!("consumers[{i}].name: empty or duplicate consumer `{name}`"),
            );
            continue;
        }
        let models = c
            .models
            .as_ref()
            .map(|list| list.iter().map(|m| m.get_ref().clone()).collect::<Vec<_>>());
        let endpoints = match &c.endpoints {
            None => None,
            Some(list) => {
                let mut eps = Vec::new();
                for e in list {
                    match endpoint_named(e.get_ref()) {
                        Some(ep) => eps.push(ep),
                        None => problems.at(e.span(), format_args!("consumers[{i}].endpoints: unknown endpoint `{}` (chat, completions, embeddings, models)", e.get_ref())),
                    }
                }
                Some(eps)
            }
        };
        let at = format!("consumers[{i}].params");
        let params = match &c.params {
            None => ParamPolicy::default(),
            Some(p) => {
                if p.model.is_some() {
                    problems.note(format_args!("{at}.model: only allowed inside params.models entries"));
                }
                let base = param_rules::compile(p, &at, problems);
                let mut per_model = Vec::new();
                for (j, m) in p.models.iter().enumerate() {
                    let at = format!("{at}.models[{j}]");
                    let Some(pattern) = &m.model else {
                        problems.note(format_args!(
                            "{at}.model: required (the model name or glob these rules apply to)"
                        ));
                        continue;
                    };
                    if !m.models.is_empty() {
                        problems.note(format_args!("{at}.models: rules do not nest further"));
                    }
                    per_model.push((pattern.get_ref().clone(), param_rules::compile(m, &at, problems)));
                }
                ParamPolicy::new(base, per_model)
            }
        };
        let allowed_routes: Vec<bool> = model_names
            .iter()
            .map(|m| {
                models
                    .as_ref()
                    .is_none_or(|pats| pats.iter().any(|p| glob::matches(p, m)))
            })
            .collect();
        let models_body = super::routes::render_models(
            model_names
                .iter()
                .zip(&allowed_routes)
                .filter(|(_, a)| **a)
                .map(|(m, _)| m),
        );
        let consumer = Arc::new(Consumer {
            name: name.clone(),
            allowed_routes,
            endpoints,
            params,
            metadata: c.metadata.clone(),
            metadata_json: serde_json::to_string(&c.metadata).unwrap_or_else(|_| "{}".into()),
            log_prompts: c.log_prompts,
            log_answers: c.log_answers,
            quotas: quotas::compile(c, i, problems),
            models_body,
        });
        for (j, k) in c.keys.iter().enumerate() {
            if !key_ids.insert(k.id.get_ref().clone()) {
                problems.at(
                    k.id.span(),
                    format_args!("consumers[{i}].keys[{j}].id: duplicate key id `{}`", k.id.get_ref()),
                );
                continue;
            }
            match parse_hash(k.hash.get_ref()) {
                Ok(hash) => {
                    if out.by_hash.contains_key(&hash) {
                        problems.at(
                            k.hash.span(),
                            format_args!("consumers[{i}].keys[{j}].hash: the same key is listed twice"),
                        );
                        continue;
                    }
                    out.by_hash.insert(
                        hash,
                        KeyEntry {
                            consumer: consumer.clone(),
                            key_id: Arc::from(k.id.get_ref().as_str()),
                            hash,
                        },
                    );
                }
                Err(e) => problems.at(k.hash.span(), format_args!("consumers[{i}].keys[{j}].hash: {e}")),
            }
        }
        out.by_name.insert(consumer.name.clone(), consumer.clone());
        out.list.push(consumer);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_hash::{format_hash, hash_key};

    #[test]
    fn hashes_round_trip_and_lookup_finds_only_the_right_key() {
        let h = hash_key(b"tg-secret");
        assert_eq!(parse_hash(&format_hash(&h)), Ok(h));
        assert!(parse_hash("md5:abc").is_err());
        assert!(parse_hash(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }
}
