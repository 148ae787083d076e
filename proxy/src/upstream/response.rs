//! Reading a provider's HTTP/1.x response on a connection the gateway wrote its request to:
//! the head, then the body as it arrives.
//!
//! The gateway reads responses itself rather than through Pingora's client session, which
//! keeps a case-preserving second copy of every header and hands out one body chunk per call.
//! Here the head is parsed once (httparse) into the header map the client's answer is built
//! from, and the body comes out of one read buffer as slices ([`framing`](super::framing)):
//! whatever already arrived is returned without another read. Framing follows RFC 9112 §6.3;
//! the connection goes back to the pool only when the body ended exactly where its framing said
//! and the provider did not ask to close it.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::protocols::Stream;
use pingora::{Error, ErrorType, Result};
use pingora_timeout::timeout;
use tokio::io::AsyncReadExt;

use super::framing::Decoder;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 128;
/// Room made in the read buffer before each read.
const READ_SIZE: usize = 16 * 1024;

/// A provider's response: status and headers read, the body still on the connection.
pub struct Response {
    stream: Stream,
    buf: BytesMut,
    status: StatusCode,
    headers: HeaderMap,
    body: Decoder,
    /// The provider allows another request on this connection after this response.
    keepalive: bool,
    read_timeout: Duration,
    /// The start of the body, already read by [`Response::prefetch`]: returned first.
    replay: Option<Bytes>,
}

/// The parts of a parsed head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    keepalive: bool,
    body: Decoder,
}

impl Response {
    /// Read the response head from `stream` (informational 1xx answers are skipped). Each read
    /// waits at most `read_timeout`.
    pub async fn read(mut stream: Stream, read_timeout: Duration) -> Result<Response> {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        loop {
            if let Some((len, head)) = parse_head(&buf)? {
                buf.advance(len);
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    // The gateway never asks for an upgrade; what follows is not HTTP/1.
                    return Error::e_explain(ErrorType::InvalidHTTPHeader, "the provider switched protocols unasked");
                }
                if head.status.is_informational() {
                    continue;
                }
                return Ok(Response {
                    stream,
                    buf,
                    status: head.status,
                    headers: head.headers,
                    body: head.body,
                    keepalive: head.keepalive,
                    read_timeout,
                    replay: None,
                });
            }
            if buf.len() >= MAX_HEAD {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "response head too large");
            }
            if fill(&mut stream, &mut buf, read_timeout).await? == 0 {
                return Error::e_explain(ErrorType::ConnectionClosed, "closed before the response header");
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, taken out (the response keeps an empty map).
    pub fn take_headers(&mut self) -> HeaderMap {
        std::mem::take(&mut self.headers)
    }

    /// The longest wait for each later read of the body (the idle gap of a stream).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    /// Read the body up to `limit` bytes (all of it when shorter) to look at it; what was read
    /// is still returned by [`Response::read_body`] afterwards.
    pub async fn prefetch(&mut self, limit: usize) -> Result<Bytes> {
        let mut whole = BytesMut::new();
        if let Some(r) = self.replay.take() {
            whole.extend_from_slice(&r);
        }
        while whole.len() < limit {
            match self.read_body().await? {
                Some(piece) => whole.extend_from_slice(&piece),
                None => break,
            }
        }
        let whole = whole.freeze();
        self.replay = (!whole.is_empty()).then(|| whole.clone());
        Ok(whole)
    }

    /// The next piece of the body; `None` at its end. A piece already received is returned
    /// without reading. Cancel-safe: bytes a dropped call read stay in the buffer.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if let Some(r) = self.replay.take() {
            return Ok(Some(r));
        }
        loop {
            match self.body.next(&mut self.buf) {
                Ok(Some(piece)) => return Ok(Some(piece)),
                Ok(None) if self.body.is_done() => return Ok(None),
                Ok(None) => {}
                Err(e) => return Error::e_explain(ErrorType::InvalidHTTPHeader, e.to_string()),
            }
            if fill(&mut self.stream, &mut self.buf, self.read_timeout).await? == 0 {
                if self.body.is_close_delimited() {
                    self.body = Decoder::empty();
                    return Ok(None);
                }
                return Error::e_explain(
                    ErrorType::ConnectionClosed,
                    "closed before the end of the response body",
                );
            }
        }
    }

    /// Whether the body was read to its end.
    pub fn is_done(&self) -> bool {
        self.body.is_done()
    }

    /// The connection, if it can carry another request: the body ended where its framing said,
    /// nothing came after it, and the provider did not ask to close.
    pub fn into_reusable(self) -> Option<Stream> {
        (self.keepalive && self.body.is_done() && self.buf.is_empty()).then_some(self.stream)
    }
}

