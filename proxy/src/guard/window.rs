//! A sliding window over one streamed text (a choice's content, or a tool call's arguments):
//! pieces arrive (each a stream event's decoded text), are scanned together with what came
//! before, and are released only while at least `hold` normalised characters stay held behind
//! them.
//!
//! Why that is enough: every piece is scanned before it can be released, so a phrase is found
//! the moment its last character arrives, while that character is still held: a complete
//! blocked phrase never reaches the client. Holding the last `hold` characters (the longest
//! phrase's length) also keeps a phrase's start back until the phrase is decided, so a masked
//! match is replaced whole before any of it is sent. A match touching the end of the text is
//! decided only when more text comes (or the stream ends): `ass` may still become `assert`.

use std::collections::VecDeque;
use std::ops::Range;

use super::normalize::Normalized;
use super::Hit;

/// What a rule does with a hit in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    Block,
    Mask,
    Log,
}

/// A rule's hit in a window's text: the rule's index, the hit, what the rule does.
pub type RuleHit = (usize, Hit, StreamAction);

/// What a window runs over its text: appends every rule's hits.
pub type Scanner<'a> = dyn FnMut(&str, &mut Vec<RuleHit>) + 'a;

/// A piece not yet released.
#[derive(Debug)]
struct Piece {
    tag: u64,
    text: String,
    /// Normalised characters of `text`.
    chars: usize,
    changed: bool,
}

/// The result of one scan: a hit that blocks the stream, and the hits only to be recorded
/// (masked ones included, once each).
#[derive(Debug, Default)]
pub struct Scanned {
    pub block: Option<(usize, Hit)>,
    pub recorded: Vec<(usize, Hit, StreamAction)>,
}

/// One streamed text's window.
#[derive(Debug)]
pub struct Channel {
    hold: usize,
    /// The end of what was released, kept so matches that began there are still seen.
    context: String,
    held: VecDeque<Piece>,
    /// Hits ending at or before this offset of the window text were decided by an earlier scan.
    decided: usize,
    /// Pieces at the back not scanned yet (never released before they are).
    unscanned: usize,
    released_any: bool,
}

/// The context kept beyond the held text, in bytes per character of hold-back.
const CONTEXT_FACTOR: usize = 2;

impl Channel {
    pub fn new(hold: usize) -> Self {
        Channel {
            hold,
            context: String::new(),
            held: VecDeque::new(),
            decided: 0,
            unscanned: 0,
            released_any: false,
        }
    }

    /// The tag of the first piece still held.
    pub fn held_from(&self) -> Option<u64> {
        self.held.front().map(|p| p.tag)
    }

    fn window(&self) -> String {
        let mut w = String::with_capacity(self.context.len() + self.held.iter().map(|p| p.text.len()).sum::<usize>());
        w.push_str(&self.context);
        for p in &self.held {
            w.push_str(&p.text);
        }
        w
    }

    /// Add a piece (tagged with its event) and scan when something could be released.
    /// `scan` appends the hits it finds in the window text, each with the action of the rule
    /// that found it (and the rule's index). `last`: no more text will come.
    ///
    /// Scans are what the guard costs, so they are spared while nothing could go out: the
    /// first as soon as the hold-back is full (time to first token waits for the hold-back and
    /// no more), then once a quarter of the hold-back more has come, releasing that much at once.
    pub fn push(&mut self, tag: u64, text: &str, last: bool, scan: &mut Scanner<'_>) -> Scanned {
        if !text.is_empty() {
            self.held.push_back(Piece {
                tag,
                text: text.to_owned(),
                chars: Normalized::new(text).text.chars().count(),
                changed: false,
            });
            self.unscanned += 1;
        }
        let total: usize = self.held.iter().map(|p| p.chars).sum();
        let behind_front = total - self.held.front().map_or(0, |p| p.chars);
        let batch = if self.released_any { (self.hold / 4).max(1) } else { 0 };
        if !last && behind_front < self.hold + batch {
            return Scanned::default();
        }
        self.scan(last, scan)
    }

