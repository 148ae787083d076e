//! The per-response SSE state in the body path.

use bytes::Bytes;

use super::scanner::{events, EventSplitter};
use super::usage::{EventKind, Usage, UsageFinder};

/// Largest unterminated event held back before it is released as is.
pub const MAX_PENDING_EVENT: usize = 1 << 20;

/// Watches a streamed response: forwards whole events, records usage, strips the usage-only
/// event when `strip_usage_event` (the gateway asked for usage, the client did not).
pub struct SseTap {
    splitter: EventSplitter,
    finder: UsageFinder,
    strip_usage_event: bool,
    usage: Option<Usage>,
    events: u64,
}

impl SseTap {
    pub fn new(strip_usage_event: bool) -> Self {
        SseTap {
            splitter: EventSplitter::new(MAX_PENDING_EVENT),
            finder: UsageFinder::default(),
            strip_usage_event,
            usage: None,
            events: 0,
        }
    }

    /// Feed one upstream chunk; appends to `out` the slices to send downstream, in order.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        let region = self.splitter.push(chunk);
        self.process(region, out);
    }

    /// End of the upstream body: releases an unterminated last event.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        let tail = self.splitter.finish();
        if !tail.is_empty() {
            out.push(tail);
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whole events seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    fn process(&mut self, region: Bytes, out: &mut Vec<Bytes>) {
        if region.is_empty() {
            return;
        }
        let mut kept_from = 0;
        let mut complete_to = 0;
        for range in events(&region) {
            self.events += 1;
            complete_to = range.end;
            match self.finder.inspect_event(&region[range.clone()]) {
                EventKind::Other => {}
                EventKind::WithUsage(u) => self.usage = Some(u),
                EventKind::UsageOnly(u) => {
                    self.usage = Some(u);
                    if self.strip_usage_event {
                        if range.start > kept_from {
                            out.push(region.slice(kept_from..range.start));
                        }
                        kept_from = range.end;
                    }
                }
            }
        }
        // A region released past the pending cap may end without a boundary: pass it on.
        let _ = complete_to;
        if kept_from < region.len() {
            out.push(region.slice(kept_from..));
        }
    }
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

    fn run(input: &[u8], cuts: &[usize], strip: bool) -> (Vec<u8>, Option<Usage>) {
        let mut tap = SseTap::new(strip);
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            tap.push(Bytes::copy_from_slice(&input[at..c]), &mut out);
            at = c;
        }
        tap.finish(&mut out);
        (out.concat(), tap.usage())
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
            assert_eq!(run(&input, &[cut], true), (want.clone(), usage), "cut {cut}");
            assert_eq!(run(&input, &[cut], false), (input.clone(), usage), "cut {cut}");
        }
    }

    #[test]
    fn usage_is_found_when_split_at_every_byte() {
        let input = stream(true);
        let cuts: Vec<usize> = (1..input.len()).collect();
        let (out, usage) = run(&input, &cuts, true);
        assert_eq!(out, stream(false));
        assert_eq!(usage.map(|u| u.total), Some(14));
    }
}
