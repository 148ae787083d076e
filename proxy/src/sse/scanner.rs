//! Splitting an SSE byte stream into whole events.
//!
//! An event ends at a blank line (`\n\n`, `\r\n\r\n` or mixed). [`EventSplitter::push`] returns
//! the longest prefix of what it has seen that ends on an event boundary — the very chunk, sliced,
//! when nothing was carried over — and keeps the unterminated tail for the next chunk. Providers
//! flush whole events, so in practice nothing is copied. A tail that grows past `max_pending`
//! without a boundary is released as is, so a stream that is not SSE still flows.

use bytes::{Bytes, BytesMut};

/// Incremental event splitter.
#[derive(Debug)]
pub struct EventSplitter {
    pending: BytesMut,
    max_pending: usize,
}

impl EventSplitter {
    pub fn new(max_pending: usize) -> Self {
        EventSplitter {
            pending: BytesMut::new(),
            max_pending,
        }
    }

    /// Feed one chunk; returns the bytes that end on an event boundary (maybe empty).
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.pending.is_empty() {
            return match last_boundary_end(&chunk) {
                Some(end) if end == chunk.len() => chunk,
                Some(end) => {
                    self.pending.extend_from_slice(&chunk[end..]);
                    chunk.slice(..end)
                }
                None if chunk.len() > self.max_pending => chunk,
                None => {
                    self.pending.extend_from_slice(&chunk);
                    Bytes::new()
                }
            };
        }
        self.pending.extend_from_slice(&chunk);
        match last_boundary_end(&self.pending) {
            Some(end) => self.pending.split_to(end).freeze(),
            None if self.pending.len() > self.max_pending => self.pending.split().freeze(),
            None => Bytes::new(),
        }
    }

    /// The unterminated tail at the end of the stream.
    pub fn finish(&mut self) -> Bytes {
        self.pending.split().freeze()
    }
}

/// End offset (just past the blank line) of the last complete event in `buf`.
pub fn last_boundary_end(buf: &[u8]) -> Option<usize> {
    for i in memchr::memrchr_iter(b'\n', buf) {
        // `\n` at i ends a line; the line it ends is blank if it is preceded by `\n` or `\n\r`.
        match i.checked_sub(1).map(|j| buf[j]) {
            Some(b'\n') => return Some(i + 1),
            Some(b'\r') if i >= 2 && buf[i - 2] == b'\n' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// End offset of the first complete event starting at `from`.
pub fn next_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    for off in memchr::memchr_iter(b'\n', rest) {
        let i = from + off;
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// Iterator over the byte ranges of the complete events in `buf`.
pub fn events(buf: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let end = next_event_end(buf, at)?;
        let r = at..end;
        at = end;
        Some(r)
    })
}

/// The `data` field of one event: its `data:` lines joined by `\n` (borrowed when there is one).
pub fn event_data(event: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut first: Option<&[u8]> = None;
    let mut joined: Option<Vec<u8>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(value) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match (&mut first, &mut joined) {
            (None, _) => first = Some(value),
            (Some(f), None) => {
                let mut v = f.to_vec();
                v.push(b'\n');
                v.extend_from_slice(value);
                joined = Some(v);
            }
            (Some(_), Some(v)) => {
                v.push(b'\n');
                v.extend_from_slice(value);
            }
        }
    }
    match (joined, first) {
        (Some(v), _) => std::borrow::Cow::Owned(v),
        (None, Some(f)) => std::borrow::Cow::Borrowed(f),
        (None, None) => std::borrow::Cow::Borrowed(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] =
        b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: comment\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n";

    #[test]
    fn every_split_point_yields_the_same_events_and_bytes() {
        let want: Vec<&[u8]> = events(STREAM).map(|r| &STREAM[r]).collect();
        assert_eq!(want.len(), 4);
        for cut in 0..=STREAM.len() {
            for cut2 in cut..=STREAM.len() {
                let mut s = EventSplitter::new(1 << 20);
                let mut out = Vec::new();
                for part in [&STREAM[..cut], &STREAM[cut..cut2], &STREAM[cut2..]] {
                    out.extend_from_slice(&s.push(Bytes::copy_from_slice(part)));
                }
                assert!(s.finish().is_empty());
                assert_eq!(out, STREAM, "cut at {cut},{cut2}");
                let got: Vec<&[u8]> = events(&out).map(|r| &out[r]).collect();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn whole_events_pass_without_copy_and_tails_wait() {
        let mut s = EventSplitter::new(1 << 20);
        let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: par");
        let out = s.push(chunk.clone());
        assert_eq!(&out[..], b"data: 1\n\ndata: 2\n\n");
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "sliced, not copied");
        assert_eq!(&s.push(Bytes::from_static(b"tial\n\n"))[..], b"data: partial\n\n");
    }

    #[test]
    fn a_tail_without_boundary_is_released_past_the_cap() {
        let mut s = EventSplitter::new(8);
        assert!(s.push(Bytes::from_static(b"abc")).is_empty());
        assert_eq!(&s.push(Bytes::from_static(b"defghij"))[..], b"abcdefghij");
        assert_eq!(&s.push(Bytes::from_static(b"not sse at all"))[..], b"not sse at all");
    }

    #[test]
    fn data_lines_are_joined() {
        assert_eq!(&event_data(b"event: x\ndata: one\ndata:two\n\n")[..], b"one\ntwo");
        assert_eq!(&event_data(b"data: {\"a\":1}\r\n\r\n")[..], b"{\"a\":1}");
        assert!(event_data(b": keepalive\n\n").is_empty());
    }
}
