//! The response side: an ordered chain of stages over a provider's answer, as it passes.
//!
//! A streamed answer is cut into whole SSE events by the scanner; each event goes through the
//! stages in order, and each may let it pass or drop it:
//!
//! 1. [`UsageStage`]: reads usage from the event (parsing only events that may hold it) and
//!    drops the usage-only event when the gateway, not the client, asked for it;
//! 2. [`CompletionCount`]: keeps what it needs to count the completion's tokens when the
//!    provider reports no usage (exactly with the route's tokenizer, else an estimate);
//! 3. the output guard ([`OutputGuard`]): holds events back until their text is decided,
//!    masks, or ends the answer with `content_filter`;
//! 4. the cache recorder: keeps the answer (by reference) when the request missed the cache, for
//!    [`ResponseChain::recorded`] to read once the answer is complete.
//! 5. the references of a searched request: a JSON answer gets a top-level `references`
//!    member; a stream gets one more event, just before `data: [DONE]`, whose chunk has no
//!    choices and carries `references`.
//!
//! A JSON answer passes through as it comes and reaches the same stages whole at its end. A
//! stage sees the raw event, its usage, and on demand its decoded content deltas
//! ([`Event::content`]); it never reaches into gateway state: what the chain learnt is handed
//! back by [`ResponseChain::finish`].

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tollgate_tokenize::{Count, Tokenizer};

use crate::api::Usage;
use crate::context::GuardEvent;
use crate::pipeline::cache::answer::{self, CachedAnswer};
use crate::pipeline::safety::output::OutputGuard;
use crate::pipeline::safety::review::Batch;
use crate::pipeline::safety::Verdict;
use crate::pipeline::tokens::Estimator;
use crate::sse::completion::completion_text;
use crate::sse::scanner::{events, EventSplitter};
use crate::sse::usage::{EventKind, UsageFinder};

/// Largest unterminated event held back before it is released as is.
pub const MAX_PENDING_EVENT: usize = 1 << 20;

/// Largest answer kept aside to read its usage (JSON) or count its completion.
const MAX_KEPT: usize = 8 << 20;

/// How to count a completion the provider reports no usage for.
pub enum CountCompletion {
    /// Not needed.
    No,
    /// No tokenizer for the model: estimated (and marked so), since limits, metrics and the
    /// access log need a number for text that reached the client.
    Estimate(Estimator),
    /// Exactly, with the model's tokenizer.
    With(Arc<Tokenizer>),
}

/// One whole SSE event, as the stages see it.
pub struct Event<'a> {
    region: &'a Bytes,
    range: Range<usize>,
    /// What the usage stage found in it.
    pub kind: EventKind,
}

impl Event<'_> {
    /// The event's bytes, with its trailing blank line.
    pub fn bytes(&self) -> &[u8] {
        &self.region[self.range.clone()]
    }

    /// The event's bytes, shared with the upstream buffer (no copy).
    pub fn shared(&self) -> Bytes {
        self.region.slice(self.range.clone())
    }

    /// The content deltas the event carries (chat `delta.content`, completion `text`), decoded.
    pub fn content(&self) -> String {
        completion_text(self.bytes(), true)
    }
}

/// A stage's word on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Forward,
    Drop,
}

/// What the chain learnt of an answer, once it ended (or was cut).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Learnt {
    pub usage: Option<Usage>,
    /// The gateway's own count of the completion, when it was needed and the provider gave none.
    pub completion: Option<Count>,
}

/// Stage 1: the provider's usage.
pub struct UsageStage {
    finder: &'static UsageFinder,
    strip_usage_event: bool,
    usage: Option<Usage>,
}

impl UsageStage {
    fn on_event(&mut self, event: &[u8]) -> (EventKind, Pass) {
        let kind = self.finder.inspect_event(event);
        let pass = match kind {
            EventKind::Other => Pass::Forward,
            EventKind::WithUsage(u) => {
                self.usage = Some(u);
                Pass::Forward
            }
            EventKind::UsageOnly(u) => {
                self.usage = Some(u);
                if self.strip_usage_event {
                    Pass::Drop
                } else {
                    Pass::Forward
                }
            }
        };
        (kind, pass)
    }

    fn on_json(&mut self, body: &[u8]) {
        self.usage = self.finder.in_json(body);
    }
}

