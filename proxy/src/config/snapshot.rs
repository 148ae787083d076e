//! The validated, compiled config: what the hot path reads.
//!
//! Built once per load from [`RawConfig`]; references resolved (targets hold `Arc<Provider>`),
//! URLs parsed, addresses resolved, secrets read, the `/v1/models` answer pre-rendered. Never
//! mutated: a reload builds a new one and swaps it in.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::admin::{self, AdminToken};
use super::cache::{self, CachePolicy};
use super::consumers::{self, Consumers};
use super::fallback;
use super::guardrails::{self, ModelGuards};
use super::problems::Problems;
use super::providers::{self, Provider};
use super::rate_limits::{self, LimitRule, TrustedProxies};
use super::raw::RawConfig;
use super::routes::{render_models, Route, Target};
use super::tokenizers;

/// The compiled config.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    /// Looked up on every request: a fast seeded hash (the table is fixed at load; clients only
    /// read it).
    pub routes: foldhash::HashMap<String, Arc<Route>>,
    /// Public model names in file order.
    pub model_names: Vec<String>,
    /// The routes by index (file order): how fallback chains name them.
    pub ordered: Vec<Arc<Route>>,
    /// Pre-rendered `GET /v1/models` body.
    pub models_body: Bytes,
    /// Who may call the admin API: a holder's name and token. Empty: the admin API is off.
    pub admin_tokens: Vec<AdminToken>,
    /// Consumers and their keys; `None` when the config has none (the API is open).
    pub consumers: Option<Consumers>,
    /// Rate limit rules in file order.
    pub limits: Vec<Arc<LimitRule>>,
    pub trusted_proxies: TrustedProxies,
    /// The answer cache's policy; `None`: off.
    pub cache: Option<Arc<CachePolicy>>,
    /// Search grounding; `None`: off.
    pub search: Option<Arc<super::search::SearchPolicy>>,
    /// Content safety rules of each public model, by route index (`None`: none apply).
    pub guards: Vec<Option<Arc<ModelGuards>>>,
    /// What loads but likely does not work as meant (a rule that admits nothing, say); logged
    /// at load and printed by `tollgate check`.
    pub warnings: Vec<String>,
}

impl Snapshot {
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }

    /// The route at `index` (file order).
    pub fn route_at(&self, index: usize) -> Option<&Arc<Route>> {
        self.ordered.get(index)
    }

    /// Take over what the node learnt under `old` (targets' health, routes' retry budgets)
    /// for the targets and routes that stay. Call before the snapshot is shared.
    pub fn keep_state_of(&mut self, old: &Snapshot) {
        self.ordered.clear();
        let mut healths = HashMap::new();
        for r in old.routes.values() {
            for t in &r.targets {
                healths.insert((t.provider.name.as_str(), t.model.as_str()), &t.health);
            }
        }
        for route in self.routes.values_mut() {
            let Some(r) = Arc::get_mut(route) else { continue };
            if let Some(before) = old.routes.get(&r.name) {
                r.budget = before.budget.clone();
            }
            for t in &mut r.targets {
                if let Some(h) = healths.get(&(t.provider.name.as_str(), t.model.as_str())) {
                    t.health = Arc::clone(h);
                }
            }
        }
        self.ordered = in_order(&self.routes, &self.model_names);
    }

    /// The content safety rules of `route` (a route of this snapshot), if any apply to it.
    pub fn guards_of(&self, route: &Route) -> Option<&Arc<ModelGuards>> {
        self.guards.get(route.index)?.as_ref()
    }
}

