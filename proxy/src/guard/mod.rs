//! Content safety's detectors, free of HTTP and config: what is found in a piece of text, and
//! where. The request path ([`pipeline::safety`](crate::pipeline::safety)) decides what to do
//! about it.
//!
//! A text is normalised once ([`normalize`]) and scanned for sensitive data once ([`pii`]),
//! whatever number of rules read it ([`Inspected`]); deny lists ([`deny`]), operators' regular
//! expressions and the injection rules ([`injection`]) each take one pass. The stream side keeps
//! a sliding window over a streamed answer's text ([`window`]).

pub mod checks;
pub mod deny;
pub mod eval;
pub mod injection;
pub mod normalize;
pub mod pii;
pub mod window;

use std::cell::OnceCell;
use std::ops::Range;
use std::sync::Arc;

use regex::Regex;

use deny::DenyList;
use normalize::Normalized;
use pii::{PiiKind, PiiKinds, PiiMatch};

/// What a rule looks for.
#[derive(Debug, Clone)]
pub enum Detector {
    /// Words and phrases.
    Deny(Arc<DenyList>),
    /// An operator's regular expression (over the original text).
    Regex(Arc<Regex>),
    /// Validated sensitive data of these kinds.
    Pii(PiiKinds),
    /// Prompt injection heuristics; `fake_turns`: also chat-template turns in the text.
    Injection,
}

/// The kind of risk a finding is, as metrics and audit lines name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    Deny,
    Regex,
    Pii(PiiKind),
    Injection,
    Moderation,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Deny => "deny_list",
            Risk::Regex => "regex",
            Risk::Pii(k) => k.name(),
            Risk::Injection => "injection",
            Risk::Moderation => "moderation",
        }
    }

    /// What a masked match becomes.
    pub fn placeholder(self) -> &'static str {
        match self {
            Risk::Pii(k) => k.placeholder(),
            _ => "[REDACTED]",
        }
    }
}

/// One thing found: its risk, the byte range in the original text, and for injection the
/// heuristic that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub risk: Risk,
    pub range: Range<usize>,
    pub heuristic: Option<&'static str>,
}

/// A text being inspected by several rules: what more than one of them needs is computed once.
pub struct Inspected<'a> {
    pub original: &'a str,
    norm: OnceCell<Normalized>,
    pii: OnceCell<Vec<PiiMatch>>,
}

impl<'a> Inspected<'a> {
    pub fn new(original: &'a str) -> Self {
        Inspected {
            original,
            norm: OnceCell::new(),
            pii: OnceCell::new(),
        }
    }

    pub fn normalized(&self) -> &Normalized {
        self.norm.get_or_init(|| Normalized::new(self.original))
    }

    fn pii(&self) -> &[PiiMatch] {
        self.pii.get_or_init(|| {
            let mut out = Vec::new();
            pii::scan(self.original, PiiKinds::all(), &mut out);
            out
        })
    }
}

impl Detector {
    /// Append what this detector finds in `text` (`fake_turns`: the text is a user's or a
    /// tool's, where a chat-template turn is an attack).
    pub fn find(&self, text: &Inspected<'_>, fake_turns: bool, out: &mut Vec<Hit>) {
        match self {
            Detector::Deny(list) => {
                let norm = text.normalized();
                let mut ranges = Vec::new();
                list.find(norm, &mut ranges);
                out.extend(ranges.into_iter().map(|r| Hit {
                    risk: Risk::Deny,
                    range: norm.original_range(text.original, r),
                    heuristic: None,
                }));
            }
            Detector::Regex(re) => out.extend(re.find_iter(text.original).map(|m| Hit {
                risk: Risk::Regex,
                range: m.range(),
                heuristic: None,
            })),
            Detector::Pii(kinds) => out.extend(text.pii().iter().filter(|m| kinds.contains(m.kind)).map(|m| Hit {
                risk: Risk::Pii(m.kind),
                range: m.range.clone(),
                heuristic: None,
            })),
            Detector::Injection => {
                if let Some(m) = injection::find(text.original, text.normalized(), fake_turns) {
                    out.push(Hit {
                        risk: Risk::Injection,
                        range: m.range,
                        heuristic: Some(m.rule),
                    });
                }
            }
        }
    }
}

/// `text` with each hit replaced by its placeholder; overlapping hits are merged (the first
/// one's placeholder stands for the union).
pub fn mask(text: &str, hits: &[Hit]) -> String {
    let mut sorted: Vec<&Hit> = hits.iter().collect();
    sorted.sort_by_key(|h| (h.range.start, std::cmp::Reverse(h.range.end)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in sorted {
        if h.range.end <= at {
            continue;
        }
        let start = h.range.start.max(at);
        if start == h.range.start {
            out.push_str(&text[at..start]);
            out.push_str(h.risk.placeholder());
        }
        at = h.range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_replaces_each_match_once_even_when_they_overlap() {
        let text = "mail jane@example.com or card 4111111111111111.";
        let inspected = Inspected::new(text);
        let mut hits = Vec::new();
        Detector::Pii(PiiKinds::all()).find(&inspected, false, &mut hits);
        assert_eq!(mask(text, &hits), "mail [EMAIL] or card [CARD].");
        let overlapping = [
            Hit {
                risk: Risk::Deny,
                range: 0..4,
                heuristic: None,
            },
            Hit {
                risk: Risk::Regex,
                range: 2..8,
                heuristic: None,
            },
        ];
        assert_eq!(mask("abcdefghij", &overlapping), "[REDACTED]ij");
    }
}