/// Read more bytes from `stream` into `buf`, waiting at most `read_timeout`; 0 means the provider
/// closed the connection.
async fn fill(stream: &mut Stream, buf: &mut BytesMut, read_timeout: Duration) -> Result<usize> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    match timeout(read_timeout, stream.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Error::e_because(ErrorType::ReadError, "reading the response", e),
        Err(_) => Error::e_explain(ErrorType::ReadTimedout, "reading the response"),
    }
}

/// The head at the start of `buf` and its length, or `None` if it is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Error::e_explain(ErrorType::InvalidHTTPHeader, format!("invalid response head: {e}")),
    };
    let Some(status) = parsed.code.and_then(|c| StatusCode::from_u16(c).ok()) else {
        return Error::e_explain(ErrorType::InvalidHTTPHeader, "invalid response status");
    };
    // Hop-by-hop fields are this connection's business: read here, never relayed.
    // Room for what the gateway adds to the client's answer (request id, model, attempts,
    // framing, up to six `x-ratelimit-*`): the map is not reallocated and rehashed on the way
    // out.
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + 10);
    let mut connection = Connection::default();
    let mut transfer_encoding: Option<&[u8]> = None;
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        match hop_by_hop(name) {
            Some(Hop::Connection) => connection.add(field.value),
            Some(Hop::TransferEncoding) => transfer_encoding = Some(field.value),
            Some(Hop::Other) => {}
            None => {
                let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(field.value)) else {
                    return Error::e_explain(ErrorType::InvalidHTTPHeader, "invalid response header field");
                };
                headers.append(name, value);
            }
        }
    }
    for name in &connection.nominated {
        headers.remove(name);
    }
    let te = transfer_encoding.and_then(|v| v.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii));
    let http10 = parsed.version == Some(0);
    let (body, framing_keeps) = framing(status, te, &headers)?;
    let keepalive = framing_keeps && !connection.close && (!http10 || connection.keep_alive);
    Ok(Some((
        len,
        Head {
            status,
            headers,
            keepalive,
            body,
        },
    )))
}

/// Hop-by-hop response fields (RFC 9110 §7.6.1).
enum Hop {
    Connection,
    TransferEncoding,
    Other,
}

fn hop_by_hop(name: &[u8]) -> Option<Hop> {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        10 if is(b"connection") => Some(Hop::Connection),
        17 if is(b"transfer-encoding") => Some(Hop::TransferEncoding),
        2 if is(b"te") => Some(Hop::Other),
        7 if is(b"trailer") || is(b"upgrade") => Some(Hop::Other),
        10 if is(b"keep-alive") => Some(Hop::Other),
        16 if is(b"proxy-connection") => Some(Hop::Other),
        _ => None,
    }
}

/// What the `Connection` fields say: close, keep-alive (HTTP/1.0), and other fields this hop
/// only.
#[derive(Default)]
struct Connection {
    close: bool,
    keep_alive: bool,
    nominated: Vec<HeaderName>,
}

impl Connection {
    fn add(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if let Ok(name) = HeaderName::from_bytes(token) {
                self.nominated.push(name);
            }
        }
    }
}

/// How the body is framed (RFC 9112 §6.3), given the final transfer coding if any, and whether
/// that framing lets the connection be reused.
fn framing(status: StatusCode, te: Option<&[u8]>, headers: &HeaderMap) -> Result<(Decoder, bool)> {
    if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Decoder::empty(), true));
    }
    if let Some(te) = te {
        // With both, Transfer-Encoding wins and the connection must not be reused (§6.3.3).
        let reusable = !headers.contains_key(http::header::CONTENT_LENGTH);
        return Ok(if te.eq_ignore_ascii_case(b"chunked") {
            (Decoder::chunked(), reusable)
        } else {
            (Decoder::until_close(), false)
        });
    }
    let mut length = None;
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii())?;
            if length.is_some_and(|l| l != n) {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "conflicting Content-Length values");
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Decoder::length(n), true),
        None => (Decoder::until_close(), false),
    })
}

