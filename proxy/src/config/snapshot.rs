//! The validated, compiled config: what the hot path reads.
//!
//! Built once per load from [`RawConfig`]; references resolved (targets hold `Arc<Provider>`),
//! URLs parsed, addresses resolved, secrets read, the `/v1/models` answer pre-rendered. Never
//! mutated: a reload builds a new one and swaps it in.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use pingora::utils::tls::{parse_x509, WrappedX509};

use super::consumers::{self, Consumers};
use super::rate_limits::{self, LimitRule, TrustedProxies};
use super::raw::{line_of, ProviderKind, RawConfig, RawProvider};
use crate::secret::{self, Secret};
use tollgate_tokenize::{ChatTemplate, Tokenizer};

/// One provider endpoint, ready to connect to.
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub addr: SocketAddr,
    pub tls: bool,
    /// TLS server name and `Host` header value.
    pub host: String,
    pub host_header: HeaderValue,
    /// Path prefix of the base URL without a trailing slash, e.g. `/v1` or `/compatible-mode/v1`.
    pub path_prefix: String,
    /// `Bearer <key>`, marked sensitive.
    pub auth: Option<Secret<HeaderValue>>,
    /// CA certificates trusted for this provider instead of the system's.
    pub ca: Option<Arc<[WrappedX509]>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("path_prefix", &self.path_prefix)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Provider {
    /// The upstream path for a client path under `/v1` (query string kept).
    pub fn upstream_path(&self, client_path_and_query: &str) -> String {
        let rest = client_path_and_query
            .strip_prefix("/v1")
            .unwrap_or(client_path_and_query);
        let mut p = String::with_capacity(self.path_prefix.len() + rest.len());
        p.push_str(&self.path_prefix);
        p.push_str(rest);
        p
    }
}

/// One place a public model can be served.
#[derive(Debug)]
pub struct Target {
    pub provider: Arc<Provider>,
    /// The provider's own model name.
    pub model: String,
    /// `model` as a JSON string literal, ready to splice into a body.
    pub model_json: Bytes,
    pub weight: u32,
}

/// A public model name and where it can be served.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// Position among the public model names (file order): indexes per-consumer allow tables.
    pub index: usize,
    pub targets: Vec<Target>,
    pub total_weight: u64,
    /// The tokenizer and chat template prompts are counted with; `None` means estimate.
    pub counter: Option<(Arc<Tokenizer>, ChatTemplate)>,
}

/// The compiled config.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    /// Looked up on every request: a fast seeded hash (the table is fixed at load; clients only
    /// read it).
    pub routes: foldhash::HashMap<String, Arc<Route>>,
    /// Public model names in file order.
    pub model_names: Vec<String>,
    /// Pre-rendered `GET /v1/models` body.
    pub models_body: Bytes,
    /// Who may call the admin API: a holder's name and token. Empty: the admin API is off.
    pub admin_tokens: Vec<AdminToken>,
    /// Consumers and their keys; `None` when the config has none (the API is open).
    pub consumers: Option<Consumers>,
    /// Rate limit rules in file order.
    pub limits: Vec<Arc<LimitRule>>,
    pub trusted_proxies: TrustedProxies,
}

impl Snapshot {
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }
}

