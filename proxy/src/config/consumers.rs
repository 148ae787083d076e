//! Consumers (tenants), their keys and their rules, compiled for the hot path.
//!
//! Keys are held only as SHA-256 hashes: a presented key is hashed once and looked up in a map
//! (O(1)), and the stored hash is compared in constant time. Parameter rules are turned into
//! ready-to-splice JSON once, here.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::glob;
use super::raw::{ParamMode, RawConsumer, RawParams};
use crate::api::Endpoint;
use tollgate_limits::key::tagged_key;

/// SHA-256 of a key.
pub type KeyHash = [u8; 32];

/// Parameters the gateway itself manages; rules may not touch them.
const RESERVED_PARAMS: &[&str] = &["model", "stream", "stream_options"];

/// A numeric bound, with its limits ready to splice.
#[derive(Debug, Clone)]
pub struct Bound {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub min_json: Bytes,
    pub max_json: Bytes,
}

/// One level of parameter rules (consumer-wide, or for some models).
#[derive(Debug, Clone, Default)]
pub struct ParamRules {
    pub mode: Option<ParamMode>,
    pub defaults: Vec<(String, Bytes)>,
    pub overrides: Vec<(String, Bytes)>,
    pub bounds: Vec<Bound>,
    pub forbidden: Vec<String>,
}

/// A member added to bodies that lack it, ready to splice (`"name":value,`).
#[derive(Debug, Clone)]
pub struct Insert {
    pub name: String,
    pub member: Bytes,
}

impl Insert {
    fn new(name: &str, value_json: &[u8]) -> Insert {
        let mut m = Vec::with_capacity(name.len() + value_json.len() + 4);
        crate::json_spans::write_str(&mut m, name);
        m.push(b':');
        m.extend_from_slice(value_json);
        m.push(b',');
        Insert {
            name: name.to_string(),
            member: Bytes::from(m),
        }
    }
}

/// A consumer's parameter policy: rules, refined per model (first matching pattern wins).
/// The merge of each refinement with the consumer-level rules is done once, at load.
#[derive(Debug, Clone, Default)]
pub struct ParamPolicy {
    pub base: ParamRules,
    pub per_model: Vec<(String, ParamRules)>,
    merged_base: Merged,
    merged_models: Vec<(String, Merged)>,
}

/// Rules merged over the consumer's, and what they add to bodies that lack a parameter: the
/// overrides, then the defaults no override replaces.
#[derive(Debug, Clone, Default)]
struct Merged {
    rules: ParamRules,
    inserts: Vec<Insert>,
}

impl Merged {
    fn new(rules: ParamRules) -> Merged {
        let overridden = |name: &str| rules.overrides.iter().any(|(o, _)| o == name);
        let defaults = rules.defaults.iter().filter(|(name, _)| !overridden(name));
        let inserts = rules
            .overrides
            .iter()
            .chain(defaults)
            .map(|(name, json)| Insert::new(name, json))
            .collect();
        Merged { rules, inserts }
    }
}

/// The rules in force for one request.
#[derive(Debug, Clone, Copy)]
pub struct EffectiveRules<'a> {
    pub mode: ParamMode,
    pub rules: &'a ParamRules,
    pub inserts: &'a [Insert],
}

impl EffectiveRules<'_> {
    pub fn is_empty(&self) -> bool {
        let r = self.rules;
        r.defaults.is_empty() && r.overrides.is_empty() && r.bounds.is_empty() && r.forbidden.is_empty()
    }
}

/// `first` with the entries of `then` that `first` does not mention (by parameter name).
fn merge(first: &ParamRules, then: &ParamRules) -> ParamRules {
    let mut out = first.clone();
    out.mode = first.mode.or(then.mode);
    for d in &then.defaults {
        if !out.defaults.iter().any(|e| e.0 == d.0) {
            out.defaults.push(d.clone());
        }
    }
    for o in &then.overrides {
        if !out.overrides.iter().any(|e| e.0 == o.0) {
            out.overrides.push(o.clone());
        }
    }
    for b in &then.bounds {
        if !out.bounds.iter().any(|e| e.name == b.name) {
            out.bounds.push(b.clone());
        }
    }
    for f in &then.forbidden {
        if !out.forbidden.contains(f) {
            out.forbidden.push(f.clone());
        }
    }
    out
}

