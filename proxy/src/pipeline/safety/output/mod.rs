//! The output guard: a response stage over the answer as it passes.
//!
//! A streamed answer's texts (each choice's content, each tool call's arguments) are followed in
//! their own sliding window ([`Channel`]); an event is held until every text it carries is
//! released by its window, then goes out, rewritten when masking changed its text. A `block`
//! drops what is held and ends the stream with a well-formed final chunk whose `finish_reason`
//! is `content_filter`, then `data: [DONE]`. A JSON answer is held whole and rewritten at its
//! end (masked texts; a blocked choice emptied with `finish_reason: "content_filter"`).
//!
//! Output moderation rules add a second hold ([`Review`]): what the local rules release waits
//! until a moderation service judged its window; the caller asks the services about each batch
//! ([`OutputGuard::moderation_due`]) and gives the verdicts back ([`OutputGuard::moderated`]).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::review::{Batch, Review};
use super::{judge, note, string_contents, Direction, Event, Verdict};
use crate::config::guardrails::{Action, GuardRule, ModelGuards};
use crate::guard::window::{Channel, Scanned, StreamAction};
use crate::guard::{Hit, Inspected};
use crate::json_spans::unescape;

mod json;
mod spans;

use json::block_all;
use spans::{data_start, find, splice, Found, Key, TextSpan};

/// An event waiting for its texts to be released.
struct Held {
    seq: u64,
    bytes: Bytes,
    /// Where the JSON data starts in `bytes`.
    data_at: usize,
    texts: Vec<TextSpan>,
    /// New text per entry of `texts` (set when masking changed it).
    replaced: Vec<Option<String>>,
}

impl Held {
    fn into_bytes(self) -> Bytes {
        if self.replaced.iter().all(Option::is_none) {
            return self.bytes;
        }
        let mut edits: Vec<(Range<usize>, Bytes)> = self
            .texts
            .iter()
            .zip(self.replaced)
            .filter_map(|(t, r)| {
                let span = self.data_at + t.span.start..self.data_at + t.span.end;
                r.map(|text| (span, string_contents(&text)))
            })
            .collect();
        edits.sort_by_key(|(r, _)| r.start);
        splice(&self.bytes, &edits)
    }
}

/// The output guard of one answer.
pub struct OutputGuard {
    /// The in-process rules (none: texts go straight to the review).
    rules: Vec<Arc<GuardRule>>,
    review: Option<Review>,
    /// A JSON answer waiting for its moderation verdict.
    json_held: Option<Bytes>,
    hold: usize,
    channels: Vec<(Key, Channel)>,
    queue: VecDeque<Held>,
    next_seq: u64,
    /// The choices seen, and the last chunk's raw `id`, `created`, `model`, `object` kind.
    choices: Vec<u64>,
    meta: Option<(Bytes, Bytes, Bytes)>,
    chat: bool,
    events: Vec<Event>,
    acted: bool,
    blocked: bool,
}

impl OutputGuard {
    /// The guard for an answer to a request of `consumer` on a model with `guards`; `None` when
    /// no output rule applies.
    pub fn new(guards: &ModelGuards, consumer: Option<&str>) -> Option<OutputGuard> {
        let (moderators, rules): (Vec<Arc<GuardRule>>, Vec<Arc<GuardRule>>) = guards
            .output
            .iter()
            .filter(|r| r.covers_consumer(consumer))
            .cloned()
            .partition(|r| r.moderation().is_some());
        let review = Review::new(moderators);
        if rules.is_empty() && review.is_none() {
            return None;
        }
        let hold = rules.iter().map(|r| r.hold_back).max().unwrap_or(0);
        Some(OutputGuard {
            rules,
            review,
            json_held: None,
            hold,
            channels: Vec::new(),
            queue: VecDeque::new(),
            next_seq: 0,
            choices: Vec::new(),
            meta: None,
            chat: true,
            events: Vec::new(),
            acted: false,
            blocked: false,
        })
    }

    /// Whether the guard changed or ended the answer (it is then not what the provider said).
    pub fn acted(&self) -> bool {
        self.acted
    }

