//! Redaction of logged conversations (consumers with `log_prompts` or `log_answers`).
//!
//! A log keeps what the maskers would hide, for longer and for more readers than the request
//! itself, so logged text is redacted by a wider set of rules than either direction applies on
//! the wire: every in-process rule of the model and consumer that masks, whichever way it reads,
//! and every `pii` or `regex` rule whatever its action (what they find is sensitive however the
//! request was treated: a prompt blocked for carrying a card number is logged with the number
//! replaced). Deny lists and injection heuristics redact only when their action is `mask`: what
//! they find is the reason a request was refused, which the log is there to show. Every role's
//! text is read (a system prompt's secret is still a secret). Moderation services are not asked:
//! logging never waits on the network.

use std::sync::Arc;

use bytes::Bytes;

use super::string_contents;
use crate::config::guardrails::{Action, GuardRule, ModelGuards};
use crate::guard::{self, Detector, Inspected};
use crate::pipeline::body::{self, text_of, Edit, RequestView};

/// The detectors that redact logs for `consumer`, each rule once (a rule reading both ways is
/// in both lists).
fn redactors<'a>(guards: &'a ModelGuards, consumer: Option<&str>) -> Vec<&'a Detector> {
    let mut seen: Vec<&Arc<GuardRule>> = Vec::new();
    let mut out = Vec::new();
    for rule in guards.input.iter().chain(&guards.output) {
        if !rule.covers_consumer(consumer) || seen.iter().any(|r| Arc::ptr_eq(r, rule)) {
            continue;
        }
        seen.push(rule);
        let Some(detector) = rule.local() else { continue };
        let sensitive = matches!(detector, Detector::Pii(_) | Detector::Regex(_));
        if sensitive || rule.action == Action::Mask {
            out.push(detector);
        }
    }
    out
}

/// `text` with what `detectors` find replaced by their placeholders; `None` when they find
/// nothing.
fn masked(detectors: &[&Detector], text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let inspected = Inspected::new(text);
    let mut hits = Vec::new();
    for d in detectors {
        d.find(&inspected, true, &mut hits);
    }
    (!hits.is_empty()).then(|| guard::mask(text, &hits))
}

/// A request body as its audit line shows it: every prompt text redacted (see the module).
pub fn prompt(guards: &ModelGuards, consumer: Option<&str>, body: &Bytes, view: &RequestView) -> Bytes {
    let detectors = redactors(guards, consumer);
    if detectors.is_empty() {
        return body.clone();
    }
    let mut edits = Vec::new();
    let _ = view.prompt.for_each_text(body, |_role, span| {
        if let Some(m) = masked(&detectors, &text_of(body, span)) {
            edits.push(Edit {
                range: span.clone(),
                bytes: string_contents(&m),
            });
        }
        Ok::<(), ()>(())
    });
    if edits.is_empty() {
        body.clone()
    } else {
        body::with_edits(body, view, &edits)
    }
}

/// An answer's text as its audit line shows it: redacted (see the module).
pub fn answer(guards: Option<&ModelGuards>, consumer: Option<&str>, text: String) -> String {
    let Some(guards) = guards else { return text };
    masked(&redactors(guards, consumer), &text).unwrap_or(text)
}