    fn scan(&mut self, last: bool, scan: &mut Scanner<'_>) -> Scanned {
        let window = self.window();
        let mut hits = Vec::new();
        scan(&window, &mut hits);
        let end = window.len();
        let mut out = Scanned::default();
        let mut masks: Vec<Range<usize>> = Vec::new();
        let mut first_placeholders = Vec::new();
        for (rule, hit, action) in hits {
            let fresh = hit.range.end > self.decided && (last || hit.range.end < end);
            if !fresh {
                continue;
            }
            match action {
                StreamAction::Block => {
                    if out.block.as_ref().is_none_or(|(_, b)| hit.range.end < b.range.end) {
                        out.block = Some((rule, hit));
                    }
                }
                StreamAction::Mask => {
                    masks.push(hit.range.clone());
                    first_placeholders.push((hit.range.start, hit.risk.placeholder()));
                    out.recorded.push((rule, hit, action));
                }
                StreamAction::Log => out.recorded.push((rule, hit, action)),
            }
        }
        if out.block.is_some() {
            return out;
        }
        self.unscanned = 0;
        // Decided: everything but the last character (a match ending there may still grow).
        let last_char = window.chars().next_back().map_or(0, char::len_utf8);
        self.decided = if last { end } else { end - last_char };
        if !masks.is_empty() {
            self.mask(&masks, &first_placeholders);
        }
        out
    }