impl ParamPolicy {
    pub fn new(base: ParamRules, per_model: Vec<(String, ParamRules)>) -> Self {
        let merged_base = Merged::new(merge(&base, &ParamRules::default()));
        let merged_models = per_model
            .iter()
            .map(|(p, r)| (p.clone(), Merged::new(merge(r, &base))))
            .collect();
        ParamPolicy {
            base,
            per_model,
            merged_base,
            merged_models,
        }
    }

    /// The rules for `model`: the first matching refinement merged over the consumer's rules.
    pub fn for_model(&self, model: &str) -> EffectiveRules<'_> {
        let merged = self
            .merged_models
            .iter()
            .find(|(p, _)| glob::matches(p, model))
            .map_or(&self.merged_base, |(_, r)| r);
        EffectiveRules {
            mode: merged.rules.mode.unwrap_or_default(),
            rules: &merged.rules,
            inserts: &merged.inserts,
        }
    }
}

/// Where a quota finds the end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSource {
    Body,
    Header(http::HeaderName),
    Key,
}

/// What a quota counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaScope {
    User(UserSource),
    Key,
    Consumer,
}

/// A request quota, compiled.
#[derive(Debug, Clone)]
pub struct Quota {
    pub name: String,
    pub limit: u64,
    pub period: tollgate_limits::Period,
    pub scope: QuotaScope,
    /// Where its calendar windows start (a UTC offset or a named time zone).
    pub calendar: tollgate_limits::Calendar,
    /// Serve when Redis cannot be reached (else refuse with 503).
    pub fail_open: bool,
    /// The fixed start of this quota's counter keys ([`key_prefix`]).
    pub key_prefix: String,
}

/// A tenant of the gateway.
#[derive(Debug)]
pub struct Consumer {
    pub name: String,
    /// For each configured model ([`Route::index`](super::Route)), whether the consumer's model
    /// names and globs allow it: the globs are matched once at load, not on every request.
    pub allowed_routes: Vec<bool>,
    /// Endpoints allowed; `None` means all.
    pub endpoints: Option<Vec<Endpoint>>,
    pub params: ParamPolicy,
    pub metadata: BTreeMap<String, String>,
    /// `metadata` as a JSON object, ready for audit lines.
    pub metadata_json: String,
    pub log_prompts: bool,
    pub quotas: Vec<Quota>,
    /// Pre-rendered `GET /v1/models` for this consumer (only the models it may use).
    pub models_body: Bytes,
}

