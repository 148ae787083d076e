//! Output moderation: an answer's texts held until an external moderation service judged them.
//!
//! A moderation call costs a round trip, so texts are judged by windows: each text of the answer
//! (a choice's content, a tool call's arguments) collects what the local rules released, and once
//! `window` new characters have come (or the answer ended) everything held is sent in one batch,
//! every due text in the same call. A clean verdict releases the held text but its last
//! `hold` characters, which are read again with the next window: a flagged passage that straddles
//! two windows is judged whole while its end is still held, as the local rules' hold-back does for
//! phrases. The caller awaits each batch before feeding more (the relay reads on after), so a
//! verdict always covers exactly what was held when the batch was made.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::guardrails::GuardRule;

/// Which text of the answer (see `output::Key`).
pub type Key = (u64, u64);

#[derive(Debug)]
struct Piece {
    seq: u64,
    text: String,
    chars: usize,
}

/// One text's held pieces.
#[derive(Debug, Default)]
struct Text {
    held: VecDeque<Piece>,
    /// Characters not judged yet (at the back of `held`).
    fresh: usize,
}

impl Text {
    fn chars(&self) -> usize {
        self.held.iter().map(|p| p.chars).sum()
    }
}

/// The texts to send to every service of `rules` in one call each.
#[derive(Debug)]
pub struct Batch {
    pub rules: Vec<Arc<GuardRule>>,
    pub texts: Vec<String>,
}

/// The moderation state of one answer.
#[derive(Debug)]
pub struct Review {
    rules: Vec<Arc<GuardRule>>,
    window: usize,
    hold: usize,
    texts: Vec<(Key, Text)>,
    ended: bool,
    /// The texts (indices into `texts`) of the batch waiting for its verdict.
    asked: Vec<usize>,
}

impl Review {
    /// The review by `rules` (moderation rules); `None` when there are none.
    pub fn new(rules: Vec<Arc<GuardRule>>) -> Option<Review> {
        let services: Vec<_> = rules.iter().filter_map(|r| r.moderation()).collect();
        let window = services.iter().map(|m| m.window).min()?;
        let hold = rules.iter().map(|r| r.hold_back).max().unwrap_or(0).min(window);
        Some(Review {
            rules,
            window,
            hold,
            texts: Vec::new(),
            ended: false,
            asked: Vec::new(),
        })
    }

    /// Text of event `seq` for `key`, as the client would get it.
    pub fn push(&mut self, key: Key, seq: u64, text: &str) {
        if text.is_empty() {
            return;
        }
        let at = match self.texts.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                self.texts.push((key, Text::default()));
                self.texts.len() - 1
            }
        };
        let t = &mut self.texts[at].1;
        let chars = text.chars().count();
        t.fresh += chars;
        t.held.push_back(Piece {
            seq,
            text: text.to_owned(),
            chars,
        });
    }

    /// The first event whose text is not yet judged.
    pub fn held_from(&self) -> Option<u64> {
        self.texts
            .iter()
            .filter_map(|(_, t)| t.held.front().map(|p| p.seq))
            .min()
    }

    /// No more text comes: what is held unjudged is due; what was judged and only kept to be
    /// read again with the next window may go.
    pub fn end(&mut self) {
        self.ended = true;
        for (_, t) in &mut self.texts {
            if t.fresh == 0 {
                t.held.clear();
            }
        }
    }

    /// Whether the answer ended and every text was judged and released.
    pub fn done(&self) -> bool {
        self.ended && self.texts.iter().all(|(_, t)| t.held.is_empty())
    }

    /// The batch to ask about now, if a text has a window's worth of new characters (or the
    /// answer ended with text unjudged).
    pub fn due(&mut self) -> Option<Batch> {
        if !self.asked.is_empty() {
            return None;
        }
        let (window, hold, ended) = (self.window, self.hold, self.ended);
        let mut texts = Vec::new();
        for (i, (_, t)) in self.texts.iter().enumerate() {
            if t.fresh == 0 || (!ended && t.fresh < window) {
                continue;
            }
            let whole: String = t.held.iter().map(|p| p.text.as_str()).collect();
            texts.extend(segments(&whole, window + hold, hold).map(str::to_owned));
            self.asked.push(i);
        }
        (!texts.is_empty()).then(|| Batch {
            rules: self.rules.clone(),
            texts,
        })
    }

    /// The batch asked was judged clean: release what it covered, but the last `hold`
    /// characters of a text that may still grow.
    pub fn passed(&mut self) {
        for i in std::mem::take(&mut self.asked) {
            let t = &mut self.texts[i].1;
            t.fresh = 0;
            let mut behind = t.chars();
            while let Some(front) = t.held.front() {
                if !self.ended && behind - front.chars < self.hold {
                    break;
                }
                behind -= front.chars;
                t.held.pop_front();
            }
        }
    }
}

