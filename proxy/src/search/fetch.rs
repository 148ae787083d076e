//! Full text: the top result pages fetched, concurrently and bounded (timeout, size cap,
//! redirects), and read into plain text (see [`html`](crate::html)).
//!
//! Page URLs come from the open web, so every fetch is an SSRF risk: only `http` and `https`;
//! the host is resolved by the gateway and every address it resolves to is checked (loopback,
//! private, link-local — cloud metadata lives there —, carrier-grade NAT, unique-local,
//! multicast, unspecified are refused unless `allow_private`); the connection then goes to the
//! address that was checked, never to a second lookup (no DNS rebinding). Each redirect is a
//! new URL, checked the same way.

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

use crate::config::raw::ProviderKind;
use crate::config::search::Fetch as FetchPolicy;
use crate::config::Provider;
use crate::upstream::{self, Connections, UpstreamOptions};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// Why a page gave no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL or an address it resolves to is not allowed.
    Refused(&'static str),
    /// It could not be fetched or read.
    Failed(String),
}

/// A fetched page's text and title, and the bytes read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub text: String,
    pub title: String,
    pub bytes: usize,
}

/// Whether `ip` is an address the public web does not use.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// A URL the gateway may fetch: scheme, host, port, path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn target(url: &str) -> Result<Target, FetchError> {
    let uri: http::Uri = url.parse().map_err(|_| FetchError::Refused("not_a_url"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(FetchError::Refused("scheme")),
    };
    let authority = uri.authority().ok_or(FetchError::Refused("not_a_url"))?;
    if authority.as_str().contains('@') {
        return Err(FetchError::Refused("credentials"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(FetchError::Refused("not_a_url"));
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Target {
        tls,
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        host,
        authority: authority.as_str().to_string(),
        path: if path.is_empty() { "/".into() } else { path.into() },
    })
}

/// The address to connect to for `t`: resolved once, every address checked.
async fn resolve(t: &Target, policy: &FetchPolicy) -> Result<SocketAddr, FetchError> {
    let addrs: Vec<SocketAddr> = match t.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, t.port)],
        Err(_) => tokio::net::lookup_host((t.host.as_str(), t.port))
            .await
            .map_err(|_| FetchError::Failed("the host does not resolve".into()))?
            .collect(),
    };
    if !policy.allow_private && addrs.iter().any(|a| is_private(a.ip())) {
        return Err(FetchError::Refused("private_address"));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| FetchError::Failed("the host resolves to no address".into()))
}

/// Fetch `url` and read its text.
pub async fn page(
    conns: &Connections,
    opts: &UpstreamOptions,
    policy: &FetchPolicy,
    url: &str,
) -> Result<Page, FetchError> {
    let fetch = async {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let t = target(&url)?;
            let addr = resolve(&t, policy).await?;
            match get(conns, opts, policy, &t, addr).await? {
                Got::Body(body, html) => {
                    let raw = String::from_utf8_lossy(&body);
                    let (text, title) = if html {
                        crate::html::text(&raw)
                    } else {
                        (raw.into_owned(), String::new())
                    };
                    return Ok(Page {
                        text,
                        title,
                        bytes: body.len(),
                    });
                }
                Got::Redirect(location) => url = join(&t, &location),
            }
        }
        Err(FetchError::Failed("too many redirects".into()))
    };
    tokio::time::timeout(policy.timeout, fetch)
        .await
        .unwrap_or_else(|_| Err(FetchError::Failed("timeout".into())))
}

enum Got {
    /// The body, and whether it is HTML.
    Body(Bytes, bool),
    Redirect(String),
}

async fn get(
    conns: &Connections,
    opts: &UpstreamOptions,
    policy: &FetchPolicy,
    t: &Target,
    addr: SocketAddr,
) -> Result<Got, FetchError> {
    let failed = |why: String| FetchError::Failed(why);
    let host_header = HeaderValue::from_str(&t.authority).map_err(|_| FetchError::Refused("not_a_url"))?;
    let endpoint = Provider {
        name: "page".into(),
        kind: ProviderKind::Openai,
        addr,
        tls: t.tls,
        host: t.host.clone(),
        host_header,
        path_prefix: String::new(),
        auth: None,
        ca: None,
    };
    let mut peer = upstream::peer(&endpoint, opts);
    peer.options.read_timeout = Some(policy.timeout);
    if !t.path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FetchError::Refused("not_a_url"));
    }
    let head = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\naccept: text/html, text/plain;q=0.9\r\nuser-agent: Tollgate/0.1 (search)\r\n\r\n",
        t.path, t.authority
    );
    let mut up = upstream::send(conns, &peer, head.as_bytes(), &Bytes::new())
        .await
        .map_err(|e| failed(e.outcome().to_string()))?;
    let status = up.status();
    if status.is_redirection() {
        let location = up
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| failed("a redirect without a location".into()))?
            .to_string();
        return Ok(Got::Redirect(location));
    }
    if !status.is_success() {
        return Err(failed(format!("the page answered {}", status.as_u16())));
    }
    let ctype = up
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/html")
        .to_ascii_lowercase();
    let html = ctype.starts_with("text/html") || ctype.starts_with("application/xhtml");
    if !(html || ctype.starts_with("text/plain")) {
        return Err(failed("not a text page".into()));
    }
    if up
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return Err(failed("an encoded page".into()));
    }
    let mut body = BytesMut::new();
    let mut whole = true;
    while let Some(chunk) = up
        .read_body()
        .await
        .map_err(|e| failed(e.etype().as_str().to_string()))?
    {
        let room = policy.max_bytes - body.len();
        if chunk.len() > room {
            // Past the cap: what was read is enough (the connection is not kept).
            body.extend_from_slice(&chunk[..room]);
            whole = false;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    if whole {
        upstream::release(conns, &peer, up);
    }
    Ok(Got::Body(body.freeze(), html))
}

/// A redirect's location made absolute against the URL that answered it.
fn join(base: &Target, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") || location.contains("://") {
        return location.to_string();
    }
    let scheme = if base.tls { "https" } else { "http" };
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{}{location}", base.authority);
    }
    let dir = base.path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{scheme}://{}{dir}/{location}", base.authority)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn private_and_special_addresses_are_known() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn only_plain_web_urls_are_targets() {
        let t = target("https://example.com:8443/a/b?c=d").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "example.com", 8443, "/a/b?c=d")
        );
        assert_eq!(target("http://[::1]/").unwrap().host, "::1");
        for bad in [
            "file:///etc/passwd",
            "gopher://x/",
            "ftp://x/",
            "http://user:pw@x/",
            "/relative",
            "kb://hr/leave",
        ] {
            assert!(matches!(target(bad), Err(FetchError::Refused(_))), "{bad}");
        }
        let base = target("http://h.example/docs/a.html").unwrap();
        assert_eq!(join(&base, "b.html"), "http://h.example/docs/b.html");
        assert_eq!(join(&base, "/c"), "http://h.example/c");
        assert_eq!(join(&base, "https://o.example/"), "https://o.example/");
    }

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_are_refused() {
        let strict = FetchPolicy {
            pages: 1,
            timeout: Duration::from_secs(1),
            max_bytes: 1024,
            allow_private: false,
        };
        let t = target("http://localhost:8080/").unwrap();
        assert_eq!(resolve(&t, &strict).await, Err(FetchError::Refused("private_address")));
        let lab = FetchPolicy {
            allow_private: true,
            ..strict
        };
        assert!(resolve(&t, &lab).await.is_ok());
    }
}
