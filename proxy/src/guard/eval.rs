//! Precision and recall of the built-in detectors on a labelled case set
//! (`docs/eval/guard-cases.jsonl`: one JSON object per line, `{"text", "expect": [kinds],
//! "lang", "note"}`). Each case is read as a user's message by every detector (sensitive data of
//! all kinds, the deny list given, the injection rules); a kind found and expected is a true
//! positive, found and not expected a false positive, expected and not found a false negative.
//! `cargo run --release -p tollgate --example guard_eval` prints the table.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::deny::DenyList;
use super::pii::PiiKinds;
use super::{Detector, Inspected};

/// One labelled text.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub text: String,
    /// The kinds it holds: `email`, `phone`, `card`, `cn_id`, `iban`, `secret`, `deny_list`,
    /// `injection`.
    pub expect: Vec<String>,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub note: String,
}

/// Counts of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: u32,
    pub fp: u32,
    pub fn_: u32,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        1.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

/// The result of a run: counts per kind (and per kind and language), and the cases got wrong.
#[derive(Debug, Default)]
pub struct Report {
    pub by_kind: BTreeMap<String, Counts>,
    pub by_lang: BTreeMap<(String, String), Counts>,
    pub wrong: Vec<(Case, Vec<String>)>,
}

/// Parse a JSONL case file.
pub fn parse_cases(text: &str) -> Result<Vec<Case>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// The built-in detectors, with `deny` as the deny list.
pub fn detectors(deny: &DenyList) -> [Detector; 3] {
    [
        Detector::Pii(PiiKinds::all()),
        Detector::Deny(Arc::new(deny.clone())),
        Detector::Injection,
    ]
}

/// The kinds `detectors` find in `text`.
pub fn detect(text: &str, detectors: &[Detector]) -> Vec<String> {
    let inspected = Inspected::new(text);
    let mut hits = Vec::new();
    for d in detectors {
        d.find(&inspected, true, &mut hits);
    }
    let mut kinds: Vec<String> = hits.iter().map(|h| h.risk.name().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Run every case.
pub fn evaluate(cases: &[Case], deny: &DenyList) -> Report {
    let mut report = Report::default();
    for kind in [
        "email",
        "phone",
        "card",
        "cn_id",
        "iban",
        "secret",
        "deny_list",
        "injection",
    ] {
        report.by_kind.insert(kind.to_string(), Counts::default());
    }
    let detectors = detectors(deny);
    for case in cases {
        let found = detect(&case.text, &detectors);
        let kinds: Vec<String> = report.by_kind.keys().cloned().collect();
        let mut right = true;
        for kind in kinds {
            let (f, e) = (found.contains(&kind), case.expect.contains(&kind));
            let lang = report.by_lang.entry((kind.clone(), case.lang.clone())).or_default();
            let total = report.by_kind.entry(kind).or_default();
            for c in [total, lang] {
                match (f, e) {
                    (true, true) => c.tp += 1,
                    (true, false) => c.fp += 1,
                    (false, true) => c.fn_ += 1,
                    (false, false) => {}
                }
            }
            right &= f == e;
        }
        if !right {
            report.wrong.push((case.clone(), found));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_case_set_meets_its_bars() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cases = parse_cases(&std::fs::read_to_string(root.join("docs/eval/guard-cases.jsonl")).unwrap()).unwrap();
        assert!(cases.len() >= 150);
        let deny = DenyList::new(&DenyList::parse_file(
            &std::fs::read_to_string(root.join("examples/deny-list.txt")).unwrap(),
        ))
        .unwrap();
        let report = evaluate(&cases, &deny);
        for (kind, c) in &report.by_kind {
            // Validated data and deny lists make no mistakes on the set; the injection
            // heuristics are held to 0.9.
            let bar = if kind == "injection" { 0.9 } else { 1.0 };
            assert!(
                c.precision() >= bar && c.recall() >= bar,
                "{kind}: {c:?}; wrong: {:#?}",
                report.wrong
            );
        }
    }
}