/// Validate and compile; every problem is reported, each naming its line and field.
pub fn compile(raw: RawConfig, text: &str, base_dir: Option<&Path>, version: u64) -> Result<Snapshot, Vec<String>> {
    let mut problems = Vec::new();
    let at = |span: std::ops::Range<usize>| format!("line {}", line_of(text, span.start));

    let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let name = p.name.get_ref();
        if name.is_empty() {
            problems.push(format!("{}: providers[{i}].name: must not be empty", at(p.name.span())));
            continue;
        }
        if providers.contains_key(name) {
            problems.push(format!(
                "{}: providers[{i}].name: duplicate provider `{name}`",
                at(p.name.span())
            ));
            continue;
        }
        match compile_provider(p, base_dir) {
            Ok(provider) => {
                providers.insert(name.clone(), Arc::new(provider));
            }
            Err((field, msg, span)) => problems.push(format!("{}: providers[{i}].{field}: {msg}", at(span))),
        }
    }

    let tokenizers = compile_tokenizers(&raw, base_dir, &at, &mut problems);
    let mut routes = foldhash::HashMap::default();
    let mut model_names = Vec::new();
    for (i, m) in raw.models.iter().enumerate() {
        let name = m.name.get_ref();
        if name.is_empty() {
            problems.push(format!("{}: models[{i}].name: must not be empty", at(m.name.span())));
            continue;
        }
        if routes.contains_key(name) {
            problems.push(format!(
                "{}: models[{i}].name: duplicate model `{name}`",
                at(m.name.span())
            ));
            continue;
        }
        if m.targets.get_ref().is_empty() {
            problems.push(format!(
                "{}: models[{i}].targets: at least one target is required",
                at(m.targets.span())
            ));
            continue;
        }
        let mut targets = Vec::new();
        for (j, t) in m.targets.get_ref().iter().enumerate() {
            let Some(provider) = providers.get(t.provider.get_ref()) else {
                // A provider that failed its own validation was already reported.
                if !raw.providers.iter().any(|p| p.name.get_ref() == t.provider.get_ref()) {
                    problems.push(format!(
                        "{}: models[{i}].targets[{j}].provider: unknown provider `{}`",
                        at(t.provider.span()),
                        t.provider.get_ref()
                    ));
                }
                continue;
            };
            let model = t.model.clone().unwrap_or_else(|| name.clone());
            if model.is_empty() {
                problems.push(format!(
                    "{}: models[{i}].targets[{j}].model: must not be empty",
                    at(t.provider.span())
                ));
                continue;
            }
            targets.push(Target {
                provider: provider.clone(),
                model_json: Bytes::from(serde_json::Value::String(model.clone()).to_string()),
                model,
                weight: *t.weight.get_ref(),
            });
        }
        let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum::<u64>();
        if total_weight == 0 && !targets.is_empty() {
            problems.push(format!(
                "{}: models[{i}].targets: weights must not all be 0",
                at(m.targets.span())
            ));
        }
        let counter = compile_counter(m, i, &tokenizers, &at, &mut problems);
        routes.insert(
            name.clone(),
            Arc::new(Route {
                name: name.clone(),
                index: model_names.len(),
                targets,
                total_weight,
                counter,
            }),
        );
        model_names.push(name.clone());
    }

    let admin_tokens = compile_admin(&raw.admin, &at, &mut problems);

    let consumers = consumers::compile(&raw.consumers, &model_names, at, &mut problems);
    let consumer_names: Vec<&str> = raw.consumers.iter().map(|c| c.name.get_ref().as_str()).collect();
    let limits = rate_limits::compile(&raw.limits, &consumer_names, at, &mut problems);
    let trusted_proxies = rate_limits::compile_network(&raw.network, at, &mut problems);

    if !problems.is_empty() {
        return Err(problems);
    }
    let models_body = render_models(model_names.iter());
    Ok(Snapshot {
        version,
        routes,
        model_names,
        models_body,
        admin_tokens,
        consumers,
        limits,
        trusted_proxies,
    })
}

