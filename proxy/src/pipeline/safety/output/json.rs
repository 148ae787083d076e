//! Whole JSON answers: held until they end, then their texts scanned, masked or blocked (a
//! blocked choice emptied with `finish_reason: "content_filter"`), and held again for the
//! moderation services' verdict when output moderation applies.

use std::ops::Range;

use bytes::Bytes;

use super::spans::{find, splice, ChoiceSpans, Found};
use super::{scan_with, OutputGuard};
use crate::guard::window::StreamAction;
use crate::guard::Hit;
use crate::json_spans::unescape;
use crate::pipeline::safety::{note, string_contents, Direction};

impl OutputGuard {
    /// A whole JSON answer: its texts scanned, masked or blocked; the body to send is appended
    /// to `out`, or held for the moderation services' verdict.
    pub fn on_json(&mut self, body: Bytes, out: &mut Vec<Bytes>) {
        let body = self.local_json(body);
        let Some(review) = &mut self.review else {
            out.push(body);
            return;
        };
        for t in &find(&body, false).texts {
            review.push(t.key, 0, &unescape(&body[t.span.clone()]));
        }
        review.end();
        if review.done() {
            out.push(body);
        } else {
            self.json_held = Some(body);
        }
    }

    /// The in-process rules over a whole JSON answer.
    fn local_json(&mut self, body: Bytes) -> Bytes {
        if self.rules.is_empty() {
            return body;
        }
        let found = find(&body, false);
        let mut edits: Vec<(Range<usize>, Bytes)> = Vec::new();
        let mut blocked_choices = Vec::new();
        for t in &found.texts {
            let text = unescape(&body[t.span.clone()]);
            let mut hits = Vec::new();
            scan_with(&self.rules)(&text, &mut hits);
            let mut masks: Vec<Hit> = Vec::new();
            for (rule, hit, action) in hits {
                let rule = self.rules[rule].clone();
                note(&mut self.events, Direction::Output, &rule, rule.action, &hit);
                match action {
                    StreamAction::Block => blocked_choices.push(t.key.0),
                    StreamAction::Mask => masks.push(hit),
                    StreamAction::Log => {}
                }
            }
            if !masks.is_empty() {
                edits.push((t.span.clone(), string_contents(&crate::guard::mask(&text, &masks))));
            }
        }
        block_choices(&body, &found, |i| blocked_choices.contains(&i), &mut edits);
        if edits.is_empty() {
            return body;
        }
        self.acted = true;
        edits.sort_by_key(|(r, _)| r.start);
        splice(&body, &edits)
    }
}

/// Edits emptying each choice `blocked` names, its `finish_reason` set to `content_filter`
/// (and dropping the other edits inside it).
fn block_choices(body: &[u8], found: &Found, blocked: impl Fn(u64) -> bool, edits: &mut Vec<(Range<usize>, Bytes)>) {
    for ChoiceSpans {
        index,
        finish,
        body: message,
    } in &found.choices
    {
        if !blocked(*index) {
            continue;
        }
        edits.retain(|(r, _)| message.as_ref().is_none_or(|m| !(m.start <= r.start && r.end <= m.end)));
        if let Some(m) = message {
            let with: &'static [u8] = if body[m.start] == b'"' {
                b"\"\""
            } else {
                b"{\"role\":\"assistant\",\"content\":\"\"}"
            };
            edits.push((m.clone(), Bytes::from_static(with)));
        }
        if let Some(f) = finish {
            edits.push((f.clone(), Bytes::from_static(b"\"content_filter\"")));
        }
    }
}

/// A JSON answer with every choice emptied and ended by `content_filter`.
pub(super) fn block_all(body: &Bytes) -> Bytes {
    let found = find(body, false);
    let mut edits = Vec::new();
    block_choices(body, &found, |_| true, &mut edits);
    edits.sort_by_key(|(r, _)| r.start);
    splice(body, &edits)
}