impl Consumer {
    /// Whether this consumer may use the configured model `route`.
    pub fn may_use_route(&self, route: &super::Route) -> bool {
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

/// SHA-256 of a key.
pub fn hash_key(key: &[u8]) -> KeyHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A fresh API key: `tg-` and 40 random base-62 characters (about 238 bits) from the OS.
pub fn generate_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let mut key = String::with_capacity(43);
    key.push_str("tg-");
    for _ in 0..40 {
        key.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    key
}

/// `sha256:<hex>` form of a hash, as written in config.
pub fn format_hash(hash: &KeyHash) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hash in `sha256:<64 hex>` form, as written in config and in the key store.
pub fn parse_hash(text: &str) -> Result<KeyHash, String> {
    let hex = text.strip_prefix("sha256:").ok_or("must start with `sha256:`")?;
    if hex.len() != 64 {
        return Err("must be `sha256:` followed by 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or(""), 16).map_err(|_| "is not hex".to_string())?;
    }
    Ok(out)
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

fn json_of(v: &toml::Value) -> Result<Bytes, String> {
    serde_json::to_string(v).map(Bytes::from).map_err(|e| e.to_string())
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn compile_rules(raw: &RawParams, at: &str, problems: &mut Vec<String>) -> ParamRules {
    let mut rules = ParamRules {
        mode: raw.mode,
        ..ParamRules::default()
    };
    let reserved = |name: &str, field: &str, problems: &mut Vec<String>| {
        if RESERVED_PARAMS.contains(&name) {
            problems.push(format!(
                "{at}.{field}.{name}: `{name}` is managed by the gateway and cannot be set by rules"
            ));
            true
        } else {
            false
        }
    };
    for (name, v) in &raw.defaults {
        if !reserved(name, "defaults", problems) {
            match json_of(v) {
                Ok(j) => rules.defaults.push((name.clone(), j)),
                Err(e) => problems.push(format!("{at}.defaults.{name}: {e}")),
            }
        }
    }
    for (name, v) in &raw.overrides {
        if !reserved(name, "overrides", problems) {
            match json_of(v) {
                Ok(j) => rules.overrides.push((name.clone(), j)),
                Err(e) => problems.push(format!("{at}.overrides.{name}: {e}")),
            }
        }
    }
    for (name, pair) in &raw.bounds {
        if reserved(name, "bounds", problems) {
            continue;
        }
        let (min, max) = match pair.get_ref().as_slice() {
            [a, b] => (a, b),
            _ => {
                problems.push(format!("{at}.bounds.{name}: must be [min, max]"));
                continue;
            }
        };
        match (number(min), number(max), json_of(min), json_of(max)) {
            (Some(lo), Some(hi), Ok(min_json), Ok(max_json)) if lo <= hi => rules.bounds.push(Bound {
                name: name.clone(),
                min: lo,
                max: hi,
                min_json,
                max_json,
            }),
            (Some(_), Some(_), _, _) => problems.push(format!("{at}.bounds.{name}: min is greater than max")),
            _ => problems.push(format!("{at}.bounds.{name}: min and max must be numbers")),
        }
    }
    for name in &raw.forbidden {
        if !reserved(name, "forbidden", problems) {
            rules.forbidden.push(name.clone());
        }
    }
    rules
}

fn compile_quotas(
    c: &RawConsumer,
    i: usize,
    line: &impl Fn(std::ops::Range<usize>) -> String,
    problems: &mut Vec<String>,
) -> Vec<Quota> {
    let mut out = Vec::new();
    for (j, q) in c.quotas.iter().enumerate() {
        let at =
            |span: std::ops::Range<usize>, field: &str| format!("{}: consumers[{i}].quotas[{j}].{field}", line(span));
        let before = problems.len();
        let period = match q.per.get_ref().as_str() {
            "minute" => tollgate_limits::Period::Minute,
            "hour" => tollgate_limits::Period::Hour,
            "day" => tollgate_limits::Period::Day,
            other => {
                problems.push(format!(
                    "{}: `{other}` is not minute, hour or day",
                    at(q.per.span(), "per")
                ));
                tollgate_limits::Period::Day
            }
        };
        let user_source = match q.user_from.get_ref().as_str() {
            "body" => UserSource::Body,
            "key" => UserSource::Key,
            other => match other
                .strip_prefix("header:")
                .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
            {
                Some(Ok(h)) => UserSource::Header(h),
                _ => {
                    problems.push(format!(
                        "{}: `{other}` is not body, key or header:<name>",
                        at(q.user_from.span(), "user_from")
                    ));
                    UserSource::Body
                }
            },
        };
        let scope = match q.by.get_ref().as_str() {
            "user" => QuotaScope::User(user_source),
            "key" => QuotaScope::Key,
            "consumer" => QuotaScope::Consumer,
            other => {
                problems.push(format!(
                    "{}: `{other}` is not user, key or consumer",
                    at(q.by.span(), "by")
                ));
                QuotaScope::Consumer
            }
        };
        let calendar = match &q.timezone {
            None => tollgate_limits::Calendar::default(),
            Some(tz) => tollgate_limits::Calendar::parse(tz.get_ref()).unwrap_or_else(|| {
                problems.push(format!(
                    "{}: `{}` is neither a UTC offset such as +08:00 nor a time zone such as Asia/Shanghai",
                    at(tz.span(), "timezone"),
                    tz.get_ref()
                ));
                tollgate_limits::Calendar::default()
            }),
        };
        let fail_open = match q.on_redis_error.get_ref().as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                problems.push(format!(
                    "{}: `{other}` is not allow or deny",
                    at(q.on_redis_error.span(), "on_redis_error")
                ));
                true
            }
        };
        if q.name.get_ref().is_empty() || c.quotas[..j].iter().any(|o| o.name.get_ref() == q.name.get_ref()) {
            problems.push(format!("{}: empty or duplicate quota name", at(q.name.span(), "name")));
        }
        if problems.len() == before {
            out.push(Quota {
                name: q.name.get_ref().clone(),
                limit: q.limit,
                period,
                scope,
                calendar,
                fail_open,
                key_prefix: key_prefix(c.name.get_ref(), q.name.get_ref()),
            });
        }
    }
    out
}

/// Compile the consumers; `model_names` are the configured public models (for `/v1/models`).
pub fn compile(
    raw: &[RawConsumer],
    model_names: &[String],
    line: impl Fn(std::ops::Range<usize>) -> String,
    problems: &mut Vec<String>,
) -> Option<Consumers> {
    if raw.is_empty() {
        return None;
    }
    let mut out = Consumers::default();
    let mut names = std::collections::HashSet::new();
    let mut key_ids = std::collections::HashSet::new();
    for (i, c) in raw.iter().enumerate() {
        let name = c.name.get_ref();
        if name.is_empty() || !names.insert(name.clone()) {
            problems.push(format!(
                "{}: consumers[{i}].name: empty or duplicate consumer `{name}`",
                line(c.name.span())
            ));
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
                        None => problems.push(format!(
                            "{}: consumers[{i}].endpoints: unknown endpoint `{}` (chat, completions, embeddings, models)",
                            line(e.span()),
                            e.get_ref()
                        )),
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
                    problems.push(format!("{at}.model: only allowed inside params.models entries"));
                }
                let base = compile_rules(p, &at, problems);
                let mut per_model = Vec::new();
                for (j, m) in p.models.iter().enumerate() {
                    let at = format!("{at}.models[{j}]");
                    let Some(pattern) = &m.model else {
                        problems.push(format!(
                            "{at}.model: required (the model name or glob these rules apply to)"
                        ));
                        continue;
                    };
                    if !m.models.is_empty() {
                        problems.push(format!("{at}.models: rules do not nest further"));
                    }
                    per_model.push((pattern.get_ref().clone(), compile_rules(m, &at, problems)));
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
        let models_body = super::snapshot::render_models(
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
            quotas: compile_quotas(c, i, &line, problems),
            models_body,
        });
        for (j, k) in c.keys.iter().enumerate() {
            if !key_ids.insert(k.id.get_ref().clone()) {
                problems.push(format!(
                    "{}: consumers[{i}].keys[{j}].id: duplicate key id `{}`",
                    line(k.id.span()),
                    k.id.get_ref()
                ));
                continue;
            }
            match parse_hash(k.hash.get_ref()) {
                Ok(hash) => {
                    if out.by_hash.contains_key(&hash) {
                        problems.push(format!(
                            "{}: consumers[{i}].keys[{j}].hash: the same key is listed twice",
                            line(k.hash.span())
                        ));
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
                Err(e) => problems.push(format!("{}: consumers[{i}].keys[{j}].hash: {e}", line(k.hash.span()))),
            }
        }
        out.by_name.insert(consumer.name.clone(), consumer.clone());
        out.list.push(consumer);
    }
    Some(out)
}

/// `{consumer/quota/`: the part of a quota's counter keys fixed by the config (after the
/// store's head, `tollgate:quota:` or `tollgate:quota:<namespace>:`).
pub fn key_prefix(consumer: &str, quota: &str) -> String {
    let mut key = tagged_key("", &[consumer, quota], "");
    key.pop();
    key.push('/');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_lookup_finds_only_the_right_key() {
        let h = hash_key(b"tg-secret");
        assert_eq!(parse_hash(&format_hash(&h)), Ok(h));
        assert!(parse_hash("md5:abc").is_err());
        assert!(parse_hash(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }
}