/// A holder of the admin API: named in every audit line of what they do.
pub struct AdminToken {
    pub name: String,
    pub token: Secret<String>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `admin.token` (held by `admin`) and the named `[[admin.tokens]]`. Names are unique, and so
/// are tokens: an audit line must name exactly one holder.
fn compile_admin(
    raw: &super::raw::RawAdmin,
    at: &impl Fn(std::ops::Range<usize>) -> String,
    problems: &mut Vec<String>,
) -> Vec<AdminToken> {
    // Holders by their declared names (a name is taken even when its token fails to resolve).
    let mut holders = Vec::new();
    if let Some(t) = &raw.token {
        holders.push(("admin", "admin.token".to_string(), t));
    }
    for (i, t) in raw.tokens.iter().enumerate() {
        let name = t.name.get_ref().as_str();
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !well_formed || holders.iter().any(|(taken, _, _)| *taken == name) {
            problems.push(format!(
                "{}: admin.tokens[{i}].name: `{}` is empty, taken or not made of letters, digits and -_.@",
                at(t.name.span()),
                name.chars().take(64).collect::<String>()
            ));
            continue;
        }
        holders.push((name, format!("admin.tokens[{i}]"), &t.token));
    }
    let mut out: Vec<AdminToken> = Vec::with_capacity(holders.len());
    for (name, field, token) in holders {
        match secret::resolve(token.get_ref()) {
            Ok(s) if out.iter().any(|a| a.token.expose() == s.expose()) => {
                problems.push(format!(
                    "{}: {field}.token: the same token as another holder",
                    at(token.span())
                ));
            }
            Ok(s) => out.push(AdminToken {
                name: name.to_string(),
                token: s,
            }),
            Err(e) => problems.push(format!("{}: {field}.token: {e}", at(token.span()))),
        }
    }
    out
}

/// Built-in tokenizers and the `[[tokenizers]]` files, by name. Files are read here, at load.
fn compile_tokenizers(
    raw: &RawConfig,
    base_dir: Option<&Path>,
    at: &impl Fn(std::ops::Range<usize>) -> String,
    problems: &mut Vec<String>,
) -> HashMap<String, Arc<Tokenizer>> {
    let mut out = HashMap::new();
    for (i, t) in raw.tokenizers.iter().enumerate() {
        let name = t.name.get_ref();
        if out.contains_key(name) {
            problems.push(format!(
                "{}: tokenizers[{i}].name: `{name}` is taken",
                at(t.name.span())
            ));
            continue;
        }
        let path = match base_dir {
            Some(dir) if Path::new(t.file.get_ref()).is_relative() => dir.join(t.file.get_ref()),
            _ => Path::new(t.file.get_ref()).to_path_buf(),
        };
        match Tokenizer::from_tokenizer_json(name, &path) {
            Ok(tok) => {
                out.insert(name.clone(), Arc::new(tok));
            }
            Err(e) => problems.push(format!("{}: tokenizers[{i}].file: {e}", at(t.file.span()))),
        }
    }
    out
}

fn compile_counter(
    m: &super::raw::RawModel,
    i: usize,
    tokenizers: &HashMap<String, Arc<Tokenizer>>,
    at: &impl Fn(std::ops::Range<usize>) -> String,
    problems: &mut Vec<String>,
) -> Option<(Arc<Tokenizer>, ChatTemplate)> {
    let t = m.tokenizer.as_ref()?;
    // Built-in encodings are built on first use (shared by every later snapshot), so a config that
    // names none pays nothing.
    let tok = match t.get_ref().as_str() {
        "o200k" => Arc::new(Tokenizer::o200k()),
        "cl100k" => Arc::new(Tokenizer::cl100k()),
        other => match tokenizers.get(other) {
            Some(tok) => tok.clone(),
            None => {
                problems.push(format!(
                    "{}: models[{i}].tokenizer: unknown tokenizer `{other}`",
                    at(t.span())
                ));
                return None;
            }
        },
    };
    let builtin = BUILT_IN_TOKENIZERS.contains(&t.get_ref().as_str());
    let template = match &m.chat_template {
        Some(c) => match ChatTemplate::from_name(c.get_ref()) {
            Some(ct) => ct,
            None => {
                problems.push(format!(
                    "{}: models[{i}].chat_template: `{}` is not openai, chatml, llama3 or deepseek_v3",
                    at(c.span()),
                    c.get_ref()
                ));
                return None;
            }
        },
        None if builtin => ChatTemplate::OpenAi,
        None => {
            problems.push(format!(
                "{}: models[{i}].chat_template: required with a tokenizer file",
                at(t.span())
            ));
            return None;
        }
    };
    Some((tok, template))
}

/// Tokenizer names that need no `[[tokenizers]]` entry.
const BUILT_IN_TOKENIZERS: &[&str] = &["o200k", "cl100k"];

type FieldProblem = (&'static str, String, std::ops::Range<usize>);

fn compile_provider(p: &RawProvider, base_dir: Option<&Path>) -> Result<Provider, FieldProblem> {
    let url_span = p.base_url.span();
    let bad_url = |msg: String| ("base_url", msg, url_span.clone());
    let uri: http::Uri = p
        .base_url
        .get_ref()
        .parse()
        .map_err(|e| bad_url(format!("`{}` is not a URL: {e}", p.base_url.get_ref())))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad_url("scheme must be http or https".into())),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad_url("URL has no host".into()))?;
    let host_plain = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = (host_plain.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| bad_url(format!("cannot resolve `{host_plain}`: {e}")))?
        .next()
        .ok_or_else(|| bad_url(format!("`{host_plain}` resolves to no address")))?;
    if uri.query().is_some() {
        return Err(bad_url("base_url must not have a query string".into()));
    }
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let host_header =
        HeaderValue::from_str(authority).map_err(|_| bad_url("host is not a valid header value".into()))?;

    let auth = match &p.api_key {
        None => None,
        Some(k) => {
            let key = secret::resolve(k.get_ref()).map_err(|e| ("api_key", e.to_string(), k.span()))?;
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                (
                    "api_key",
                    "the key contains characters not allowed in a header".to_string(),
                    k.span(),
                )
            })?;
            v.set_sensitive(true);
            Some(Secret::new(v))
        }
    };
    let ca = match &p.ca_file {
        None => None,
        Some(f) => Some(load_ca(f.get_ref(), base_dir).map_err(|msg| ("ca_file", msg, f.span()))?),
    };
    Ok(Provider {
        name: p.name.get_ref().clone(),
        kind: p.kind,
        addr,
        tls,
        host: host_plain,
        host_header,
        path_prefix,
        auth,
        ca,
    })
}

fn load_ca(file: &str, base_dir: Option<&Path>) -> Result<Arc<[WrappedX509]>, String> {
    let path = match base_dir {
        Some(dir) if Path::new(file).is_relative() => dir.join(file),
        _ => Path::new(file).to_path_buf(),
    };
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der
            .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?
            .to_vec();
        // parse_x509 panics on malformed DER; contain it here, at load, far from any request.
        let wrapped = std::panic::catch_unwind(|| WrappedX509::new(der, parse_x509))
            .map_err(|_| format!("{} holds a certificate that does not parse", path.display()))?;
        certs.push(wrapped);
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(Arc::from(certs))
}

/// The `GET /v1/models` body listing `names`.
pub(super) fn render_models<'a>(names: impl Iterator<Item = &'a String>) -> Bytes {
    let data: Vec<serde_json::Value> = names
        .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
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
