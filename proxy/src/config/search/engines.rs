//! `[[search.engines]]`: the engines a search asks, each validated at load: a web API's
//! endpoint and key, or the embedded knowledge base's folders (its index opened, or built when
//! the documents changed, as the config loads).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{millis, Domain};
use crate::config::files;
use crate::config::problems::Problems;
use crate::config::raw::{ProviderKind, RawProvider};
use crate::config::Provider;
use crate::kb::{KnowledgeBase, Opened};
use crate::secret::Secret;

/// One search engine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub name: Spanned<String>,
    pub kind: EngineKind,
    /// The engine's endpoint, e.g. `http://searx:8080/search`, `https://api.bing.microsoft.com/v7.0/search`.
    pub url: Option<Spanned<String>>,
    /// Secret reference for the engine's key (Bing: subscription key; Google: API key;
    /// Elasticsearch: sent as `Authorization: ApiKey`).
    pub api_key: Option<Spanned<String>>,
    /// Google Programmable Search: the search engine id (`cx`).
    pub cx: Option<String>,
    /// Elasticsearch/OpenSearch: the index searched.
    pub index: Option<String>,
    /// Elasticsearch/OpenSearch: the fields matched (`title`, `content`, `url` read back).
    #[serde(default)]
    pub fields: Vec<String>,
    /// What the engine knows: `web`, `academic` or `private`. Default from its kind.
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    /// Kind `local`: the folder of Markdown, text and HTML documents (relative to the config file).
    pub docs: Option<Spanned<String>>,
    /// Kind `local`: where its index is kept (default `.tollgate/kb-<name>` beside the config file).
    pub index_dir: Option<String>,
    #[serde(default = "default_engine_timeout")]
    pub timeout_ms: Spanned<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Searxng,
    Bing,
    Google,
    Arxiv,
    Elasticsearch,
    /// The embedded knowledge base.
    Local,
}

fn default_engine_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 3000)
}

/// Where an engine's results come from.
#[derive(Debug)]
pub enum Backend {
    /// A web API at this endpoint.
    Http(Provider),
    /// The embedded knowledge base (`None` in an offline check, which opens no index).
    Local(Option<Arc<KnowledgeBase>>),
}

/// One engine, validated.
#[derive(Debug)]
pub struct Engine {
    pub name: String,
    pub kind: EngineKind,
    pub backend: Backend,
    pub key: Option<Secret<String>>,
    pub cx: Option<String>,
    pub index: Option<String>,
    pub fields: Vec<String>,
    pub domains: Vec<Domain>,
    pub timeout: Duration,
}

/// Compile `search.engines[i]`, reporting its problems; `None` when it has any.
pub fn compile(e: &RawEngine, i: usize, base_dir: Option<&Path>, problems: &mut Problems<'_>) -> Option<Engine> {
    let at = format!("search.engines[{i}]");
    let key = match &e.api_key {
        Some(k) => Some(problems.secret(k, format_args!("{at}.api_key"))?),
        None => None,
    };
    match e.kind {
        EngineKind::Bing | EngineKind::Google if key.is_none() => {
            problems.at(e.name.span(), format_args!("{at}.api_key: required for this kind"));
            return None;
        }
        EngineKind::Google if e.cx.is_none() => {
            problems.at(e.name.span(), format_args!("{at}.cx: required for kind google"));
            return None;
        }
        EngineKind::Elasticsearch if e.index.is_none() => {
            problems.at(
                e.name.span(),
                format_args!("{at}.index: required for kind elasticsearch"),
            );
            return None;
        }
        _ => {}
    }
    let mut domains = Vec::new();
    for d in &e.domains {
        match Domain::parse(d.get_ref()) {
            Some(d) => domains.push(d),
            None => {
                problems.at(d.span(), format_args!("{at}.domains: one of web, academic, private"));
                return None;
            }
        }
    }
    if domains.is_empty() {
        domains.push(match e.kind {
            EngineKind::Arxiv => Domain::Academic,
            EngineKind::Elasticsearch | EngineKind::Local => Domain::Private,
            _ => Domain::Web,
        });
    }
    let backend = match e.kind {
        EngineKind::Local => Backend::Local(local(e, &at, base_dir, problems)?),
        _ => {
            let Some(url) = &e.url else {
                problems.at(e.name.span(), format_args!("{at}.url: required for this kind"));
                return None;
            };
            let raw = RawProvider {
                index: i,
                name: e.name.clone(),
                kind: ProviderKind::Openai,
                base_url: url.clone(),
                api_key: None,
                ca_file: None,
            };
            Backend::Http(crate::config::providers::compile_as(
                &raw, &at, "url", base_dir, problems,
            )?)
        }
    };
    Some(Engine {
        name: e.name.get_ref().clone(),
        kind: e.kind,
        backend,
        key,
        cx: e.cx.clone(),
        index: e.index.clone(),
        fields: if e.fields.is_empty() {
            vec!["title".into(), "content".into()]
        } else {
            e.fields.clone()
        },
        domains,
        timeout: millis(&e.timeout_ms, &format!("{at}.timeout_ms"), problems),
    })
}

/// The knowledge base of a `local` engine: opened (built first when its documents changed),
/// or, in an offline check, only its folder checked.
fn local(
    e: &RawEngine,
    at: &str,
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Option<Option<Arc<KnowledgeBase>>> {
    let Some(docs) = &e.docs else {
        problems.at(e.name.span(), format_args!("{at}.docs: required for kind local"));
        return None;
    };
    let folder = files::resolve(base_dir, docs.get_ref());
    if !folder.is_dir() {
        problems.at(
            docs.span(),
            format_args!("{at}.docs: `{}` is not a folder", folder.display()),
        );
        return None;
    }
    if problems.options.offline {
        return Some(None);
    }
    let index_dir = files::resolve(
        base_dir,
        e.index_dir
            .as_deref()
            .unwrap_or(&format!(".tollgate/kb-{}", e.name.get_ref())),
    );
    match KnowledgeBase::open(&folder, &index_dir, docs.get_ref(), false) {
        Ok(kb) => {
            match kb.opened {
                Opened::Built(took) => {
                    tracing::info!(engine = %e.name.get_ref(), documents = kb.documents, ms = took.as_millis() as u64, "knowledge base indexed")
                }
                Opened::Existing => {
                    tracing::debug!(engine = %e.name.get_ref(), documents = kb.documents, "knowledge base opened")
                }
            }
            Some(Some(Arc::new(kb)))
        }
        Err(err) => {
            problems.at(docs.span(), format_args!("{at}.docs: {err}"));
            None
        }
    }
}
