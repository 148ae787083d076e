//! Rate limit rules and trusted proxies, validated and compiled from `[[limits]]` and
//! `[network]`: everything a request needs to find its buckets is resolved here, once.

use std::net::IpAddr;

use http::HeaderName;
use tollgate_limits::Limit;

use super::problems::Problems;
use super::raw::{RawLimit, RawNetwork};

/// How a rule's buckets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// This node's buckets, leased from a limit shared through Redis in the background (plain
    /// local buckets when no Redis is configured).
    Sync,
    /// One atomic Redis script per decision.
    Exact,
    /// This node only, even with Redis.
    Local,
}

/// One part of a limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Consumer,
    /// The API key's id (never the key).
    Key,
    /// The body's `user`.
    User,
    /// The public model name.
    Model,
    /// The client IP (see [`TrustedProxies`]).
    Ip,
    Header(HeaderName),
    Query(String),
    Cookie(String),
}

/// A compiled `[[limits]]` entry.
#[derive(Debug, Clone)]
pub struct LimitRule {
    pub name: String,
    pub by: Vec<KeyPart>,
    pub tokens: Option<Limit>,
    pub requests: Option<Limit>,
    /// Requests in flight at once, per key.
    pub concurrent: Option<u64>,
    /// How long a request may wait for a concurrency slot (zero: not at all).
    pub queue: std::time::Duration,
    /// Period name for messages (`minute`, ...).
    pub per: &'static str,
    pub consumers: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub mode: LimitMode,
    pub fail_open: bool,
    pub completion_reserve: Option<u64>,
}

impl LimitRule {
    /// Whether this rule applies to a request of `consumer` for `model`.
    pub fn selects(&self, consumer: Option<&str>, model: &str) -> bool {
        let consumer_ok = match (&self.consumers, consumer) {
            (None, _) => true,
            (Some(list), Some(c)) => list.iter().any(|n| n == c),
            (Some(_), None) => false,
        };
        consumer_ok
            && self
                .models
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| super::glob::matches(g, model)))
    }
}

/// One address block: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a.trim().parse::<IpAddr>().ok()?, Some(b.trim().parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net) as u128, u32::from(ip) as u128, self.bits, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.bits, 128),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, width: u32) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = width - bits as u32;
    (a >> shift) == (b >> shift)
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Proxies whose `X-Forwarded-For` the gateway believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address from the peer and the request's `X-Forwarded-For` fields (read
    /// only when the peer is a trusted proxy), as [`TrustedProxies::client_ip`] decides.
    pub fn client_ip_of(&self, peer: Option<IpAddr>, headers: &http::HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        self.client_ip(Some(peer), &forwarded)
    }

    /// The client's address: the peer, unless the peer is a trusted proxy; then the
    /// `X-Forwarded-For` entries are read from the right (the nearest hop) and the first one
    /// that is not a trusted proxy is the client. A client cannot spoof its way past a trusted
    /// proxy by sending its own `X-Forwarded-For`: those entries sit to the left of the one
    /// the proxy appended.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                // An unparsable hop: stop at the last address known good.
                return Some(client);
            };
            client = canonical(ip);
            if !self.trusts(client) {
                return Some(client);
            }
        }
        Some(client)
    }
}

fn period(name: &str) -> Option<(u64, &'static str)> {
    Some(match name {
        "second" => (1_000, "second"),
        "minute" => (60_000, "minute"),
        "hour" => (3_600_000, "hour"),
        "day" => (86_400_000, "day"),
        _ => return None,
    })
}

fn key_part(text: &str) -> Result<KeyPart, String> {
    let bad_name = |what: &str| format!("`{text}`: {what} needs a name, e.g. `{what}:x-user-id`");
    Ok(match text {
        "consumer" => KeyPart::Consumer,
        "key" => KeyPart::Key,
        "user" => KeyPart::User,
        "model" => KeyPart::Model,
        "ip" => KeyPart::Ip,
        _ => match text.split_once(':') {
            Some(("header", n)) if !n.is_empty() => KeyPart::Header(
                HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("`{n}` is not a header name"))?,
            ),
            Some(("query", n)) if !n.is_empty() => KeyPart::Query(n.to_string()),
            Some(("cookie", n)) if !n.is_empty() => KeyPart::Cookie(n.to_string()),
            Some(("header" | "query" | "cookie", _)) => return Err(bad_name(text.split(':').next().unwrap_or(""))),
            _ => {
                return Err(format!(
                    "`{text}` is not consumer, key, user, model, ip, header:<name>, query:<name> or cookie:<name>"
                ))
            }
        },
    })
}

