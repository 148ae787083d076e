//! A consumer's parameter policy applied to a request body: defaults filled in, overrides
//! forced, numeric bounds clamped or refused, forbidden parameters refused.
//!
//! Works on the top-level members' byte spans and returns splices for
//! [`body::rewrite`](super::body::rewrite); the body is never re-serialised. Keys are compared
//! after unescaping, so `"temp\u0065rature"` is `temperature` here exactly as it is upstream.

use bytes::Bytes;

use super::body::{self, Edit};
use crate::config::param_rules::EffectiveRules;
use crate::config::raw::ParamMode;
use crate::error::{ApiError, ErrorCode};
use crate::json_spans::{unescape, Member};

/// The splices that make `body` follow `rules`, or the 400 it deserves. `members` are the
/// body's top-level members as [`parse`](crate::pipeline::body::parse) found them.
pub fn apply(body: &[u8], members: &[Member], rules: &EffectiveRules<'_>) -> Result<Vec<Edit>, ApiError> {
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let (mode, inserts, rules) = (rules.mode, rules.inserts, rules.rules);
    let mut edits = Vec::new();
    // Which of the first 64 inserts the body already has (a bit each); past those, looked up.
    let mut present: u64 = 0;
    for m in members {
        let key = unescape(&body[m.key.clone()]);
        if let Some(i) = inserts.iter().take(64).position(|ins| ins.name == key.as_ref()) {
            present |= 1 << i;
        }
        if rules.forbidden.iter().any(|f| f == key.as_ref()) {
            return Err(ApiError::new(
                ErrorCode::ParameterForbidden,
                format!("The parameter `{key}` is not allowed for your API key."),
            ));
        }
        if let Some((_, json)) = rules.overrides.iter().find(|(n, _)| n == key.as_ref()) {
            edits.push(Edit {
                range: m.value.clone(),
                bytes: json.clone(),
            });
        } else if let Some(b) = rules.bounds.iter().find(|b| b.name == key.as_ref()) {
            let text = std::str::from_utf8(&body[m.value.clone()]).unwrap_or("");
            if text == "null" {
                // An explicit null means "provider default", which the bound cannot judge.
            } else {
                let Ok(v) = text.parse::<f64>() else {
                    return Err(ApiError::new(
                        ErrorCode::ParameterInvalid,
                        format!("The parameter `{key}` must be a number."),
                    ));
                };
                if v < b.min || v > b.max {
                    match mode {
                        ParamMode::Reject => {
                            return Err(ApiError::new(
                                ErrorCode::ParameterOutOfRange,
                                format!(
                                    "The parameter `{key}` must be between {} and {} for your API key.",
                                    b.min, b.max
                                ),
                            ));
                        }
                        ParamMode::Clamp => {
                            let to: &Bytes = if v < b.min { &b.min_json } else { &b.max_json };
                            edits.push(Edit {
                                range: m.value.clone(),
                                bytes: to.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    let absent = |i: usize, name: &str| match i {
        0..64 => present & (1 << i) == 0,
        _ => !members.iter().any(|m| unescape(&body[m.key.clone()]) == name),
    };
    // Inserted as the first members of the top-level object.
    let at = body.iter().position(|&b| b == b'{').map_or(0, |open| open + 1);
    for (i, ins) in inserts.iter().enumerate() {
        if absent(i, &ins.name) {
            edits.push(Edit {
                range: at..at,
                bytes: ins.member.clone(),
            });
        }
    }
    Ok(edits)
}

/// The completion budget a request ends up with once `rules` applied (an override or default
/// of `max_completion_tokens`/`max_tokens`, a clamp to their bounds), from the body's `asked`.
pub fn effective_max_tokens(rules: &EffectiveRules<'_>, asked: Option<u64>) -> Option<u64> {
    let names = ["max_completion_tokens", "max_tokens"];
    let r = rules.rules;
    let find = |list: &[(String, Bytes)]| {
        names
            .iter()
            .find_map(|n| list.iter().find(|(name, _)| name == n))
            .and_then(|(_, json)| body::number(json))
    };
    let mut value = find(&r.overrides).or(asked).or_else(|| find(&r.defaults))?;
    if rules.mode == ParamMode::Clamp {
        for b in r.bounds.iter().filter(|b| names.contains(&b.name.as_str())) {
            value = (value as f64).clamp(b.min.max(0.0), b.max.max(0.0)) as u64;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::config::param_rules::{Bound, ParamPolicy, ParamRules};
    use crate::pipeline::body::{parse, rewrite};
    use http::StatusCode;

    fn policy(mode: ParamMode) -> ParamPolicy {
        let b = |name: &str, lo: &str, hi: &str| Bound {
            name: name.into(),
            min: lo.parse().unwrap(),
            max: hi.parse().unwrap(),
            min_json: Bytes::from(lo.to_string()),
            max_json: Bytes::from(hi.to_string()),
        };
        ParamPolicy::new(
            ParamRules {
                mode: Some(mode),
                defaults: vec![("temperature".into(), Bytes::from_static(b"0.2"))],
                overrides: vec![("user".into(), Bytes::from_static(b"\"dept-a\""))],
                bounds: vec![b("temperature", "0", "1"), b("max_tokens", "1", "4096")],
                forbidden: vec!["logit_bias".into()],
            },
            vec![(
                "big-*".into(),
                ParamRules {
                    bounds: vec![b("max_tokens", "1", "128")],
                    ..ParamRules::default()
                },
            )],
        )
    }

    fn run(body: &str, mode: ParamMode, model: &str) -> Result<serde_json::Value, StatusCode> {
        let p = policy(mode);
        let body = body.replacen('{', r#"{"input":"x","#, 1);
        let view = parse(body.as_bytes(), Endpoint::Embeddings).map_err(|e| e.status())?;
        let edits = apply(body.as_bytes(), &view.members, &p.for_model(model)).map_err(|e| e.status())?;
        let out = rewrite(body.as_bytes(), &view, br#""m""#, false, &edits);
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn the_completion_budget_follows_the_policy() {
        let p = policy(ParamMode::Clamp);
        assert_eq!(effective_max_tokens(&p.for_model("x"), Some(9000)), Some(4096));
        assert_eq!(effective_max_tokens(&p.for_model("big-1"), Some(9000)), Some(128));
        assert_eq!(effective_max_tokens(&p.for_model("x"), Some(100)), Some(100));
        assert_eq!(effective_max_tokens(&p.for_model("x"), None), None);
    }

    #[test]
    fn defaults_fill_in_overrides_force_and_bounds_clamp() {
        let v = run(
            r#"{"model":"x","max_tokens":9000,"user":"someone"}"#,
            ParamMode::Clamp,
            "x",
        )
        .unwrap();
        assert_eq!(v["temperature"], 0.2);
        assert_eq!(v["user"], "dept-a");
        assert_eq!(v["max_tokens"], 4096);
        let v = run(r#"{"model":"x","temperature":1.7}"#, ParamMode::Clamp, "x").unwrap();
        assert_eq!(v["temperature"], 1);
        assert_eq!(v["user"], "dept-a");
        let v = run(r#"{"model":"x","temperature":-3}"#, ParamMode::Clamp, "x").unwrap();
        assert_eq!(v["temperature"], 0);
        let v = run(
            r#"{"model":"x","temperature":0.5,"max_tokens":null}"#,
            ParamMode::Clamp,
            "x",
        )
        .unwrap();
        assert_eq!(v["temperature"], 0.5);
    }

    #[test]
    fn reject_mode_forbidden_and_non_numbers_are_400() {
        assert_eq!(
            run(r#"{"model":"x","temperature":1.7}"#, ParamMode::Reject, "x").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        assert!(run(r#"{"model":"x","temperature":0.7}"#, ParamMode::Reject, "x").is_ok());
        assert_eq!(
            run(r#"{"model":"x","logit_bias":{}}"#, ParamMode::Clamp, "x").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            run(r#"{"model":"x","max_tokens":"9"}"#, ParamMode::Clamp, "x").err(),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn escaped_keys_do_not_slip_past_the_rules() {
        assert_eq!(
            run(r#"{"model":"x","logit\u005fbias":{}}"#, ParamMode::Clamp, "x").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        let v = run(r#"{"model":"x","temp\u0065rature":5}"#, ParamMode::Clamp, "x").unwrap();
        assert_eq!(v["temperature"], 1);
    }

    #[test]
    fn defaults_are_added_only_when_absent_however_many_there_are() {
        // More defaults than the fast path's 64 bits: the rest are looked up in the body.
        let defaults = (0..70).map(|i| (format!("p{i}"), Bytes::from(i.to_string()))).collect();
        let p = ParamPolicy::new(
            ParamRules {
                defaults,
                overrides: vec![("p2".into(), Bytes::from_static(b"\"forced\""))],
                ..ParamRules::default()
            },
            vec![],
        );
        let body = r#"{"model":"x","input":"x","p1":"mine","p66":"mine too","p2":"also mine"}"#;
        let view = parse(body.as_bytes(), Endpoint::Embeddings).unwrap();
        let edits = apply(body.as_bytes(), &view.members, &p.for_model("x")).unwrap();
        let out = rewrite(body.as_bytes(), &view, br#""m""#, false, &edits);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["p1"], "mine");
        assert_eq!(v["p66"], "mine too");
        assert_eq!(v["p2"], "forced");
        assert_eq!(v["p0"], 0);
        assert_eq!(v["p65"], 65);
        assert_eq!(v["p69"], 69);
        let text = std::str::from_utf8(&out).unwrap();
        for key in ["\"p1\"", "\"p2\"", "\"p66\"", "\"p0\"", "\"p69\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} once in {text}");
        }
        assert_eq!(v.as_object().unwrap().len(), 72, "model, input and 70 parameters");
    }

    #[test]
    fn model_rules_refine_consumer_rules() {
        let v = run(r#"{"model":"x","max_tokens":1000}"#, ParamMode::Clamp, "big-model").unwrap();
        assert_eq!(v["max_tokens"], 128);
        assert_eq!(v["temperature"], 0.2, "consumer-level defaults still apply");
    }
}
