//! `GET /admin/usage`: requests, tokens and cost from the usage ledger
//! ([`crate::telemetry::usage`]), summed over UTC days and grouped as asked.
//!
//! Query parameters: `from` and `to` (UTC dates `YYYY-MM-DD`, inclusive; default today, at most
//! 92 days), `group` (a comma list of `consumer`, `model`, `day`, `hour`; default
//! `consumer,model`), `consumer` and `model` (only that one), `format` (`json`, default, or
//! `csv`).
//!
//! ```json
//! {"from":"2026-12-06","to":"2026-12-06","group":["consumer","model"],"source":"redis",
//!  "rows":[{"consumer":"team-a","model":"gpt-4o","requests":3,"prompt_tokens":120,
//!           "completion_tokens":48,"cached_tokens":0,"cost":{"USD":0.00078}}],
//!  "total":{"requests":3,...}}
//! ```

use std::collections::BTreeMap;

use http::{Response, StatusCode};

use super::{error, reply};
use crate::error::{ApiError, ErrorCode};
use crate::telemetry::usage::{hour_now, Source, Totals, UsageLedger};

/// Longest range asked at once, in days.
const MAX_DAYS: u64 = 92;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parse_date(s: &str) -> Option<u64> {
    let mut p = s.splitn(3, '-');
    let (y, m, d) = (
        p.next()?.parse::<i64>().ok()?,
        p.next()?.parse::<u32>().ok()?,
        p.next()?.parse::<u32>().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject dates that do not exist (31 February rolls over).
    (civil_from_days(days) == (y, m, d)).then_some(days as u64)
}

fn date(day: u64) -> String {
    let (y, m, d) = civil_from_days(day as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The grouping dimensions asked.
#[derive(Debug, Default, Clone, Copy)]
struct Group {
    consumer: bool,
    model: bool,
    day: bool,
    hour: bool,
}

fn bad(message: String) -> Response<Vec<u8>> {
    error(ApiError::new(ErrorCode::InvalidValue, message))
}

/// The body of `GET /admin/usage` for `query`.
pub async fn usage(ledger: &UsageLedger, query: Option<&str>) -> Response<Vec<u8>> {
    let params: Vec<(String, String)> = query
        .map(|q| {
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.replace("%2C", ",").replace("%2c", ","))
                })
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let today = hour_now() / 24;
    let day_of = |name: &str| match param(name) {
        None | Some("") => Ok(today),
        Some(s) => parse_date(s).ok_or_else(|| format!("`{name}` must be a date as YYYY-MM-DD, not `{s}`")),
    };
    let (from, to) = match (day_of("from"), day_of("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    if to < from || to - from >= MAX_DAYS {
        return bad(format!(
            "`from` must not be after `to`, and at most {MAX_DAYS} days apart"
        ));
    }
    let mut group = Group::default();
    for g in param("group")
        .unwrap_or("consumer,model")
        .split(',')
        .filter(|g| !g.is_empty())
    {
        match g {
            "consumer" => group.consumer = true,
            "model" => group.model = true,
            "day" => group.day = true,
            "hour" => group.hour = true,
            other => return bad(format!("`group` takes consumer, model, day and hour, not `{other}`")),
        }
    }
    let csv = match param("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return bad(format!("`format` is json or csv, not `{other}`")),
    };
    let rows = match ledger.rows(from * 24, to * 24 + 23).await {
        Ok(rows) => rows,
        Err(why) => {
            tracing::warn!(error = %why, "usage: could not read the ledger");
            return error(ApiError::new(
                ErrorCode::UsageStoreUnavailable,
                "The usage ledger could not be read (Redis); try again.",
            ));
        }
    };
    let (only_consumer, only_model) = (param("consumer"), param("model"));
    // Grouped: (consumer, model, day, hour) with the dimensions not asked left empty.
    let mut grouped: BTreeMap<(String, String, String, String), Totals> = BTreeMap::new();
    let mut total = Totals::default();
    for ((hour, consumer, model), t) in rows {
        if only_consumer.is_some_and(|c| c != &*consumer) || only_model.is_some_and(|m| m != &*model) {
            continue;
        }
        let key = (
            if group.consumer {
                consumer.to_string()
            } else {
                String::new()
            },
            if group.model { model.to_string() } else { String::new() },
            if group.day || group.hour {
                date(hour / 24)
            } else {
                String::new()
            },
            if group.hour {
                format!("{:02}", hour % 24)
            } else {
                String::new()
            },
        );
        grouped.entry(key).or_default().add(&t);
        total.add(&t);
    }
    if csv {
        return reply(
            StatusCode::OK,
            "text/csv; charset=utf-8",
            csv_body(&grouped, &total, group),
        );
    }
    let row = |t: &Totals| {
        let cost: serde_json::Map<String, serde_json::Value> =
            t.cost.iter().map(|(c, v)| (c.clone(), serde_json::json!(v))).collect();
        serde_json::json!({
            "requests": t.requests,
            "prompt_tokens": t.prompt,
            "completion_tokens": t.completion,
            "cached_tokens": t.cached,
            "cost": cost,
        })
    };
    let rows: Vec<serde_json::Value> = grouped
        .iter()
        .map(|((consumer, model, day, hour), t)| {
            let mut r = row(t);
            if group.consumer {
                r["consumer"] = consumer.clone().into();
            }
            if group.model {
                r["model"] = model.clone().into();
            }
            if group.day || group.hour {
                r["day"] = day.clone().into();
            }
            if group.hour {
                r["hour"] = hour.clone().into();
            }
            r
        })
        .collect();
    let names: Vec<&str> = [
        (group.consumer, "consumer"),
        (group.model, "model"),
        (group.day, "day"),
        (group.hour, "hour"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    let body = serde_json::json!({
        "from": date(from),
        "to": date(to),
        "group": names,
        "source": match ledger.source() { Source::Redis => "redis", Source::Node => "node" },
        "rows": rows,
        "total": row(&total),
    });
    reply(StatusCode::OK, "application/json", body.to_string().into_bytes())
}

fn csv_body(grouped: &BTreeMap<(String, String, String, String), Totals>, total: &Totals, g: Group) -> Vec<u8> {
    let currencies: Vec<&str> = {
        let mut c: Vec<&str> = total.cost.iter().map(|(c, _)| c.as_str()).collect();
        c.sort_unstable();
        c
    };
    let mut out = String::from("consumer,model,day,hour,requests,prompt_tokens,completion_tokens,cached_tokens");
    for c in &currencies {
        out.push_str(&format!(",cost_{c}"));
    }
    out.push('\n');
    let field = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for ((consumer, model, day, hour), t) in grouped {
        let _ = g;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}",
            field(consumer),
            field(model),
            day,
            hour,
            t.requests,
            t.prompt,
            t.completion,
            t.cached
        ));
        for c in &currencies {
            let v = t.cost.iter().find(|(x, _)| x == c).map_or(0.0, |(_, v)| *v);
            out.push_str(&format!(",{v:.9}"));
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_impossible_ones_are_refused() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-12-06").map(date).as_deref(), Some("2026-12-06"));
        assert_eq!(parse_date("2024-02-29").map(date).as_deref(), Some("2024-02-29"));
        for bad in ["2026-02-30", "2026-13-01", "26-1-1x", "", "2026-12"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