/// Compile `[[limits]]`; `consumer_names` are the configured consumers.
pub fn compile(
    raw: &[RawLimit],
    consumer_names: &[&str],
    problems: &mut Problems<'_>,
) -> Vec<std::sync::Arc<LimitRule>> {
    let mut out = Vec::new();
    for (n, r) in raw.iter().enumerate() {
        let i = r.index;
        let before = problems.len();
        let name = r.name.get_ref();
        if name.is_empty() || raw[..n].iter().any(|o| o.name.get_ref() == name) {
            problems.at(
                r.name.span(),
                format_args!("limits[{i}].name: empty or duplicate limit name `{name}`"),
            );
        }
        let mut by = Vec::new();
        for p in &r.by {
            match key_part(p.get_ref()) {
                Ok(k) => by.push(k),
                Err(e) => problems.at(p.span(), format_args!("limits[{i}].by: {e}")),
            }
        }
        let (period_ms, per) = match &r.per {
            Some(p) => period(p.get_ref()).unwrap_or_else(|| {
                problems.at(
                    p.span(),
                    format_args!("limits[{i}].per: `{}` is not second, minute, hour or day", p.get_ref()),
                );
                (60_000, "minute")
            }),
            None => {
                if r.tokens.is_some() || r.requests.is_some() {
                    problems.at(
                        r.name.span(),
                        format_args!(
                            "limits[{i}].per: `tokens` and `requests` need a period (second, minute, hour or day)"
                        ),
                    );
                }
                (60_000, "minute")
            }
        };
        let concurrent = r.concurrent.as_ref().map(|c| *c.get_ref());
        if r.tokens.is_none() && r.requests.is_none() && concurrent.is_none() {
            problems.at(
                r.name.span(),
                format_args!("limits[{i}].tokens: set `tokens`, `requests` or `concurrent` (any of them)"),
            );
        }
        if let Some(q) = &r.queue_ms {
            if concurrent.is_none() {
                problems.at(q.span(), format_args!("limits[{i}].queue_ms: only with `concurrent`"));
            }
        }
        if r.tokens == Some(0) || r.requests == Some(0) || concurrent == Some(0) {
            problems.at(
                r.name.span(),
                format_args!("limits[{i}].tokens: a limit of 0 refuses everything; remove the rule or raise it"),
            );
        }
        let consumers = r.consumers.as_ref().map(|list| {
            list.iter()
                .map(|c| {
                    if !consumer_names.contains(&c.get_ref().as_str()) {
                        problems.at(
                            c.span(),
                            format_args!("limits[{i}].consumers: no consumer named `{}`", c.get_ref()),
                        );
                    }
                    c.get_ref().clone()
                })
                .collect()
        });
        let mode = match r.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("sync") => LimitMode::Sync,
            Some("exact") => LimitMode::Exact,
            Some("local") => LimitMode::Local,
            Some(other) => {
                let span = r.mode.as_ref().map(|m| m.span()).unwrap_or_default();
                problems.at(
                    span,
                    format_args!("limits[{i}].mode: `{other}` is not sync, exact or local"),
                );
                LimitMode::Sync
            }
        };
        let fail_open = fail_open(&r.on_redis_error, format_args!("limits[{i}]"), problems);
        if let Some(tokens) = r.tokens.filter(|&t| t > 0) {
            let (reserve, from) = match r.completion_reserve {
                Some(c) => (c, "its completion_reserve"),
                None => (problems.options.completion_reserve, "--completion-reserve"),
            };
            if reserve >= tokens {
                problems.warn(
                    r.name.span(),
                    format_args!(
                        "limits[{i}]: `{name}` reserves {reserve} completion tokens ({from}) for a request without \
                         max_tokens, not less than the {tokens} tokens per {per} it allows: every such request is \
                         refused (request_exceeds_limit); lower the reserve or raise tokens"
                    ),
                );
            }
        }
        if problems.len() == before {
            out.push(std::sync::Arc::new(LimitRule {
                name: name.clone(),
                by,
                tokens: r.tokens.map(|t| Limit::new(t, period_ms)),
                requests: r.requests.map(|n| Limit::new(n, period_ms)),
                concurrent,
                queue: std::time::Duration::from_millis(r.queue_ms.as_ref().map_or(0, |q| *q.get_ref())),
                per,
                consumers,
                models: r
                    .models
                    .as_ref()
                    .map(|m| m.iter().map(|g| g.get_ref().clone()).collect()),
                mode,
                fail_open,
                completion_reserve: r.completion_reserve,
            }));
        }
    }
    out
}

