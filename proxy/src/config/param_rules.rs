//! A consumer's parameter rules (defaults, overrides, bounds, forbidden parameters), refined per
//! model, compiled once into ready-to-splice JSON.

use bytes::Bytes;

use super::glob;
use super::problems::Problems;
use super::raw::{ParamMode, RawParams};

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

pub fn compile(raw: &RawParams, at: &str, problems: &mut Problems<'_>) -> ParamRules {
    let mut rules = ParamRules {
        mode: raw.mode,
        ..ParamRules::default()
    };
    let reserved = |name: &str, field: &str, problems: &mut Problems<'_>| {
        if RESERVED_PARAMS.contains(&name) {
            problems.note(format_args!(
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
                Err(e) => problems.note(format_args!("{at}.defaults.{name}: {e}")),
            }
        }
    }
    for (name, v) in &raw.overrides {
        if !reserved(name, "overrides", problems) {
            match json_of(v) {
                Ok(j) => rules.overrides.push((name.clone(), j)),
                Err(e) => problems.note(format_args!("{at}.overrides.{name}: {e}")),
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
                problems.note(format_args!("{at}.bounds.{name}: must be [min, max]"));
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
            (Some(_), Some(_), _, _) => problems.note(format_args!("{at}.bounds.{name}: min is greater than max")),
            _ => problems.note(format_args!("{at}.bounds.{name}: min and max must be numbers")),
        }
    }
    for name in &raw.forbidden {
        if !reserved(name, "forbidden", problems) {
            rules.forbidden.push(name.clone());
        }
    }
    rules
}