fn parse_length(digits: &[u8]) -> Result<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Error::e_explain(ErrorType::InvalidHTTPHeader, "invalid Content-Length");
    }
    Ok(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::loopback_pair;
    use tokio::io::AsyncWriteExt;

    fn head(text: &str) -> Head {
        match parse_head(text.as_bytes()) {
            Ok(Some((len, h))) => {
                assert_eq!(len, text.len());
                h
            }
            other => panic!("not a complete head: {:?}", other.map(|o| o.map(|(l, _)| l))),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert_eq!((h.status.as_u16(), h.keepalive, h.body.is_done()), (200, true, false));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert!(!h.keepalive, "TE with CL: decoded as chunked, never reused");
        assert!(!h.body.is_close_delimited());
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(h.body.is_close_delimited() && !h.keepalive);
        let h = head("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n");
        assert!(h.body.is_close_delimited() && !h.keepalive);
        let h = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert!(h.body.is_done() && h.keepalive);
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n");
        assert!(!h.body.is_done());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n").is_err());
    }

    #[test]
    fn hop_by_hop_fields_are_not_kept_for_the_client() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nX-End: 2\r\n\r\n");
        let names: Vec<&str> = h.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-end"]);
        assert!(
            !h.body.is_done() && !h.body.is_close_delimited(),
            "still decoded as chunked"
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        assert!(!head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: Close\r\n\r\n").keepalive);
        assert!(!head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: x, close\r\n\r\n").keepalive);
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keepalive);
        assert!(head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n").keepalive);
    }

    #[test]
    fn a_partial_head_waits_and_a_broken_one_is_refused() {
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le"), Ok(None)));
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(parse_head(b"SMTP ready\r\n\r\n").is_err());
    }

    async fn body_of(r: &mut Response) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(piece) = r.read_body().await.unwrap() {
            body.extend_from_slice(&piece);
        }
        body
    }

    #[tokio::test]
    async fn a_response_in_pieces_is_read_whole_and_its_connection_reused() {
        let (client, mut server) = loopback_pair().await;
        let writer = tokio::spawn(async move {
            for part in [
                &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-"[..],
                b"Encoding: chunked\r\nx-a: 1\r\n\r\n5\r\nhel",
                b"lo\r\n0\r\n\r\n",
            ] {
                server.write_all(part).await.unwrap();
                server.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server
        });
        let mut r = Response::read(client, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get("x-a").unwrap(), "1");
        assert_eq!(body_of(&mut r).await, b"hello");
        assert!(r.is_done());
        assert!(r.into_reusable().is_some());
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_close_delimited_body_ends_at_close_and_is_not_reused() {
        let (client, mut server) = loopback_pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of it").await.unwrap();
        server.shutdown().await.unwrap();
        let mut r = Response::read(client, Duration::from_secs(5)).await.unwrap();
        assert_eq!(body_of(&mut r).await, b"all of it");
        assert!(r.into_reusable().is_none());
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_a_silent_provider_times_out() {
        let (client, mut server) = loopback_pair().await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
            .await
            .unwrap();
        server.shutdown().await.unwrap();
        let mut r = Response::read(client, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.read_body().await.unwrap().unwrap(), &b"half"[..]);
        let e = r.read_body().await.unwrap_err();
        assert_eq!(e.etype(), &ErrorType::ConnectionClosed);

        let (client, _server) = loopback_pair().await;
        let e = Response::read(client, Duration::from_millis(50)).await.err().unwrap();
        assert_eq!(e.etype(), &ErrorType::ReadTimedout);
    }

    #[tokio::test]
    async fn a_protocol_switch_nobody_asked_for_is_an_error() {
        let (client, mut server) = loopback_pair().await;
        server
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        let e = Response::read(client, Duration::from_secs(5)).await.err().unwrap();
        assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader);
    }
}
