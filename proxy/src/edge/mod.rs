//! The edge: what a client connection goes through before the gateway sees a request.
//!
//! Pingora accepts connections and reads requests; [`EdgeApp`] wraps the gateway's Pingora
//! application to bound what a client may cost before it has sent a request:
//! - connections per client address are capped ([`peers`]; trusted proxies are not counted);
//! - HTTP/2 (ALPN `h2`, or the h2c preface when enabled) goes to Pingora's own handling;
//! - each HTTP/1.1 connection runs its requests one after another, pipelined ones included, over
//!   a [`GuardedStream`](stream::GuardedStream) that gives every request head a total deadline
//!   and turns Pingora's bare refusals of a head into OpenAI-shaped JSON errors; an idle
//!   keep-alive connection is closed sooner than an active one waits.
//!
//! Limits on a parsed head (header count and size, request-target length) are the first stage's
//! ([`pipeline::head`](crate::pipeline::head)); the body's deadline and rate are the body read's.

pub mod peers;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use self::peers::PeerCounts;
use self::stream::{ConnPhase, GuardedStream, OnRefusal};
use crate::error::{ApiError, ErrorCode};
use crate::live::LiveCell;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The edge's limits (CLI flags).
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// A request head must arrive whole within this, from its first byte (from the accept for
    /// a connection's first request).
    pub head_timeout: Duration,
    /// Largest request head, in bytes (also checked on the parsed head).
    pub max_head_bytes: usize,
    /// Longest request line, in bytes (also checked on the parsed head).
    pub max_line_bytes: usize,
    /// How long an idle keep-alive connection is kept, in seconds.
    pub keepalive_idle_secs: u64,
    /// Requests served on one connection before it is closed (`None`: no limit).
    pub keepalive_requests: Option<u32>,
    /// Connections open at once from one client address (0: no cap).
    pub max_conns_per_ip: u32,
    /// Accept HTTP/2 without TLS (prior knowledge).
    pub h2c: bool,
}

/// The gateway's Pingora application, behind the edge's limits.
pub struct EdgeApp<A> {
    app: Arc<A>,
    opts: EdgeOptions,
    peers: Arc<PeerCounts>,
    live: Arc<LiveCell>,
    on_refusal: OnRefusal,
}

impl<A> EdgeApp<A> {
    /// `on_refusal` is told of every refusal the edge writes (for metrics).
    pub fn new(app: A, opts: EdgeOptions, live: Arc<LiveCell>, on_refusal: OnRefusal) -> Self {
        EdgeApp {
            app: Arc::new(app),
            opts,
            peers: Arc::new(PeerCounts::default()),
            live,
            on_refusal,
        }
    }
}

#[async_trait]
impl<A> ServerApp for EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _permit = match peer {
            Some(ip) if self.opts.max_conns_per_ip > 0 && !self.live.load().trusted_proxies.trusts(ip) => {
                match self.peers.admit(ip, self.opts.max_conns_per_ip) {
                    Some(permit) => Some(permit),
                    None => {
                        let error = ApiError::new(
                            ErrorCode::TooManyConnections,
                            format!(
                                "Too many connections from your address (at most {} at once).",
                                self.opts.max_conns_per_ip
                            ),
                        );
                        (self.on_refusal)(error.code);
                        refuse_raw(stream, &error).await;
                        return None;
                    }
                }
            }
            _ => None,
        };
        if self.is_h2(&mut stream).await {
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        self.serve_http1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

impl<A> EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Whether the connection speaks HTTP/2: negotiated by ALPN, or (h2c) its preface.
    async fn is_h2(&self, stream: &mut Stream) -> bool {
        if stream.get_ssl_digest().is_some() {
            return matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        }
        if !self.opts.h2c {
            return false;
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        matches!(stream.try_peek(&mut buf).await, Ok(true)) && buf == H2_PREFACE
    }

    /// One HTTP/1.1 connection: its requests in order until it closes.
    async fn serve_http1(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<()> {
        let phase = ConnPhase::new();
        let guarded = GuardedStream::new(
            stream,
            phase.clone(),
            self.opts.head_timeout,
            (self.opts.max_head_bytes, self.opts.max_line_bytes),
            self.on_refusal.clone(),
        );
        let mut stream: Stream = Box::new(guarded);
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => session.set_keepalive_reuses_remaining(self.opts.keepalive_requests),
            }
            // The wait for a request on an open connection (not the first: that one has the
            // head deadline from the accept) is keep-alive idleness.
            let idle = if *shutdown.borrow() {
                None
            } else {
                Some(self.opts.keepalive_idle_secs.max(1))
            };
            session.set_keepalive(idle);
            session.set_pipelining_enabled(true);
            // The gateway marks the head read (`Gateway::on_connection_reuse`).
            session.set_connection_user_context(Some(Box::new(phase.clone())));
            if !first {
                phase.arm();
            }
            first = false;
            let reused = self.app.process_new_http(session, shutdown).await?;
            let (next, persistent) = reused.consume();
            stream = next;
            settings = persistent;
        }
    }
}

/// Answer `error` on a connection no HTTP session was made for, and close it.
async fn refuse_raw(mut stream: Stream, error: &ApiError) {
    use tokio::io::AsyncWriteExt;
    if stream.get_ssl_digest().is_some() && matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
        // Not HTTP/1.1: closing is the answer.
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&error.raw_http1()).await;
        let _ = stream.flush().await;
    })
    .await;
    pingora::protocols::Shutdown::shutdown(&mut *stream).await;
}
