//! A client connection's stream with the request head guarded.
//!
//! Pingora reads a request head with a timeout per read, so a client sending a byte a second is
//! never cut off; and it refuses a head it cannot read with a bare `400` and an empty body.
//! [`GuardedStream`] sits under Pingora's HTTP/1.1 session: while a head is being read (from
//! [`ConnPhase::arm`] until the gateway calls [`ConnPhase::head_done`]) it gives the head a
//! total deadline, answering `408` itself when it passes, and replaces Pingora's bare refusal
//! with an OpenAI-shaped JSON error. Outside the head it passes bytes through untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN,
};
use pingora::protocols::{SocketDigest, TimingDigest};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::error::{ApiError, ErrorCode};

/// Pingora's own limit on header lines (`httparse` headers it parses at most).
const PINGORA_MAX_HEADERS: usize = 256;

/// Which part of the connection's traffic is being read, shared between the stream and those
/// who know where a request head starts (the edge loop) and ends (the gateway).
///
/// An odd value is a head being read (the value counts heads), an even one anything else.
#[derive(Debug)]
pub struct ConnPhase(AtomicU64);

impl ConnPhase {
    /// A new connection: its first head is being read.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnPhase(AtomicU64::new(1)))
    }

    /// The next request's head is to be read.
    pub fn arm(&self) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(if v % 2 == 1 { v + 2 } else { v + 1 })
        });
    }

    /// The head was read and parsed.
    pub fn head_done(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| (v % 2 == 1).then_some(v + 1));
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// What the guard refused, for the edge's metrics.
pub type OnRefusal = Arc<dyn Fn(ErrorCode) + Send + Sync>;

/// A stream whose request heads have a deadline and whose head refusals are JSON.
pub struct GuardedStream {
    inner: Stream,
    phase: Arc<ConnPhase>,
    /// The phase value last acted on.
    seen: u64,
    head_timeout: Duration,
    max_head_bytes: usize,
    max_line_bytes: usize,
    /// Length of the head's first line (the request line), or of what came of it so far.
    line_bytes: usize,
    /// Bytes and line feeds read during the current head (to tell a too-large head from a
    /// malformed one when Pingora refuses it).
    head_bytes: usize,
    head_lines: usize,
    deadline: Option<Pin<Box<Sleep>>>,
    /// A refusal being written (bytes, how much is written); then reads end and writes vanish.
    refusal: Option<(Bytes, usize)>,
    on_refusal: OnRefusal,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl GuardedStream {
    /// Guard `inner`, a new connection (its first head's deadline runs from now); `limits` are
    /// the largest head and request line, to say which one Pingora refused.
    pub fn new(
        inner: Stream,
        phase: Arc<ConnPhase>,
        head_timeout: Duration,
        limits: (usize, usize),
        on_refusal: OnRefusal,
    ) -> Self {
        let (max_head_bytes, max_line_bytes) = limits;
        GuardedStream {
            inner,
            seen: phase.get(),
            phase,
            head_timeout,
            max_head_bytes,
            max_line_bytes,
            line_bytes: 0,
            head_bytes: 0,
            head_lines: 0,
            deadline: Some(Box::pin(tokio::time::sleep(head_timeout))),
            refusal: None,
            on_refusal,
        }
    }

    fn in_head(&self) -> bool {
        self.seen % 2 == 1
    }

    /// Catch up with the phase: a new head starts its count (its deadline runs from its first
    /// byte: the wait before it is keep-alive idleness, Pingora's to bound); a head done drops
    /// the deadline.
    fn sync_phase(&mut self) {
        let now = self.phase.get();
        if now != self.seen {
            self.seen = now;
            self.head_bytes = 0;
            self.head_lines = 0;
            self.line_bytes = 0;
            self.deadline = None;
        }
    }

    fn refuse(&mut self, error: ApiError) {
        (self.on_refusal)(error.code);
        self.refusal = Some((error.raw_http1(), 0));
    }

    /// Write the refusal out; ready once it is written and flushed.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some((bytes, at)) = &mut self.refusal {
            while *at < bytes.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *at += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// The JSON refusal standing in for Pingora's bare one (`head` is its status line).
    fn json_for(&self, head: &[u8]) -> ApiError {
        if head.starts_with(b"HTTP/1.1 405") || head.starts_with(b"HTTP/1.0 405") {
            return ApiError::new(ErrorCode::MethodNotSupported, "This method is not supported.");
        }
        if self.line_bytes > self.max_line_bytes {
            return ApiError::new(
                ErrorCode::UriTooLong,
                format!("The request line is too long (at most {} bytes).", self.max_line_bytes),
            );
        }
        if self.head_bytes > self.max_head_bytes || self.head_lines > PINGORA_MAX_HEADERS {
            return ApiError::new(
                ErrorCode::HeadersTooLarge,
                format!(
                    "The request head is too large (at most {} bytes and {} header lines).",
                    self.max_head_bytes, PINGORA_MAX_HEADERS
                ),
            );
        }
        ApiError::new(ErrorCode::InvalidRequestHead, "The request head is not valid HTTP/1.1.")
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "request head deadline passed")
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return match this.poll_refusal(cx) {
                Poll::Ready(_) => Poll::Ready(Err(timed_out())),
                Poll::Pending => Poll::Pending,
            };
        }
        this.sync_phase();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.in_head() {
                    let new = &buf.filled()[before..];
                    if this.head_bytes == 0 && !new.is_empty() && this.deadline.is_none() {
                        this.deadline = Some(Box::pin(tokio::time::sleep(this.head_timeout)));
                    }
                    if this.head_lines == 0 {
                        this.line_bytes += memchr::memchr(b'\n', new).unwrap_or(new.len());
                    }
                    this.head_bytes += new.len();
                    this.head_lines += memchr::memchr_iter(b'\n', new).count();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this.in_head() && this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.deadline = None;
                if this.head_bytes == 0 {
                    // Connected and said nothing: close quietly.
                    return Poll::Ready(Ok(()));
                }
                this.refuse(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "The request head did not arrive within {} seconds.",
                        this.head_timeout.as_secs_f64()
                    ),
                ));
                match this.poll_refusal(cx) {
                    Poll::Ready(_) => Poll::Ready(Err(timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.sync_phase();
        if this.refusal.is_none() && this.in_head() {
            // Nothing is written while a head is read but Pingora's own refusal of it.
            let error = this.json_for(buf);
            this.refuse(error);
        }
        if this.refusal.is_some() {
            return match this.poll_refusal(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.sync_phase();
        if this.refusal.is_some() || this.in_head() {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            return match Pin::new(this).poll_write(cx, first) {
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
                other => other,
            };
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        if self.refusal.is_some() {
            let _ = std::future::poll_fn(|cx| self.poll_refusal(cx)).await;
        }
        pingora::protocols::Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