    /// Whether the guard ended the answer: nothing more is to be read or sent.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// What the guard found, for the audit line and the metrics.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// One whole stream event; what may go out now is appended to `out`.
    pub fn on_event(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        if self.blocked {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let (data_at, found) = match data_start(&event) {
            Some(at) if event.get(at) == Some(&b'{') => (at, find(&event[at..], true)),
            _ => (0, Found::default()),
        };
        if found.id.is_some() && self.meta.is_none() {
            let raw = |r: &Option<Range<usize>>, default: &'static [u8]| {
                r.as_ref().map_or(Bytes::from_static(default), |r| {
                    event.slice(data_at + r.start..data_at + r.end)
                })
            };
            self.meta = Some((
                raw(&found.id, b"\"\""),
                raw(&found.created, b"0"),
                raw(&found.model, b"\"\""),
            ));
            self.chat = memchr::memmem::find(&event[data_at..], b"\"text_completion\"").is_none();
        }
        for c in &found.choices {
            if !self.choices.contains(&c.index) {
                self.choices.push(c.index);
            }
        }
        let texts: Vec<(Key, String)> = found
            .texts
            .iter()
            .map(|t| {
                (
                    t.key,
                    unescape(&event[data_at + t.span.start..data_at + t.span.end]).into_owned(),
                )
            })
            .collect();
        let finished: Vec<u64> = found
            .choices
            .iter()
            .filter(|c| c.finish.as_ref().is_some_and(|r| event[data_at + r.start] == b'"'))
            .map(|c| c.index)
            .collect();
        self.queue.push_back(Held {
            seq,
            bytes: event.clone(),
            data_at,
            replaced: vec![None; found.texts.len()],
            texts: found.texts,
        });
        for (key, text) in texts {
            if self.rules.is_empty() {
                if let Some(review) = &mut self.review {
                    review.push(key, seq, &text);
                }
                continue;
            }
            let scanned = {
                let mut scan = scan_with(&self.rules);
                channel_of(&mut self.channels, key, self.hold).push(seq, &text, false, &mut scan)
            };
            if self.after_scan(key, scanned, out) {
                return;
            }
        }
        // A choice that finished says no more text comes for it: decide its windows now.
        for choice in finished {
            let keys: Vec<Key> = self
                .channels
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.0 == choice)
                .collect();
            for key in keys {
                if self.finish_channel(key, out) {
                    return;
                }
            }
        }
        self.release(out);
    }

    /// Bytes that are not a whole event (a stream's unterminated tail): kept in order.
    pub fn on_opaque(&mut self, bytes: Bytes, out: &mut Vec<Bytes>) {
        if self.blocked || bytes.is_empty() {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Held {
            seq,
            bytes,
            data_at: 0,
            texts: Vec::new(),
            replaced: Vec::new(),
        });
        self.release(out);
    }

    /// The stream ended: every window decided, everything held released (or the stream blocked).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        let keys: Vec<Key> = self.channels.iter().map(|(k, _)| *k).collect();
        for key in keys {
            if self.blocked || self.finish_channel(key, out) {
                return;
            }
        }
        match &mut self.review {
            // The rest waits for the last verdicts.
            Some(review) => {
                review.end();
                self.release(out);
            }
            None => {
                while let Some(h) = self.queue.pop_front() {
                    out.push(h.into_bytes());
                }
            }
        }
    }

    /// The texts to ask the moderation services about now, if any.
    pub fn moderation_due(&mut self) -> Option<Batch> {
        if self.blocked {
            return None;
        }
        self.review.as_mut()?.due()
    }

    /// The services' verdicts on the last batch (one per rule of the batch, in order): a
    /// blocking verdict ends the answer, otherwise what they covered goes out.
    pub fn moderated(&mut self, batch: &Batch, verdicts: &[Verdict], request_id: &str, out: &mut Vec<Bytes>) {
        let mut stop = false;
        for (rule, verdict) in batch.rules.iter().zip(verdicts) {
            if let Some(service) = rule.moderation() {
                stop |= judge(rule, service, verdict, Direction::Output, &mut self.events, request_id);
            }
        }
        if stop {
            self.blocked = true;
            self.acted = true;
            self.queue.clear();
            match self.json_held.take() {
                Some(body) => out.push(block_all(&body)),
                None => {
                    out.push(self.closing_chunk());
                    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
                }
            }
            return;
        }
        let Some(review) = &mut self.review else { return };
        review.passed();
        if review.done() {
            while let Some(h) = self.queue.pop_front() {
                out.push(h.into_bytes());
            }
            out.extend(self.json_held.take());
        } else {
            self.release(out);
        }
    }

    fn finish_channel(&mut self, key: Key, out: &mut Vec<Bytes>) -> bool {
        let mut released = Vec::new();
        let scanned = {
            let mut scan = scan_with(&self.rules);
            channel_of(&mut self.channels, key, self.hold).finish(&mut scan, &mut released)
        };
        self.apply_released(key, released);
        self.after_scan(key, scanned, out)
    }

    /// Record what a scan found; `true` when it blocked (the closing chunk is then written).
    fn after_scan(&mut self, key: Key, scanned: Scanned, out: &mut Vec<Bytes>) -> bool {
        for (rule, hit, action) in &scanned.recorded {
            if *action == StreamAction::Mask {
                self.acted = true;
            }
            let rule = self.rules[*rule].clone();
            note(&mut self.events, Direction::Output, &rule, rule.action, hit);
        }
        let Some((rule, hit)) = scanned.block else {
            let mut released = Vec::new();
            channel_of(&mut self.channels, key, self.hold).release(&mut released);
            self.apply_released(key, released);
            return false;
        };
        let rule = self.rules[rule].clone();
        note(&mut self.events, Direction::Output, &rule, Action::Block, &hit);
        self.blocked = true;
        self.acted = true;
        self.queue.clear();
        out.push(self.closing_chunk());
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        true
    }

    fn apply_released(&mut self, key: Key, released: Vec<(u64, String, bool)>) {
        for (seq, text, changed) in released {
            if let Some(review) = &mut self.review {
                review.push(key, seq, &text);
            }
            if !changed {
                continue;
            }
            if let Some(h) = self.queue.iter_mut().find(|h| h.seq == seq) {
                if let Some(i) = h.texts.iter().position(|t| t.key == key) {
                    h.replaced[i] = Some(text);
                }
            }
        }
    }

    /// Send the events whose texts every window has released.
    fn release(&mut self, out: &mut Vec<Bytes>) {
        let frontier = self
            .channels
            .iter()
            .filter_map(|(_, c)| c.held_from())
            .chain(self.review.as_ref().and_then(Review::held_from))
            .min()
            .unwrap_or(u64::MAX);
        while self.queue.front().is_some_and(|h| h.seq < frontier) {
            if let Some(h) = self.queue.pop_front() {
                out.push(h.into_bytes());
            }
        }
    }

    /// The last chunk of a blocked stream: each choice seen ends with `content_filter`.
    fn closing_chunk(&self) -> Bytes {
        let (id, created, model) = self.meta.clone().unwrap_or_else(|| {
            (
                Bytes::from_static(b"\"\""),
                Bytes::from_static(b"0"),
                Bytes::from_static(b"\"\""),
            )
        });
        let mut s = Vec::with_capacity(256);
        s.extend_from_slice(b"data: {\"id\":");
        s.extend_from_slice(&id);
        s.extend_from_slice(if self.chat {
            b",\"object\":\"chat.completion.chunk\",\"created\":"
        } else {
            b",\"object\":\"text_completion\",\"created\":"
        });
        s.extend_from_slice(&created);
        s.extend_from_slice(b",\"model\":");
        s.extend_from_slice(&model);
        s.extend_from_slice(b",\"choices\":[");
        let choices = if self.choices.is_empty() {
            vec![0]
        } else {
            self.choices.clone()
        };
        for (n, i) in choices.iter().enumerate() {
            if n > 0 {
                s.push(b',');
            }
            let body: &[u8] = if self.chat { b"\"delta\":{}" } else { b"\"text\":\"\"" };
            s.extend_from_slice(format!("{{\"index\":{i},").as_bytes());
            s.extend_from_slice(body);
            s.extend_from_slice(b",\"finish_reason\":\"content_filter\"}");
        }
        s.extend_from_slice(b"]}\n\n");
        Bytes::from(s)
    }

    /// Whether `text` (a whole answer) passes every rule without a block or a mask.
    pub fn passes(&self, text: &str) -> bool {
        let mut hits = Vec::new();
        scan_with(&self.rules)(text, &mut hits);
        hits.iter().all(|(_, _, action)| *action == StreamAction::Log)
    }
}