/// Validate and compile; every problem is reported, each naming its line and field.
pub fn compile(
    raw: RawConfig,
    mut problems: Problems<'_>,
    base_dir: Option<&Path>,
    version: u64,
) -> Result<Snapshot, (Vec<String>, Vec<String>)> {
    let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
    for p in &raw.providers {
        let i = p.index;
        let name = p.name.get_ref();
        if name.is_empty() {
            problems.at(p.name.span(), format_args!("providers[{i}].name: must not be empty"));
            continue;
        }
        if providers.contains_key(name) {
            problems.at(
                p.name.span(),
                format_args!("providers[{i}].name: duplicate provider `{name}`"),
            );
            continue;
        }
        if let Some(provider) = providers::compile(p, i, base_dir, &mut problems) {
            providers.insert(name.clone(), Arc::new(provider));
        }
    }

    let tokenizers = tokenizers::compile(&raw, base_dir, &mut problems);
    let mut routes = foldhash::HashMap::default();
    let mut model_names = Vec::new();
    let mut compiled: Vec<(Route, &super::raw::RawModel)> = Vec::new();
    for m in &raw.models {
        let i = m.index;
        let name = m.name.get_ref();
        if name.is_empty() {
            problems.at(m.name.span(), format_args!("models[{i}].name: must not be empty"));
            continue;
        }
        if routes.contains_key(name) {
            problems.at(
                m.name.span(),
                format_args!("models[{i}].name: duplicate model `{name}`"),
            );
            continue;
        }
        if m.targets.get_ref().is_empty() {
            problems.at(
                m.targets.span(),
                format_args!("models[{i}].targets: at least one target is required"),
            );
            continue;
        }
        let mut targets = Vec::new();
        for (j, t) in m.targets.get_ref().iter().enumerate() {
            let Some(provider) = providers.get(t.provider.get_ref()) else {
                // A provider that failed its own validation was already reported.
                let declared = raw.providers.iter().any(|p| p.name.get_ref() == t.provider.get_ref())
                    || raw.unreadable.providers.contains(t.provider.get_ref());
                if !declared {
                    problems.at(
                        t.provider.span(),
                        format_args!(
                            "models[{i}].targets[{j}].provider: unknown provider `{}`",
                            t.provider.get_ref()
                        ),
                    );
                }
                continue;
            };
            let model = t.model.clone().unwrap_or_else(|| name.clone());
            if model.is_empty() {
                problems.at(
                    t.provider.span(),
                    format_args!("models[{i}].targets[{j}].model: must not be empty"),
                );
                continue;
            }
            targets.push(Target {
                provider: provider.clone(),
                model_json: Bytes::from(serde_json::Value::String(model.clone()).to_string()),
                model,
                weight: *t.weight.get_ref(),
                health: Arc::default(),
            });
        }
        let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum::<u64>();
        if total_weight == 0 && !targets.is_empty() {
            problems.at(
                m.targets.span(),
                format_args!("models[{i}].targets: weights must not all be 0"),
            );
        }
        let counter = tokenizers::counter(m, i, &tokenizers, &mut problems);
        let at = format!("models[{i}]");
        compiled.push((
            Route {
                name: name.clone(),
                name_header: http::HeaderValue::from_str(name).ok(),
                index: model_names.len(),
                targets,
                total_weight,
                counter,
                fallbacks: Vec::new(),
                retry: fallback::retry(m.retry.as_ref(), &at, &mut problems),
                timeouts: fallback::timeouts(m.timeouts.as_ref(), &at, &mut problems),
                health: fallback::health(m.health.as_ref(), &at, &mut problems),
                budget: Arc::default(),
                price: m.price.as_ref().and_then(|p| price(p, &at, &mut problems)),
            },
            m,
        ));
        model_names.push(name.clone());
    }
    for (route, m) in &mut compiled {
        for (j, f) in m.fallbacks.iter().enumerate() {
            let at = format!("models[{}].fallbacks[{j}]", m.index);
            match model_names.iter().position(|n| n == f.get_ref()) {
                _ if f.get_ref() == &route.name => {
                    problems.at(f.span(), format_args!("{at}: a model cannot fall back to itself"))
                }
                Some(k) if route.fallbacks.contains(&k) => {
                    problems.at(f.span(), format_args!("{at}: `{}` is listed twice", f.get_ref()))
                }
                Some(k) => route.fallbacks.push(k),
                None if raw.unreadable.models.contains(f.get_ref()) => {}
                None => problems.at(f.span(), format_args!("{at}: unknown model `{}`", f.get_ref())),
            }
        }
    }
    // One health per target (provider and model), shared by the models that use it.
    let mut healths: HashMap<(String, String), Arc<crate::pipeline::health::TargetHealth>> = HashMap::new();
    for (mut route, _) in compiled {
        for t in &mut route.targets {
            let key = (t.provider.name.clone(), t.model.clone());
            t.health = healths.entry(key).or_insert_with(|| t.health.clone()).clone();
        }
        routes.insert(route.name.clone(), Arc::new(route));
    }
    let ordered = in_order(&routes, &model_names);

    let admin_tokens = admin::compile(&raw.admin, &mut problems);

    let consumers = consumers::compile(&raw.consumers, &model_names, &mut problems);
    // Unreadable consumers were reported; a limit naming one is not reported again.
    let consumer_names: Vec<&str> = (raw.consumers.iter().map(|c| c.name.get_ref().as_str()))
        .chain(raw.unreadable.consumers.iter().map(String::as_str))
        .collect();
    let limits = rate_limits::compile(&raw.limits, &consumer_names, &mut problems);
    let trusted_proxies = rate_limits::compile_network(&raw.network, &mut problems);
    let cache = cache::compile(raw.cache.as_ref(), &mut problems).map(Arc::new);
    let guards = guardrails::compile(&raw.guardrails, &model_names, &consumer_names, base_dir, &mut problems);
    let search = super::search::compile(
        raw.search.as_ref(),
        &model_names,
        &consumer_names,
        base_dir,
        &mut problems,
    )
    .map(Arc::new);

    let warnings = problems.into_warnings();
    if !problems.is_empty() {
        return Err((problems.into_vec(), warnings));
    }
    let models_body = render_models(model_names.iter());
    Ok(Snapshot {
        version,
        routes,
        model_names,
        ordered,
        models_body,
        admin_tokens,
        consumers,
        limits,
        trusted_proxies,
        cache,
        search,
        guards,
        warnings,
    })
}