/// Stage 2: the completion's tokens, counted by the gateway when the provider reports none.
pub struct CompletionCount {
    mode: CountCompletion,
    /// Streamed events kept (by reference) for that count, should it be needed.
    events: Vec<Bytes>,
    kept: usize,
    counted: Option<Count>,
}

impl CompletionCount {
    fn on_event(&mut self, ev: &Event<'_>) -> Pass {
        if !matches!(self.mode, CountCompletion::No) && self.kept + ev.range.len() <= MAX_KEPT {
            self.kept += ev.range.len();
            self.events.push(ev.shared());
        }
        Pass::Forward
    }

    /// The answer ended: count what was generated if the provider said nothing.
    fn finish(&mut self, usage: Option<Usage>, json: Option<&[u8]>) {
        if usage.is_some() || matches!(self.mode, CountCompletion::No) {
            return;
        }
        let text = match json {
            Some(body) if !body.is_empty() => completion_text(body, false),
            Some(_) => return,
            None if self.events.is_empty() => return,
            None => completion_text(&self.events.concat(), true),
        };
        self.counted = Some(match &self.mode {
            CountCompletion::With(tok) => Count::Exact(tok.count(&text)),
            CountCompletion::Estimate(estimator) => Count::Estimated(estimator.count(&text)),
            CountCompletion::No => return,
        });
    }
}

/// How the answer is framed.
enum Framing {
    /// Server-sent events, cut into whole events.
    Sse(EventSplitter),
    /// A JSON body, kept (by reference) until it ends when a stage needs it whole.
    Json { kept: Vec<Bytes>, len: usize, keep: bool },
}

/// The response stages of one answer, in order.
pub struct ResponseChain {
    framing: Framing,
    usage: UsageStage,
    count: CompletionCount,
    /// Stage 3, the output guard (when rules apply to a successful answer).
    guard: Option<Box<OutputGuard>>,
    /// Stage 4, the cache recorder: the streamed chunks kept (by reference) for the cache.
    record: Option<Vec<Bytes>>,
    recorded_len: usize,
    /// Stage 5: the references list (a JSON array) still to add.
    references: Option<Bytes>,
    finished: bool,
}

impl ResponseChain {
    /// The chain for an answer that is an event stream (`sse`) or not; `success` answers are
    /// read for usage and counted; `strip_usage_event`: the gateway asked for usage the client
    /// did not, so its event is dropped.
    pub fn new(sse: bool, success: bool, strip_usage_event: bool, count: CountCompletion) -> Self {
        ResponseChain {
            framing: if sse {
                Framing::Sse(EventSplitter::new(MAX_PENDING_EVENT))
            } else {
                Framing::Json {
                    kept: Vec::new(),
                    len: 0,
                    keep: success,
                }
            },
            usage: UsageStage {
                finder: UsageFinder::shared(),
                strip_usage_event,
                usage: None,
            },
            count: CompletionCount {
                mode: if success { count } else { CountCompletion::No },
                events: Vec::new(),
                kept: 0,
                counted: None,
            },
            guard: None,
            record: None,
            recorded_len: 0,
            references: None,
            finished: false,
        }
    }

    /// Run the output guard over this answer (call it for successful answers only: error
    /// bodies pass as they are).
    pub fn guard_output(&mut self, guard: OutputGuard) {
        self.guard = Some(Box::new(guard));
    }