/// An `on_redis_error` policy: `allow` (serve on, the default) or `deny`; `at` names the entry.
pub(super) fn fail_open(
    policy: &toml::Spanned<String>,
    at: std::fmt::Arguments<'_>,
    problems: &mut Problems<'_>,
) -> bool {
    match policy.get_ref().as_str() {
        "allow" => true,
        "deny" => false,
        other => {
            problems.at(
                policy.span(),
                format_args!("{at}.on_redis_error: `{other}` is not allow or deny"),
            );
            true
        }
    }
}

/// Compile `[network]`.
pub fn compile_network(raw: &RawNetwork, problems: &mut Problems<'_>) -> TrustedProxies {
    let mut out = Vec::new();
    for (i, p) in raw.trusted_proxies.iter().enumerate() {
        match Cidr::parse(p.get_ref()) {
            Some(c) => out.push(c),
            None => problems.at(
                p.span(),
                format_args!(
                    "network.trusted_proxies[{i}]: `{}` is not an IP address or CIDR block",
                    p.get_ref()
                ),
            ),
        }
    }
    TrustedProxies(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    }

    #[test]
    fn cidr_blocks_match_by_prefix() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")), "v4-mapped v6 is v4");
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(Some(ip("1.2.3.4")), &["9.9.9.9"]), Some(ip("1.2.3.4")));
        let lb = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            lb.client_ip(Some(ip("1.2.3.4")), &["9.9.9.9"]),
            Some(ip("1.2.3.4")),
            "untrusted peer"
        );
        assert_eq!(lb.client_ip(Some(ip("10.0.0.5")), &["9.9.9.9"]), Some(ip("9.9.9.9")));
        // The client's own (spoofed) entry is left of what the proxies appended.
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.5")), &["6.6.6.6, 9.9.9.9, 10.0.0.7"]),
            Some(ip("9.9.9.9"))
        );
        assert_eq!(
            lb.client_ip(Some(ip("10.0.0.5")), &["6.6.6.6", "9.9.9.9"]),
            Some(ip("9.9.9.9")),
            "several headers are one list"
        );
        assert_eq!(lb.client_ip(Some(ip("10.0.0.5")), &[]), Some(ip("10.0.0.5")));
        assert_eq!(lb.client_ip(Some(ip("10.0.0.5")), &["garbage"]), Some(ip("10.0.0.5")));
    }

    #[test]
    fn bad_rules_are_refused_naming_line_and_field() {
        let text = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
                    [[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n\
                    [[limits]]\nname = \"a\"\nby = [\"email\"]\nper = \"week\"\nconsumers = [\"nobody\"]\nmode = \"eventual\"\n\n\
                    [network]\ntrusted_proxies = [\"10.0.0.0/40\"]\n";
        let err = crate::config::load_str(text, "t.toml", None, 1)
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        let has = |needle: &str| err.iter().any(|p| p.contains(needle));
        assert!(has("line 12: limits[0].by: `email` is not consumer"), "{err:?}");
        assert!(
            has("limits[0].per: `week` is not second, minute, hour or day"),
            "{err:?}"
        );
        assert!(has("set `tokens`, `requests` or `concurrent`"), "{err:?}");
        assert!(has("limits[0].consumers: no consumer named `nobody`"), "{err:?}");
        assert!(has("limits[0].mode: `eventual` is not sync, exact or local"), "{err:?}");
        assert!(has("network.trusted_proxies[0]: `10.0.0.0/40`"), "{err:?}");
    }

    #[test]
    fn key_parts_are_named_or_refused() {
        assert_eq!(key_part("consumer"), Ok(KeyPart::Consumer));
        assert_eq!(key_part("query:team"), Ok(KeyPart::Query("team".into())));
        assert!(key_part("header:").is_err());
        assert!(key_part("header:bad name").is_err());
        assert!(key_part("email").is_err());
    }

    #[test]
    fn a_concurrency_rule_needs_no_period_and_its_queue_needs_it() {
        let base = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
                    [[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n[[limits]]\nname = \"a\"\n";
        let ok = crate::config::load_str(&format!("{base}concurrent = 8\nqueue_ms = 250\n"), "t", None, 1).unwrap();
        assert_eq!(ok.limits[0].concurrent, Some(8));
        assert_eq!(ok.limits[0].queue, std::time::Duration::from_millis(250));
        let problems = |extra: &str| {
            crate::config::load_str(&format!("{base}{extra}"), "t", None, 1)
                .err()
                .map(|e| e.problems.join("\n"))
                .unwrap_or_default()
        };
        assert!(problems("tokens = 10\n").contains("limits[0].per: `tokens` and `requests` need a period"));
        assert!(problems("tokens = 10\nper = \"minute\"\nqueue_ms = 5\n")
            .contains("limits[0].queue_ms: only with `concurrent`"));
        assert!(problems("concurrent = 0\n").contains("a limit of 0 refuses everything"));
    }
}