/// The routes in the order of `names`.
fn in_order(routes: &foldhash::HashMap<String, Arc<Route>>, names: &[String]) -> Vec<Arc<Route>> {
    names.iter().filter_map(|n| routes.get(n).cloned()).collect()
}

/// A model's `price`, checked: finite, non-negative amounts; a currency code of 1 to 8 letters.
fn price(raw: &super::raw::RawPrice, at: &str, problems: &mut Problems<'_>) -> Option<super::routes::Price> {
    let mut ok = true;
    let mut amount = |v: &toml::Spanned<f64>, field: &str| {
        let x = *v.get_ref();
        if !x.is_finite() || x < 0.0 {
            problems.at(
                v.span(),
                format_args!("{at}.price.{field}: a price per million tokens, 0 or more"),
            );
            ok = false;
        }
        x
    };
    let input = amount(&raw.input, "input");
    let output = amount(&raw.output, "output");
    let cached = raw.cached.as_ref().map_or(input, |c| amount(c, "cached"));
    let currency = raw.currency.get_ref();
    if currency.is_empty() || currency.len() > 8 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        problems.at(
            raw.currency.span(),
            format_args!("{at}.price.currency: a currency code such as USD or CNY"),
        );
        ok = false;
    }
    ok.then(|| super::routes::Price {
        input,
        output,
        cached,
        currency: currency.to_ascii_uppercase(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const GOOD: &str = r#"
[[providers]]
name = "a"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
name = "b"
kind = "openai"
base_url = "http://127.0.0.1:10/compatible-mode/v1/"

[[models]]
name = "m1"
targets = [{ provider = "a", model = "real-1", weight = 3 }, { provider = "b" }]
"#;

    #[test]
    fn prices_are_checked_and_cached_defaults_to_input() {
        let priced = format!("{GOOD}price = {{ input = 2.5, output = 10 }}\n");
        let s = load_str(&priced, "t.toml", None, 1).unwrap();
        let p = s.route("m1").unwrap().price.clone().unwrap();
        assert_eq!(
            (p.input, p.output, p.cached, p.currency.as_str()),
            (2.5, 10.0, 2.5, "USD")
        );
        let bad = format!("{GOOD}price = {{ input = -1, output = 10, currency = \"U S\" }}\n");
        let e = load_str(&bad, "t.toml", None, 1).unwrap_err().to_string();
        assert!(e.contains("models[0].price.input"), "{e}");
        assert!(e.contains("models[0].price.currency"), "{e}");
    }

    #[test]
    fn compiles_routes_with_resolved_providers_and_rewrites() {
        let s = load_str(GOOD, "t.toml", None, 1).unwrap();
        let r = s.route("m1").unwrap();
        assert_eq!(r.targets.len(), 2);
        assert_eq!(r.targets[0].model, "real-1");
        assert_eq!(r.targets[1].model, "m1");
        assert_eq!(r.total_weight, 4);
        assert_eq!(
            r.targets[1].provider.upstream_path("/v1/chat/completions?x=1"),
            "/compatible-mode/v1/chat/completions?x=1"
        );
        assert_eq!(
            &s.models_body[..],
            br#"{"data":[{"created":0,"id":"m1","object":"model","owned_by":"tollgate"}],"object":"list"}"#
        );
    }

    fn problems(text: &str) -> String {
        match load_str(text, "t.toml", None, 1) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_fields_dangling_references_duplicates_and_bad_urls_name_line_and_field() {
        let unknown = format!("{GOOD}\n[[models]]\nname = \"m2\"\ntargets = []\ncolour = 1\n");
        assert!(
            problems(&unknown).contains("unknown field `colour`"),
            "{}",
            problems(&unknown)
        );
        assert!(problems(&unknown).contains("line 19"), "{}", problems(&unknown));

        let dangling = GOOD.replace("{ provider = \"b\" }", "{ provider = \"zz\" }");
        let p = problems(&dangling);
        assert!(
            p.contains("line 14: models[0].targets[1].provider: unknown provider `zz`"),
            "{p}"
        );

        let dup = GOOD.replace("name = \"b\"", "name = \"a\"");
        assert!(
            problems(&dup).contains("line 8: providers[1].name: duplicate provider `a`"),
            "{}",
            problems(&dup)
        );

        let bad_url = GOOD.replace("http://127.0.0.1:9/v1", "ftp://x/v1");
        assert!(
            problems(&bad_url).contains("line 5: providers[0].base_url: scheme must be http or https"),
            "{}",
            problems(&bad_url)
        );
    }

    #[test]
    fn literal_api_keys_are_refused_and_never_echoed() {
        let text = GOOD.replace(
            "base_url = \"http://127.0.0.1:9/v1\"",
            "base_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-literal-oops\"",
        );
        let p = problems(&text);
        assert!(p.contains("providers[0].api_key: secrets must be references"), "{p}");
        assert!(!p.contains("sk-literal-oops"));
    }
}