    /// Whether the output guard ended the answer: read no more of it.
    pub fn blocked(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.blocked())
    }

    /// Whether an output guard reads the answer (only then can moderation be due).
    pub fn moderates(&self) -> bool {
        self.guard.is_some()
    }

    /// The texts the output guard wants a moderation service to judge now, if any.
    pub fn moderation_due(&mut self) -> Option<Batch> {
        self.guard.as_mut()?.moderation_due()
    }

    /// The verdicts on the last [`ResponseChain::moderation_due`] batch; what may go out now is
    /// appended to `out`.
    pub fn moderated(&mut self, batch: &Batch, verdicts: &[Verdict], request_id: &str, out: &mut Vec<Bytes>) {
        if let Some(guard) = &mut self.guard {
            guard.moderated(batch, verdicts, request_id, out);
        }
    }

    /// What the output guard found.
    pub fn take_guard_events(&mut self) -> Vec<GuardEvent> {
        self.guard.as_mut().map(|g| g.take_events()).unwrap_or_default()
    }

    /// Add the search stage's references (a JSON array) to this answer (call it for
    /// successful answers only).
    pub fn add_references(&mut self, list: Bytes) {
        self.references = Some(list);
    }

    /// Keep the answer for the cache recorder (see [`ResponseChain::recorded`]).
    pub fn keep_for_cache(&mut self) {
        self.record = Some(Vec::new());
    }

    /// The answer as the cache keeps it, once it ended: `None` when not kept, not complete, or
    /// not a plain text answer (see [`cache::answer`](crate::pipeline::cache::answer)).
    pub fn recorded(&self) -> Option<CachedAnswer> {
        if self.guard.as_ref().is_some_and(|g| g.acted()) {
            // Not what the provider said: never cached.
            return None;
        }
        let kept = self.record.as_ref()?;
        let completion = match (self.usage.usage, self.count.counted) {
            (Some(u), _) => u.completion,
            (None, Some(c)) => c.tokens() as u64,
            (None, None) => 0,
        };
        match &self.framing {
            Framing::Sse(_) => answer::from_events(&[concat(kept)], completion),
            Framing::Json { kept, .. } if !kept.is_empty() => answer::from_json(&concat(kept), completion),
            Framing::Json { .. } => None,
        }
    }

    /// Feed one upstream chunk; appends to `out` the slices to send downstream, in order.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        match &mut self.framing {
            Framing::Sse(splitter) => {
                if let Some(kept) = &mut self.record {
                    if self.recorded_len + chunk.len() <= MAX_KEPT {
                        self.recorded_len += chunk.len();
                        kept.push(chunk.clone());
                    } else {
                        // Too long to cache: stop keeping it.
                        self.record = None;
                    }
                }
                let region = splitter.push(chunk);
                self.events(region, out);
            }
            Framing::Json { kept, len, keep } => {
                if self.guard.is_some() || self.references.is_some() {
                    // Held whole: the guard rewrites it, or references join it, at its end.
                    *len += chunk.len();
                    kept.push(chunk);
                    return;
                }
                if *keep && *len + chunk.len() <= MAX_KEPT {
                    *len += chunk.len();
                    kept.push(chunk.clone());
                }
                out.push(chunk);
            }
        }
    }

    /// Run each whole event of `region` through the stages; forward what they all pass.
    fn events(&mut self, region: Bytes, out: &mut Vec<Bytes>) {
        if region.is_empty() {
            return;
        }
        let mut kept_from = 0;
        for range in events(&region) {
            if self.references.is_some() && is_done(&region[range.clone()]) {
                if let Some(list) = self.references.take() {
                    let event = references_event(&list);
                    match &mut self.guard {
                        Some(guard) => guard.on_event(event, out),
                        None => {
                            if range.start > kept_from {
                                out.push(region.slice(kept_from..range.start));
                            }
                            out.push(event);
                            kept_from = range.start;
                        }
                    }
                }
            }
            let (kind, mut pass) = self.usage.on_event(&region[range.clone()]);
            if pass == Pass::Forward {
                let ev = Event {
                    region: &region,
                    range: range.clone(),
                    kind,
                };
                pass = self.count.on_event(&ev);
            }
            if let Some(guard) = &mut self.guard {
                if pass == Pass::Forward {
                    guard.on_event(region.slice(range.clone()), out);
                }
                kept_from = range.end;
                continue;
            }
            if pass == Pass::Drop {
                if range.start > kept_from {
                    out.push(region.slice(kept_from..range.start));
                }
                kept_from = range.end;
            }
        }
        // A region released past the pending cap may end without a boundary: pass it on.
        if kept_from < region.len() {
            match &mut self.guard {
                Some(guard) => guard.on_opaque(region.slice(kept_from..), out),
                None => out.push(region.slice(kept_from..)),
            }
        }
    }

    /// The answer ended, or was cut, or the client left (what was generated so far counts):
    /// release what is held back and say what the stages learnt. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Learnt {
        if !std::mem::replace(&mut self.finished, true) {
            match &mut self.framing {
                Framing::Sse(splitter) => {
                    let tail = splitter.finish();
                    match &mut self.guard {
                        Some(guard) => {
                            guard.on_opaque(tail, out);
                            guard.finish(out);
                        }
                        None if !tail.is_empty() => out.push(tail),
                        None => {}
                    }
                    self.count.finish(self.usage.usage, None);
                }
                Framing::Json { kept, .. } => {
                    if !kept.is_empty() {
                        let whole = match kept.as_slice() {
                            [one] => one.clone(),
                            many => concat(many),
                        };
                        self.usage.on_json(&whole);
                        self.count.finish(self.usage.usage, Some(&whole));
                        // References, when there are any, held the answer back (see `push`).
                        let references = self.references.take();
                        let held = references.is_some();
                        let whole = match references {
                            Some(list) => with_references(&whole, &list),
                            None => whole,
                        };
                        match &mut self.guard {
                            Some(guard) => guard.on_json(whole, out),
                            None if held => out.push(whole),
                            None => {}
                        }
                    }
                }
            }
        }
        Learnt {
            usage: self.usage.usage,
            completion: self.count.counted,
        }
    }
}