/// The window following `key`, made on first use.
fn channel_of(channels: &mut Vec<(Key, Channel)>, key: Key, hold: usize) -> &mut Channel {
    let at = match channels.iter().position(|(k, _)| *k == key) {
        Some(at) => at,
        None => {
            channels.push((key, Channel::new(hold)));
            channels.len() - 1
        }
    };
    &mut channels[at].1
}

/// The scan a window runs: every rule over its text.
fn scan_with(rules: &[Arc<GuardRule>]) -> impl FnMut(&str, &mut Vec<(usize, Hit, StreamAction)>) + '_ {
    move |text, out| {
        let inspected = Inspected::new(text);
        let mut hits = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            hits.clear();
            if let Some(detector) = rule.local() {
                detector.find(&inspected, false, &mut hits);
            }
            let action = match rule.action {
                Action::Block => StreamAction::Block,
                Action::Mask => StreamAction::Mask,
                Action::Reroute | Action::Log => StreamAction::Log,
            };
            out.extend(hits.drain(..).map(|h| (i, h, action)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "m"
targets = [{ provider = "p" }]

[[guardrails]]
name = "words"
detect = "deny_list"
phrases = ["launch codes", "机密"]
action = "block"
on = ["output"]

[[guardrails]]
name = "pii"
detect = "pii"
action = "mask"
on = ["output"]
hold_back = 32
"#;

    fn guard() -> OutputGuard {
        let s = load_str(CONFIG, "t.toml", None, 1).unwrap();
        OutputGuard::new(s.guards_of(s.route("m").unwrap()).unwrap(), None).unwrap()
    }

    fn chunk(content: &str) -> Bytes {
        let mut s = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":".to_vec();
        crate::json_spans::write_str(&mut s, content);
        s.extend_from_slice(b"},\"finish_reason\":null}]}\n\n");
        Bytes::from(s)
    }

    /// Stream `pieces` as chunks; the client's text and the events it got.
    fn stream(pieces: &[&str]) -> (String, Vec<u8>) {
        let mut g = guard();
        let mut out = Vec::new();
        for p in pieces {
            g.on_event(chunk(p), &mut out);
        }
        g.on_event(Bytes::from_static(b"data: [DONE]\n\n"), &mut out);
        g.finish(&mut out);
        let all = crate::pipeline::response::concat(&out).to_vec();
        (crate::sse::completion::completion_text(&all, true), all)
    }

    #[test]
    fn a_blocked_phrase_split_anywhere_ends_the_stream_cleanly() {
        let text = "Sure. The launch codes are 0000; 机密 too.";
        for a in 1..text.len() {
            if !text.is_char_boundary(a) {
                continue;
            }
            let (sent, raw) = stream(&[&text[..a], &text[a..]]);
            assert!(!sent.contains("launch codes"), "cut {a}: {sent:?}");
            let raw = String::from_utf8(raw).unwrap();
            assert!(raw.contains("\"finish_reason\":\"content_filter\""), "cut {a}");
            assert!(raw.ends_with("data: [DONE]\n\n"), "cut {a}");
            assert_eq!(raw.matches("[DONE]").count(), 1, "cut {a}");
            for line in raw.split("\n\n").filter(|l| l.starts_with("data: {")) {
                serde_json::from_str::<serde_json::Value>(&line[6..]).unwrap();
            }
        }
    }

    #[test]
    fn masked_text_is_replaced_before_it_is_sent() {
        let (sent, _) = stream(&["mail jane", ".doe@exam", "ple.com now, ", "bye"]);
        assert_eq!(sent, "mail [EMAIL] now, bye");
    }

    #[test]
    fn clean_streams_pass_unchanged() {
        let pieces = ["Hello", " there", ", how", " are you?"];
        let (sent, raw) = stream(&pieces);
        assert_eq!(sent, pieces.concat());
        let want: Vec<u8> = pieces
            .iter()
            .flat_map(|p| chunk(p).to_vec())
            .chain(b"data: [DONE]\n\n".to_vec())
            .collect();
        assert_eq!(raw, want);
    }

    fn json_of(g: &mut OutputGuard, body: Bytes) -> Bytes {
        let mut out = Vec::new();
        g.on_json(body, &mut out);
        crate::pipeline::response::concat(&out)
    }

    #[test]
    fn json_answers_are_masked_or_blocked_whole() {
        let mut g = guard();
        let body = Bytes::from_static(br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"write to jane@example.com"},"finish_reason":"stop"}]}"#);
        let out = json_of(&mut g, body);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "write to [EMAIL]");
        assert!(g.acted());
        let mut g = guard();
        let body = Bytes::from_static(br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"the launch codes are 1234 jane@example.com"},"finish_reason":"stop"}]}"#);
        let v: serde_json::Value = serde_json::from_slice(&json_of(&mut g, body)).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        let mut g = guard();
        let tool = Bytes::from_static(br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"to\":\"jane@example.com\"}"}}]},"finish_reason":"tool_calls"}]}"#);
        let v: serde_json::Value = serde_json::from_slice(&json_of(&mut g, tool)).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"to\":\"[EMAIL]\"}"
        );
    }

    fn choice_chunk(index: u64, content: &str) -> Bytes {
        let mut s = format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"x\",\"choices\":[{{\"index\":{index},\"delta\":{{\"content\":").into_bytes();
        crate::json_spans::write_str(&mut s, content);
        s.extend_from_slice(b"},\"finish_reason\":null}]}\n\n");
        Bytes::from(s)
    }

    fn tool_chunk(arguments: &str) -> Bytes {
        let mut s = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":".to_vec();
        crate::json_spans::write_str(&mut s, arguments);
        s.extend_from_slice(b"}}]},\"finish_reason\":null}]}\n\n");
        Bytes::from(s)
    }

    fn run_events(events: &[Bytes]) -> String {
        let mut g = guard();
        let mut out = Vec::new();
        for e in events {
            g.on_event(e.clone(), &mut out);
        }
        g.finish(&mut out);
        String::from_utf8(crate::pipeline::response::concat(&out).to_vec()).unwrap()
    }

    #[test]
    fn each_choice_is_its_own_text() {
        // Interleaved, the two choices spell the phrase only if read as one text: not blocked.
        let raw = run_events(&[
            choice_chunk(0, "the launch"),
            choice_chunk(1, " codes"),
            choice_chunk(0, " went well"),
        ]);
        assert!(!raw.contains("content_filter"), "{raw}");
        // One choice's phrase split around the other's event: blocked.
        let raw = run_events(&[
            choice_chunk(1, "the laun"),
            choice_chunk(0, "hello"),
            choice_chunk(1, "ch codes are"),
        ]);
        assert!(raw.contains("\"finish_reason\":\"content_filter\""), "{raw}");
        assert!(
            raw.contains("{\"index\":0,") && raw.contains("{\"index\":1,"),
            "both choices end: {raw}"
        );
    }

    #[test]
    fn tool_call_arguments_are_guarded_as_they_stream() {
        let raw = run_events(&[tool_chunk("{\"to\":\"jane.d"), tool_chunk("oe@example.com\",\"n\":1}")]);
        let args: String = raw
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(args, "{\"to\":\"[EMAIL]\",\"n\":1}");
        let raw = run_events(&[tool_chunk("{\"q\":\"launch co"), tool_chunk("des\"}")]);
        assert!(raw.contains("content_filter") && !raw.contains("launch co"), "{raw}");
    }
}
