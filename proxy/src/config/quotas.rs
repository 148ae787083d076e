//! Request quotas of a consumer (calls per consumer, key or user in calendar windows), compiled.

use super::problems::Problems;
use super::raw::RawConsumer;
use tollgate_limits::redis_key::tagged_key;

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

pub fn compile(c: &RawConsumer, i: usize, problems: &mut Problems<'_>) -> Vec<Quota> {
    let mut out = Vec::new();
    for (j, q) in c.quotas.iter().enumerate() {
        let before = problems.len();
        let period = match q.per.get_ref().as_str() {
            "minute" => tollgate_limits::Period::Minute,
            "hour" => tollgate_limits::Period::Hour,
            "day" => tollgate_limits::Period::Day,
            other => {
                problems.at(
                    q.per.span(),
                    format_args!("consumers[{i}].quotas[{j}].per: `{other}` is not minute, hour or day"),
                );
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
                    problems.at(
                        q.user_from.span(),
                        format_args!(
                            "consumers[{i}].quotas[{j}].user_from: `{other}` is not body, key or header:<name>"
                        ),
                    );
                    UserSource::Body
                }
            },
        };
        let scope = match q.by.get_ref().as_str() {
            "user" => QuotaScope::User(user_source),
            "key" => QuotaScope::Key,
            "consumer" => QuotaScope::Consumer,
            other => {
                problems.at(
                    q.by.span(),
                    format_args!("consumers[{i}].quotas[{j}].by: `{other}` is not user, key or consumer"),
                );
                QuotaScope::Consumer
            }
        };
        let calendar = match &q.timezone {
            None => tollgate_limits::Calendar::default(),
            Some(tz) => tollgate_limits::Calendar::parse(tz.get_ref()).unwrap_or_else(|| {
                problems.at(tz.span(), format_args!("consumers[{i}].quotas[{j}].timezone: `{}` is neither a UTC offset such as +08:00 nor a time zone such as Asia/Shanghai", tz.get_ref()));
                tollgate_limits::Calendar::default()
            }),
        };
        let fail_open =
            super::rate_limits::fail_open(&q.on_redis_error, format_args!("consumers[{i}].quotas[{j}]"), problems);
        if q.name.get_ref().is_empty() || c.quotas[..j].iter().any(|o| o.name.get_ref() == q.name.get_ref()) {
            problems.at(
                q.name.span(),
                format_args!("consumers[{i}].quotas[{j}].name: empty or duplicate quota name"),
            );
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

/// `{consumer/quota/`: the part of a quota's counter keys fixed by the config (after the
/// store's head, `tollgate:quota:` or `tollgate:quota:<namespace>:`).
pub fn key_prefix(consumer: &str, quota: &str) -> String {
    let mut key = tagged_key("", &[consumer, quota], "");
    key.pop();
    key.push('/');
    key
}
