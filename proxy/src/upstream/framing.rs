//! How a provider's HTTP/1.1 response body is framed, and taking it out of a read buffer.
//!
//! Pure over a [`BytesMut`]: the reader (`response`) appends what it reads, the
//! [`Decoder`] splits off body bytes as they become complete. Body bytes leave as slices of the
//! read buffer (no copy), and every piece already received is handed out without another read,
//! so a provider flushing a burst of chunks costs one read, not one per chunk.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Chunked: expecting a chunk-size line.
    ChunkSize,
    /// Chunked: bytes left in the current chunk.
    ChunkData(u64),
    /// Chunked: expecting the line end after a chunk's data.
    ChunkEnd,
    /// Chunked: after the last chunk, trailer lines until an empty one (trailers are dropped).
    Trailers,
    /// Everything until the provider closes the connection.
    UntilClose,
    /// The body is complete.
    Done,
}

/// A body the provider framed wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response body framing: {0}")]
pub struct FramingError(&'static str);

/// Takes a response body out of a read buffer, as its framing says.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    /// A body of exactly `len` bytes.
    pub fn length(len: u64) -> Self {
        Decoder {
            state: if len == 0 { State::Done } else { State::Length(len) },
        }
    }

    /// A chunked body.
    pub fn chunked() -> Self {
        Decoder {
            state: State::ChunkSize,
        }
    }

    /// A body that ends when the connection does.
    pub fn until_close() -> Self {
        Decoder {
            state: State::UntilClose,
        }
    }

    /// No body (1xx, 204, 304).
    pub fn empty() -> Self {
        Decoder { state: State::Done }
    }

    /// Whether the body has been taken whole.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether only the connection's end can end this body.
    pub fn is_close_delimited(&self) -> bool {
        self.state == State::UntilClose
    }

    /// The next piece of body in `buf`, split off it; `None` when more bytes are needed (or the
    /// body is done). Framing bytes (chunk sizes, line ends, trailers) are consumed on the way.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::UntilClose => {
                    return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
                }
                State::Length(left) => {
                    let Some(piece) = take(buf, left) else { return Ok(None) };
                    let rest = left - piece.len() as u64;
                    self.state = if rest == 0 { State::Done } else { State::Length(rest) };
                    return Ok(Some(piece));
                }
                State::ChunkData(left) => {
                    let Some(piece) = take(buf, left) else { return Ok(None) };
                    let rest = left - piece.len() as u64;
                    self.state = if rest == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(rest)
                    };
                    return Ok(Some(piece));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, _))) if used > MAX_LINE => {
                        return Err(FramingError("chunk-size line too long"))
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_LINE => return Ok(None),
                    Ok(httparse::Status::Partial) => return Err(FramingError("chunk-size line too long")),
                    Err(_) => return Err(FramingError("invalid chunk size")),
                },
                State::ChunkEnd => match buf.first() {
                    None => return Ok(None),
                    Some(b'\n') => {
                        buf.advance(1);
                        self.state = State::ChunkSize;
                    }
                    Some(b'\r') => match buf.get(1) {
                        None => return Ok(None),
                        Some(b'\n') => {
                            buf.advance(2);
                            self.state = State::ChunkSize;
                        }
                        Some(_) => return Err(FramingError("chunk data longer than its size")),
                    },
                    Some(_) => return Err(FramingError("chunk data longer than its size")),
                },
                State::Trailers => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_LINE {
                            return Err(FramingError("trailer line too long"));
                        }
                        return Ok(None);
                    };
                    let empty = end == 0 || (end == 1 && buf[0] == b'\r');
                    buf.advance(end + 1);
                    if empty {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// Up to `left` bytes off the front of `buf`, or `None` if it is empty.
fn take(buf: &mut BytesMut, left: u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    Some(buf.split_to(n).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `wire` to a decoder in the given piece sizes; the body taken out, whether it
    /// finished, and the bytes left in the buffer.
    fn feed(mut d: Decoder, wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool, Vec<u8>), FramingError> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut at = 0;
        let mut steps = cuts.iter().copied().chain(std::iter::repeat(wire.len()));
        while at < wire.len() {
            let n = steps.next().unwrap_or(1).clamp(1, wire.len() - at);
            buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            while let Some(piece) = d.next(&mut buf)? {
                assert!(!piece.is_empty());
                body.extend_from_slice(&piece);
            }
        }
        Ok((body, d.is_done(), buf.to_vec()))
    }

    fn chunked(pieces: &[&[u8]], trailers: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for p in pieces {
            w.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            w.extend_from_slice(p);
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"0\r\n");
        w.extend_from_slice(trailers.as_bytes());
        w.extend_from_slice(b"\r\n");
        w
    }

    #[test]
    fn a_chunked_body_is_decoded_at_every_split_point() {
        let wire = chunked(&[b"data: {\"a\":1}\n\n", b"x", b"data: [DONE]\n\n"], "");
        let want = b"data: {\"a\":1}\n\nxdata: [DONE]\n\n".to_vec();
        for cut in 1..wire.len() {
            let (body, done, rest) = feed(Decoder::chunked(), &wire, &[cut]).unwrap();
            assert_eq!(body, want, "cut at {cut}");
            assert!(done && rest.is_empty(), "cut at {cut}");
        }
    }

    #[test]
    fn chunk_extensions_and_trailers_are_dropped_and_a_bare_line_feed_ends_chunk_data() {
        let wire = b"5;name=value\r\nhello\r\n3\r\nabc\n0\r\nx-trailer: 1\r\nx-other: 2\r\n\r\n";
        let (body, done, rest) = feed(Decoder::chunked(), wire, &[]).unwrap();
        assert_eq!(body, b"helloabc");
        assert!(done && rest.is_empty());
    }

    #[test]
    fn bytes_past_the_end_of_the_body_stay_in_the_buffer() {
        let (body, done, rest) = feed(Decoder::length(5), b"helloEXTRA", &[]).unwrap();
        assert_eq!(
            (body.as_slice(), done, rest.as_slice()),
            (&b"hello"[..], true, &b"EXTRA"[..])
        );
        let mut wire = chunked(&[b"hi"], "");
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let (body, done, rest) = feed(Decoder::chunked(), &wire, &[]).unwrap();
        assert_eq!(
            (body.as_slice(), done, rest.as_slice()),
            (&b"hi"[..], true, &b"HTTP/1.1 200 OK\r\n"[..])
        );
    }

    #[test]
    fn malformed_chunked_framing_is_an_error_not_a_guess() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"2\r\nhello\r\n0\r\n\r\n",
            b"2\r\nhiX\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(
                feed(Decoder::chunked(), wire, &[]).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(MAX_LINE + 10));
        assert!(feed(Decoder::chunked(), long_ext.as_bytes(), &[]).is_err());
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (body, done, _) = feed(Decoder::length(10), b"hello", &[]).unwrap();
        assert_eq!((body.as_slice(), done), (&b"hello"[..], false));
        let (body, done, _) = feed(Decoder::chunked(), b"5\r\nhello\r\n", &[]).unwrap();
        assert_eq!((body.as_slice(), done), (&b"hello"[..], false));
        let (body, done, _) = feed(Decoder::until_close(), b"hello", &[]).unwrap();
        assert_eq!((body.as_slice(), done), (&b"hello"[..], false));
        assert!(Decoder::empty().is_done() && Decoder::length(0).is_done());
    }

    proptest! {
        #[test]
        fn chunked_bodies_decode_whole_whatever_the_chunks_and_the_reads(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..12),
            cuts in prop::collection::vec(1usize..64, 0..40),
        ) {
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let wire = chunked(&refs, "x-t: 1\r\n");
            let (body, done, rest) = feed(Decoder::chunked(), &wire, &cuts).unwrap();
            prop_assert_eq!(body, pieces.concat());
            prop_assert!(done);
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn length_bodies_take_exactly_their_length(
            body in prop::collection::vec(any::<u8>(), 0..600),
            extra in prop::collection::vec(any::<u8>(), 0..20),
            cuts in prop::collection::vec(1usize..64, 0..40),
        ) {
            let mut wire = body.clone();
            wire.extend_from_slice(&extra);
            let (got, done, rest) = feed(Decoder::length(body.len() as u64), &wire, &cuts).unwrap();
            prop_assert_eq!(got, body);
            prop_assert!(done);
            prop_assert_eq!(rest, extra);
        }
    }
}
