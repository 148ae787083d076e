//! Providers: each `[[providers]]` entry resolved once at load into an address, TLS settings,
//! a `Host` header and the key to inject — nothing looked up by string per request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;
use pingora::utils::tls::{parse_x509, WrappedX509};

use super::problems::Problems;
use super::raw::{ProviderKind, RawProvider};
use crate::secret::Secret;

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

type FieldProblem = (&'static str, String, std::ops::Range<usize>);

/// Compile `providers[i]`, reporting its problems; `None` when it has any.
pub fn compile(p: &RawProvider, i: usize, base_dir: Option<&Path>, problems: &mut Problems<'_>) -> Option<Provider> {
    compile_as(p, &format!("providers[{i}]"), "base_url", base_dir, problems)
}

/// Compile an HTTP endpoint written like a provider (a moderation service, say), its problems
/// named `{at}.{field}` and its URL field `url_field`.
pub fn compile_as(
    p: &RawProvider,
    at: &str,
    url_field: &'static str,
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Option<Provider> {
    // Each field is checked even when one before it failed, so one run reports them all.
    let mut failed = false;
    let key = match &p.api_key {
        None => None,
        Some(k) => match problems.secret(k, format_args!("{at}.api_key")) {
            Some(secret) => Some((secret, k.span())),
            None => {
                failed = true;
                None
            }
        },
    };
    let ca = match &p.ca_file {
        None => None,
        Some(f) => match load_ca(f.get_ref(), base_dir) {
            Ok(ca) => Some(ca),
            Err(CaError::Missing(msg)) if problems.options.offline => {
                problems.warn(f.span(), format_args!("{at}.ca_file: {msg} (offline check)"));
                None
            }
            Err(CaError::Missing(msg) | CaError::Bad(msg)) => {
                problems.at(f.span(), format_args!("{at}.ca_file: {msg}"));
                failed = true;
                None
            }
        },
    };
    match compile_rest(p, key, ca, problems.options.offline, url_field) {
        Ok(provider) if !failed => Some(provider),
        Ok(_) => None,
        Err((field, msg, span)) => {
            problems.at(span, format_args!("{at}.{field}: {msg}"));
            None
        }
    }
}

fn compile_rest(
    p: &RawProvider,
    key: Option<(Secret<String>, std::ops::Range<usize>)>,
    ca: Option<Arc<[WrappedX509]>>,
    offline: bool,
    url_field: &'static str,
) -> Result<Provider, FieldProblem> {
    let url_span = p.base_url.span();
    let bad_url = |msg: String| (url_field, msg, url_span.clone());
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
    let addr = if offline {
        // Not looked up: an offline check never connects.
        SocketAddr::from(([0, 0, 0, 0], port))
    } else {
        (host_plain.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| bad_url(format!("cannot resolve `{host_plain}`: {e}")))?
            .next()
            .ok_or_else(|| bad_url(format!("`{host_plain}` resolves to no address")))?
    };
    if uri.query().is_some() {
        return Err(bad_url("the URL must not have a query string".into()));
    }
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let host_header =
        HeaderValue::from_str(authority).map_err(|_| bad_url("host is not a valid header value".into()))?;

    let auth = match key {
        None => None,
        Some((key, span)) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                (
                    "api_key",
                    "the key contains characters not allowed in a header".to_string(),
                    span,
                )
            })?;
            v.set_sensitive(true);
            Some(Secret::new(v))
        }
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

/// Why a CA file cannot be used: it is not there (or not readable), or it holds no usable
/// certificate.
enum CaError {
    Missing(String),
    Bad(String),
}

fn load_ca(file: &str, base_dir: Option<&Path>) -> Result<Arc<[WrappedX509]>, CaError> {
    let path = super::files::resolve(base_dir, file);
    let pem = super::files::read(&path, 16 << 20)
        .map_err(|e| CaError::Missing(format!("cannot read {}: {e}", path.display())))?;
    parse_ca(&pem, &path).map_err(CaError::Bad)
}

fn parse_ca(pem: &[u8], path: &Path) -> Result<Arc<[WrappedX509]>, String> {
    let mut certs = Vec::new();
    for der in rustls_pemfile::certs(&mut &pem[..]) {
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