    /// Replace each masked range (window offsets) in the held pieces: the first piece a range
    /// covers gets the placeholder, the others lose their part. A part already released stays.
    fn mask(&mut self, masks: &[Range<usize>], placeholders: &[(usize, &'static str)]) {
        let mut merged: Vec<(Range<usize>, &'static str)> = Vec::new();
        let mut order: Vec<usize> = (0..masks.len()).collect();
        order.sort_by_key(|&i| masks[i].start);
        for i in order {
            let r = masks[i].clone();
            let ph = placeholders[i].1;
            match merged.last_mut() {
                Some((m, _)) if r.start < m.end => m.end = m.end.max(r.end),
                _ => merged.push((r, ph)),
            }
        }
        // From the last range back, so earlier offsets stay valid.
        for (range, placeholder) in merged.into_iter().rev() {
            let mut at = self.context.len();
            let mut spans = Vec::new();
            for (k, p) in self.held.iter().enumerate() {
                let span = at..at + p.text.len();
                at = span.end;
                let lo = range.start.max(span.start);
                let hi = range.end.min(span.end);
                if lo < hi {
                    spans.push((k, lo - span.start..hi - span.start));
                }
            }
            let Some(first) = spans.first().map(|(k, _)| *k) else {
                continue;
            };
            for (k, r) in spans.into_iter().rev() {
                let piece = &mut self.held[k];
                let with = if k == first { placeholder } else { "" };
                piece.text.replace_range(r, with);
                piece.chars = Normalized::new(&piece.text).text.chars().count();
                piece.changed = true;
            }
        }
        let len = self.context.len() + self.held.iter().map(|p| p.text.len()).sum::<usize>();
        // Placeholders are decided text.
        self.decided = len.saturating_sub(
            self.held
                .back()
                .map_or(0, |p| p.text.chars().next_back().map_or(0, char::len_utf8)),
        );
    }

    /// The pieces that may go out now, front first: (tag, text, changed by masking).
    pub fn release(&mut self, out: &mut Vec<(u64, String, bool)>) {
        let mut behind: usize = self.held.iter().map(|p| p.chars).sum();
        while let Some(front) = self.held.front() {
            // Only right after a scan of everything held: a match the last scan left undecided
            // (it touched the end) is decided by the next one, before anything goes.
            if behind - front.chars < self.hold || self.unscanned > 0 {
                break;
            }
            behind -= front.chars;
            if let Some(p) = self.held.pop_front() {
                self.released_any = true;
                self.release_piece(p, out);
            }
        }
    }

    /// The stream ended: a last scan deciding what touches the end, then everything released
    /// (unless it blocks).
    pub fn finish(&mut self, scan: &mut Scanner<'_>, out: &mut Vec<(u64, String, bool)>) -> Scanned {
        let scanned = self.scan(true, scan);
        if scanned.block.is_none() {
            while let Some(p) = self.held.pop_front() {
                self.release_piece(p, out);
            }
        }
        scanned
    }

    fn release_piece(&mut self, p: Piece, out: &mut Vec<(u64, String, bool)>) {
        let before = self.context.len();
        self.context.push_str(&p.text);
        let keep = self.hold.max(16) * CONTEXT_FACTOR;
        if self.context.len() > keep {
            let mut cut = self.context.len() - keep;
            while !self.context.is_char_boundary(cut) {
                cut += 1;
            }
            self.context.drain(..cut);
            let dropped = before + p.text.len() - self.context.len();
            self.decided = self.decided.saturating_sub(dropped);
        }
        out.push((p.tag, p.text, p.changed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::deny::DenyList;
    use crate::guard::{Detector, Inspected};
    use std::sync::Arc;

    fn scanner(detector: Detector, action: StreamAction) -> impl FnMut(&str, &mut Vec<(usize, Hit, StreamAction)>) {
        move |text, out| {
            let mut hits = Vec::new();
            detector.find(&Inspected::new(text), false, &mut hits);
            out.extend(hits.into_iter().map(|h| (0, h, action)));
        }
    }

    /// Stream `pieces` through a channel; the text released, and whether it blocked.
    fn run(pieces: &[&str], hold: usize, detector: Detector, action: StreamAction) -> (String, bool) {
        let mut ch = Channel::new(hold);
        let mut scan = scanner(detector, action);
        let mut released = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            if ch.push(i as u64, p, false, &mut scan).block.is_some() {
                return (released.into_iter().map(|(_, t, _)| t).collect(), true);
            }
            ch.release(&mut released);
        }
        let blocked = ch.finish(&mut scan, &mut released).block.is_some();
        (released.into_iter().map(|(_, t, _)| t).collect(), blocked)
    }

    fn deny(phrases: &[&str]) -> Detector {
        Detector::Deny(Arc::new(DenyList::new(phrases).unwrap()))
    }

    #[test]
    fn a_phrase_split_at_every_pair_of_boundaries_is_blocked_and_never_sent_whole() {
        let text = "the plan: launch codes now, then tea";
        let phrase = "launch codes";
        let list = deny(&[phrase]);
        let hold = 12;
        let n = text.len();
        for a in 1..n {
            for b in a..n {
                let pieces: Vec<&str> = [&text[..a], &text[a..b], &text[b..]]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect();
                let (sent, blocked) = run(&pieces, hold, list.clone(), StreamAction::Block);
                assert!(blocked, "cuts {a},{b}");
                assert!(!sent.contains(phrase), "cuts {a},{b}: sent {sent:?}");
                assert!(!sent.contains("launch"), "the hold-back keeps even the start: {sent:?}");
            }
        }
    }

    #[test]
    fn multibyte_and_obfuscated_phrases_are_caught_across_pieces() {
        let text = "好的，这是敏\u{200B}感词，再见";
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for &(a, _) in &chars[1..] {
            let (sent, blocked) = run(&[&text[..a], &text[a..]], 3, deny(&["敏感词"]), StreamAction::Block);
            assert!(blocked && !sent.contains("感词"), "cut {a}: {sent:?}");
        }
    }

    #[test]
    fn a_word_that_only_starts_like_a_phrase_passes() {
        let (sent, blocked) = run(&["we ass", "ert it"], 3, deny(&["ass"]), StreamAction::Block);
        assert!(!blocked);
        assert_eq!(sent, "we assert it");
        let (_, blocked) = run(&["you ass", ""], 3, deny(&["ass"]), StreamAction::Block);
        assert!(blocked, "at the end of the stream the phrase is decided");
    }

    #[test]
    fn masks_replace_a_match_before_any_of_it_is_sent() {
        let text = "write to jane.doe@example.com today";
        let pii = Detector::Pii(crate::guard::pii::PiiKinds::all());
        for a in 1..text.len() {
            let (sent, blocked) = run(&[&text[..a], &text[a..]], 40, pii.clone(), StreamAction::Mask);
            assert!(!blocked);
            assert_eq!(sent, "write to [EMAIL] today", "cut {a}");
        }
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (sent, _) = run(&pieces, 40, pii, StreamAction::Mask);
        assert_eq!(sent, "write to [EMAIL] today", "one character per piece");
    }
}
