//! A rule's key for a request: its parts' values (consumer, key, user, model, client address,
//! header, query parameter, cookie), digested where a client sent them, joined into the bucket's key.

use std::net::IpAddr;

use http::HeaderMap;
use tollgate_limits::redis_key::tagged_key_of;

use crate::config::rate_limits::{KeyPart, LimitMode, LimitRule};

/// What a request offers the values of a rule's key parts.
pub struct KeySources<'a> {
    pub consumer: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub user: Option<&'a str>,
    pub model: &'a str,
    /// The client's address, found only if a rule keys by it.
    pub client_ip: &'a (dyn Fn() -> Option<IpAddr> + Sync),
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

/// A header, query or cookie value as it goes into a key: a digest, since such values may be
/// credentials (a session cookie, a token) that must not sit in Redis keys or log lines.
fn digest(value: Option<&str>) -> std::borrow::Cow<'static, str> {
    match value.filter(|v| !v.is_empty()) {
        None => std::borrow::Cow::Borrowed("-"),
        Some(v) => {
            let mut out = String::with_capacity(33);
            tollgate_limits::redis_key::push_digest(&mut out, v);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// The value of one of a rule's key parts for this request (`-` where the request has none:
/// such requests share one bucket rather than escape the limit).
fn key_value<'a>(part: &KeyPart, sources: &KeySources<'a>) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    let or_dash = |v: Option<&'a str>| Cow::Borrowed(v.filter(|v| !v.is_empty()).unwrap_or("-"));
    match part {
        KeyPart::Consumer => or_dash(sources.consumer),
        KeyPart::Key => or_dash(sources.key_id),
        KeyPart::User => or_dash(sources.user),
        KeyPart::Model => Cow::Borrowed(sources.model),
        KeyPart::Ip => (sources.client_ip)().map_or(Cow::Borrowed("-"), |ip| Cow::Owned(ip.to_string())),
        KeyPart::Header(name) => digest(sources.headers.get(name).and_then(|v| v.to_str().ok())),
        KeyPart::Query(name) => digest(sources.query.and_then(|q| query_param(q, name))),
        KeyPart::Cookie(name) => digest(cookie(sources.headers, name)),
    }
}

/// The key of a rule's buckets for this request, without its suffix. The values of up to four
/// key parts are held on the stack (a rule rarely has more).
pub(super) fn rule_key(prefix: &str, rule: &LimitRule, sources: &KeySources<'_>) -> String {
    const ON_STACK: usize = 4;
    if rule.by.len() <= ON_STACK {
        let mut values: [std::borrow::Cow<'_, str>; ON_STACK] = Default::default();
        for (value, part) in values.iter_mut().zip(&rule.by) {
            *value = key_value(part, sources);
        }
        key_base(prefix, rule, &values[..rule.by.len()])
    } else {
        let values: Vec<_> = rule.by.iter().map(|part| key_value(part, sources)).collect();
        key_base(prefix, rule, &values)
    }
}

/// The key of a rule's buckets for these values, without its suffix: the tagged key of the
/// rule's name and the values.
fn key_base(prefix: &str, rule: &LimitRule, values: &[std::borrow::Cow<'_, str>]) -> String {
    let parts = std::iter::once(rule.name.as_str()).chain(values.iter().map(|v| v.as_ref()));
    tagged_key_of(prefix, parts, "")
}

/// The suffix of a bucket: exact-mode buckets have their own layout in Redis.
pub(super) fn bucket_suffix(mode: LimitMode, tokens: bool) -> &'static str {
    match (mode, tokens) {
        (LimitMode::Exact, true) => ":xt",
        (LimitMode::Exact, false) => ":xr",
        (_, true) => ":t",
        (_, false) => ":r",
    }
}

/// The raw value of `name` in a query string.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bucket_keys_are_the_tagged_key_of_rule_and_values() {
        let text = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
                    [[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n\
                    [[limits]]\nname = \"tpm\"\nby = [\"user\", \"model\"]\ntokens = 100\nper = \"minute\"\n";
        let snapshot = crate::config::load_str(text, "test", None, 1).unwrap();
        let rule = &snapshot.limits[0];
        let long = "u".repeat(300);
        for values in [vec!["alice", "m"], vec!["a}{b/c", "m"], vec![long.as_str(), "-"]] {
            let cows: Vec<std::borrow::Cow<'_, str>> = values.iter().map(|v| std::borrow::Cow::Borrowed(*v)).collect();
            let mut parts = vec!["tpm"];
            parts.extend(values.iter().copied());
            assert_eq!(
                key_base("tollgate:limit:", rule, &cows),
                tollgate_limits::redis_key::tagged_key("tollgate:limit:", &parts, "")
            );
        }
    }

    #[test]
    fn rule_keys_hold_every_part_however_many() {
        let limits = |by: &str| {
            let text = format!(
                "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
                 [[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\" }}]\n\n\
                 [[limits]]\nname = \"r\"\nby = {by}\ntokens = 100\nper = \"minute\"\n"
            );
            crate::config::load_str(&text, "test", None, 1).unwrap()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-team", http::HeaderValue::from_static("blue"));
        let no_ip = || None;
        let sources = KeySources {
            consumer: Some("dept"),
            key_id: Some("k1"),
            user: Some("alice"),
            model: "m",
            client_ip: &no_ip,
            headers: &headers,
            query: None,
        };
        let team = digest(Some("blue"));
        // On the stack (four parts) and past it (five).
        for (by, values) in [
            (
                r#"["user", "model", "consumer", "key"]"#,
                vec!["alice", "m", "dept", "k1"],
            ),
            (
                r#"["user", "model", "consumer", "key", "header:x-team"]"#,
                vec!["alice", "m", "dept", "k1", team.as_ref()],
            ),
        ] {
            let snapshot = limits(by);
            let mut parts = vec!["r"];
            parts.extend(values);
            assert_eq!(
                rule_key("tollgate:limit:", &snapshot.limits[0], &sources),
                tollgate_limits::redis_key::tagged_key("tollgate:limit:", &parts, "")
            );
        }
    }

    #[test]
    fn client_sent_values_go_into_keys_as_digests() {
        assert_eq!(digest(None), "-");
        assert_eq!(digest(Some("")), "-");
        let d = digest(Some("session-secret-123"));
        assert!(!d.contains("secret") && d.len() == 33, "{d}");
        assert_eq!(d, digest(Some("session-secret-123")), "the same on every node");
        assert_ne!(d, digest(Some("session-secret-124")));
    }

    #[test]
    fn query_and_cookie_values_are_found_by_name() {
        assert_eq!(query_param("a=1&team=blue&b", "team"), Some("blue"));
        assert_eq!(query_param("a=1&b", "b"), Some(""));
        assert_eq!(query_param("a=1", "team"), None);
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, HeaderValue::from_static("x=1; session=abc"));
        h.append(http::header::COOKIE, HeaderValue::from_static("tenant=\"t9\""));
        assert_eq!(cookie(&h, "session"), Some("abc"));
        assert_eq!(cookie(&h, "tenant"), Some("t9"));
        assert_eq!(cookie(&h, "nope"), None);
    }
}