/// Whether an SSE event is the stream's end marker, `data: [DONE]`.
fn is_done(event: &[u8]) -> bool {
    let data = event.strip_prefix(b"data:").unwrap_or_default();
    data.trim_ascii().starts_with(b"[DONE]")
}

/// The event that carries a stream's references: a chunk with no choices.
fn references_event(list: &[u8]) -> Bytes {
    let mut e = Vec::with_capacity(list.len() + 80);
    e.extend_from_slice(br#"data: {"object":"chat.completion.chunk","choices":[],"references":"#);
    e.extend_from_slice(list);
    e.extend_from_slice(b"}\n\n");
    Bytes::from(e)
}

/// A JSON answer with `"references": list` as its first member (left as is when it is not an
/// object).
fn with_references(whole: &Bytes, list: &[u8]) -> Bytes {
    let Some(open) = whole
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .filter(|&i| whole[i] == b'{')
    else {
        return whole.clone();
    };
    let empty = whole[open + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(whole.len() + list.len() + 16);
    out.extend_from_slice(&whole[..=open]);
    out.extend_from_slice(br#""references":"#);
    out.extend_from_slice(list);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&whole[open + 1..]);
    Bytes::from(out)
}

/// `pieces` in one buffer, sized once.
pub fn concat(pieces: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in pieces {
        buf.extend_from_slice(p);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(with_usage_event: bool) -> Vec<u8> {
        let mut s = Vec::new();
        for i in 0..3 {
            s.extend_from_slice(
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"t{i}\"}}}}],\"usage\":null}}\n\n").as_bytes(),
            );
        }
        if with_usage_event {
            s.extend_from_slice(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n");
        }
        s.extend_from_slice(b"data: [DONE]\n\n");
        s
    }

    fn run(input: &[u8], cuts: &[usize], strip: bool, count: CountCompletion) -> (Vec<u8>, Learnt) {
        let mut chain = ResponseChain::new(true, true, strip, count);
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            chain.push(Bytes::copy_from_slice(&input[at..c]), &mut out);
            at = c;
        }
        let learnt = chain.finish(&mut out);
        (out.concat(), learnt)
    }

    #[test]
    fn usage_is_found_and_the_usage_event_stripped_at_every_single_split() {
        let input = stream(true);
        let want = stream(false);
        let usage = Some(Usage {
            prompt: 11,
            completion: 3,
            total: 14,
            cached: 0,
        });
        for cut in 0..=input.len() {
            let (out, learnt) = run(&input, &[cut], true, CountCompletion::No);
            assert_eq!((out, learnt.usage), (want.clone(), usage), "cut {cut}");
            let (out, learnt) = run(&input, &[cut], false, CountCompletion::No);
            assert_eq!((out, learnt.usage), (input.clone(), usage), "cut {cut}");
        }
    }

    #[test]
    fn usage_is_found_when_split_at_every_byte() {
        let input = stream(true);
        let cuts: Vec<usize> = (1..input.len()).collect();
        let (out, learnt) = run(&input, &cuts, true, CountCompletion::No);
        assert_eq!(out, stream(false));
        assert_eq!(learnt.usage.map(|u| u.total), Some(14));
    }

    #[test]
    fn a_stream_without_usage_is_counted_from_its_deltas_whatever_the_splits() {
        let input = stream(false);
        let tok = Arc::new(Tokenizer::o200k());
        let want = Count::Exact(tok.count("t0t1t2"));
        for cut in 0..=input.len() {
            let (out, learnt) = run(&input, &[cut], false, CountCompletion::With(tok.clone()));
            assert_eq!(out, input, "nothing is held back or changed");
            assert_eq!((learnt.usage, learnt.completion), (None, Some(want)), "cut {cut}");
        }
        let (_, learnt) = run(&input, &[], false, CountCompletion::Estimate(Estimator::Bytes));
        assert!(learnt.completion.is_some_and(|c| c.is_estimate()));
        let (_, learnt) = run(&stream(true), &[], false, CountCompletion::Estimate(Estimator::Bytes));
        assert_eq!(learnt.completion, None, "the provider's usage stands; nothing counted");
    }

    #[test]
    fn json_answers_reach_the_stages_whole_and_pass_unchanged() {
        let body = br#"{"id":"x","choices":[{"message":{"role":"assistant","content":"Hi there"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let mut chain = ResponseChain::new(false, true, false, CountCompletion::No);
        let mut out = Vec::new();
        for piece in body.chunks(9) {
            chain.push(Bytes::copy_from_slice(piece), &mut out);
        }
        let learnt = chain.finish(&mut out);
        assert_eq!(out.concat(), body.to_vec());
        assert_eq!(learnt.usage.map(|u| u.total), Some(7));
        let no_usage = br#"{"choices":[{"message":{"content":"Hi there"}}]}"#;
        let mut chain = ResponseChain::new(false, true, false, CountCompletion::Estimate(Estimator::Bytes));
        chain.push(Bytes::from_static(no_usage), &mut out);
        assert!(chain.finish(&mut out).completion.is_some_and(|c| c.tokens() > 0));
        let mut failed = ResponseChain::new(false, false, false, CountCompletion::Estimate(Estimator::Bytes));
        failed.push(Bytes::from_static(no_usage), &mut out);
        assert_eq!(
            failed.finish(&mut out),
            Learnt::default(),
            "an error answer is not read"
        );
    }

    #[test]
    fn references_join_a_json_answer_and_come_just_before_a_streams_end() {
        let list = Bytes::from_static(br#"[{"index":1,"title":"T","url":"https://t.example/"}]"#);
        let body = br#"{"id":"x","choices":[{"message":{"content":"Hi [1]"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let mut chain = ResponseChain::new(false, true, false, CountCompletion::No);
        chain.add_references(list.clone());
        let mut out = Vec::new();
        for piece in body.chunks(7) {
            chain.push(Bytes::copy_from_slice(piece), &mut out);
            assert!(out.is_empty(), "held until the answer is whole");
        }
        let learnt = chain.finish(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out.concat()).unwrap();
        assert_eq!(v["references"][0]["url"], "https://t.example/");
        assert_eq!(v["choices"][0]["message"]["content"], "Hi [1]");
        assert_eq!(learnt.usage.map(|u| u.total), Some(7));
        assert_eq!(
            &with_references(&Bytes::from_static(b" {}"), b"[]")[..],
            br#" {"references":[]}"#
        );

        let input = stream(true);
        let event = references_event(&list);
        let mut want = stream(false);
        let done = want.len() - b"data: [DONE]\n\n".len();
        want.splice(done..done, event.iter().copied());
        for cut in 0..=input.len() {
            let mut chain = ResponseChain::new(true, true, true, CountCompletion::No);
            chain.add_references(list.clone());
            let mut out = Vec::new();
            chain.push(Bytes::copy_from_slice(&input[..cut]), &mut out);
            chain.push(Bytes::copy_from_slice(&input[cut..]), &mut out);
            chain.finish(&mut out);
            assert_eq!(out.concat(), want, "cut {cut}");
        }
        let data = event.strip_prefix(b"data: ").unwrap();
        let v: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(v["choices"], serde_json::json!([]));
        assert_eq!(v["references"][0]["index"], 1);
    }

    #[test]
    fn events_show_their_decoded_content() {
        let region = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\\\"b\"}}]}\n\n");
        let ev = Event {
            region: &region,
            range: 0..region.len(),
            kind: EventKind::Other,
        };
        assert_eq!(ev.content(), "a\"b");
    }
}