/// `text` cut into pieces of at most `size` characters, each starting `overlap` characters
/// before the previous one ended (one piece when it fits).
fn segments(text: &str, size: usize, overlap: usize) -> impl Iterator<Item = &str> {
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let n = starts.len();
    let step = size.saturating_sub(overlap).max(1);
    let mut from = 0;
    let mut done = n == 0;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let to = (from + size).min(n);
        let end = starts.get(to).copied().unwrap_or(text.len());
        let piece = &text[starts[from]..end];
        if to == n {
            done = true;
        } else {
            from += step;
        }
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn review(window: usize, hold: usize) -> Review {
        let config = format!(
            r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "m"
targets = [{{ provider = "p" }}]

[[guardrails]]
name = "mod"
detect = "moderation"
url = "http://127.0.0.1:9/moderate"
protocol = "webhook"
on = ["output"]
action = "block"
window = {window}
hold_back = {hold}
"#
        );
        let s = load_str(&config, "t.toml", None, 1).unwrap();
        let g = s.guards_of(s.route("m").unwrap()).unwrap();
        Review::new(g.output.clone()).unwrap()
    }

    #[test]
    fn segments_cover_the_text_with_overlap() {
        let text = "abcdefghij";
        assert_eq!(segments(text, 4, 1).collect::<Vec<_>>(), ["abcd", "defg", "ghij"]);
        assert_eq!(segments(text, 20, 5).collect::<Vec<_>>(), ["abcdefghij"]);
        assert_eq!(segments("", 4, 1).count(), 0);
        assert_eq!(
            segments("机密文件内容", 4, 2).collect::<Vec<_>>(),
            ["机密文件", "文件内容"]
        );
    }

    #[test]
    fn text_is_held_until_a_window_is_judged_then_all_but_the_hold_goes() {
        let mut r = review(16, 4);
        r.push((0, 0), 1, "0123456789");
        assert!(r.due().is_none(), "less than a window");
        assert_eq!(r.held_from(), Some(1));
        r.push((0, 0), 2, "abcdefgh");
        let batch = r.due().unwrap();
        assert_eq!(batch.texts, ["0123456789abcdefgh"]);
        assert!(r.due().is_none(), "one batch at a time");
        r.passed();
        // Event 2 ends within the last 4 characters: still held, judged again next time.
        assert_eq!(r.held_from(), Some(2));
        let mut ended_here = review(16, 4);
        ended_here.push((0, 0), 1, "0123456789abcdefgh");
        ended_here.due().unwrap();
        ended_here.passed();
        assert_eq!(ended_here.held_from(), Some(1));
        ended_here.end();
        assert!(
            ended_here.due().is_none() && ended_here.done(),
            "judged text is not asked about twice"
        );
        r.push((0, 0), 3, "tail");
        r.end();
        let batch = r.due().unwrap();
        assert_eq!(batch.texts, ["abcdefghtail"]);
        r.passed();
        assert!(r.done());
        assert_eq!(r.held_from(), None);
    }

    #[test]
    fn every_due_text_goes_in_one_batch() {
        let mut r = review(16, 4);
        r.push((0, 0), 1, "first choice");
        r.push((1, 0), 2, "second choice");
        r.push((0, 1), 3, "{\"a\":1}");
        r.end();
        let batch = r.due().unwrap();
        assert_eq!(batch.texts, ["first choice", "second choice", "{\"a\":1}"]);
        r.passed();
        assert!(r.done());
    }
}
