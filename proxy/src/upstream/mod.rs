//! Talking to a provider: one attempt = a pooled connection, the request, the response header.
//!
//! The gateway forwards every body through this path, whatever its size: Pingora's own proxy
//! loop can only replay a request body of up to 64 KiB on retry, and LLM requests are larger.
//! Here the body is a `Bytes` held by the request, so any attempt (retry, fallback to another
//! target) re-sends it whole. New connections come from Pingora's connector; idle ones wait in
//! the gateway's own [`pool`] (see there for why); responses are read by [`response`].

mod framing;
pub mod moderation;
mod pool;
pub mod probe;
mod response;

pub use pool::Pool;
pub use response::Response;

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use tokio::io::AsyncWriteExt;

use crate::config::{Provider, Target};
use crate::pipeline::attempts::UpstreamError;

/// Process-wide upstream settings (CLI flags).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the response header and between two body reads.
    pub read_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Longest time for a whole request, attempts and body (`None`: no limit).
    pub total_timeout: Option<Duration>,
}

/// How the gateway reaches providers: new connections, and idle ones kept for reuse.
pub struct Connections {
    pub connector: Connector,
    pub pool: Pool,
}

impl Connections {
    /// Up to `size` idle connections kept per peer, each for `idle_timeout`.
    pub fn new(size: usize, idle_timeout: Duration) -> Connections {
        Connections {
            connector: Connector::new(Some(pingora::connectors::ConnectorOptions::new(size))),
            pool: Pool::new(size, idle_timeout),
        }
    }
}

/// The peer to reach `provider`.
pub fn peer(provider: &Provider, opts: &UpstreamOptions) -> HttpPeer {
    let mut peer = HttpPeer::new(provider.addr, provider.tls, provider.host.clone());
    peer.options.connection_timeout = Some(opts.connect_timeout);
    peer.options.total_connection_timeout = Some(opts.connect_timeout);
    peer.options.read_timeout = Some(opts.read_timeout);
    peer.options.idle_timeout = Some(opts.idle_timeout);
    if let Some(ca) = &provider.ca {
        peer.options.ca = Some(ca.clone());
    }
    peer
}

/// Headers never forwarded from the client: hop-by-hop ones, the client's own credentials (the
/// provider's key is injected instead), and those the gateway sets itself.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "api-key",
    "accept-encoding",
    "expect",
    "cookie",
];

/// The request head (request line and headers, up to the blank line) sent to `target` for a
/// client request, ready for the wire. Written straight from the client's parsed header: the
/// head and the body then leave in one write.
pub fn request_head(
    client: &RequestHeader,
    target: &Target,
    path_and_query: &str,
    body_len: usize,
    request_id: &str,
    traceparent: Option<&str>,
) -> pingora::Result<BytesMut> {
    let provider = &target.provider;
    let path = provider.upstream_path(path_and_query);
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Error::e_explain(
            ErrorType::InvalidHTTPHeader,
            "the upstream path has bytes a request line cannot carry",
        );
    }
    let mut head = BytesMut::with_capacity(256 + path.len() + client.headers.len() * 48);
    head.extend_from_slice(client.method.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    // Values of an `http::HeaderValue` never hold CR, LF or NUL, so each line stays one line.
    let mut line = |name: &[u8], value: &[u8]| {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    line(b"host", provider.host_header.as_bytes());
    line(b"content-length", itoa::Buffer::new().format(body_len).as_bytes());
    if request_id.bytes().all(|b| b.is_ascii_graphic()) {
        line(b"x-request-id", request_id.as_bytes());
    }
    if let Some(auth) = &provider.auth {
        line(b"authorization", auth.expose().as_bytes());
    }
    // A traced request's attempt is the provider's parent; otherwise the client's header, if
    // any, passes through with the others.
    if let Some(t) = traceparent {
        line(b"traceparent", t.as_bytes());
    }
    for (name, value) in client.headers.iter() {
        if DROPPED_REQUEST_HEADERS.contains(&name.as_str())
            || name.as_str() == "x-request-id"
            || (traceparent.is_some() && name.as_str() == "traceparent")
        {
            continue;
        }
        line(name.as_str().as_bytes(), value.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// Send the request and wait for the response header. A pooled connection the provider closed
/// while it idled is retried once on a fresh one before the attempt counts as failed.
pub async fn send(conns: &Connections, peer: &HttpPeer, head: &[u8], body: &Bytes) -> Result<Response, UpstreamError> {
    let key = peer.reuse_hash();
    let mut retried_stale = false;
    loop {
        let pooled = if retried_stale { None } else { conns.pool.take(key) };
        let reused = pooled.is_some();
        let stream = match pooled {
            Some(s) => s,
            // Boxed: Pingora's connect future is ~9 KB, and inline it would make every
            // request's future that large (and copied as a whole into its box), while most
            // requests reuse a pooled connection and never connect.
            None => Box::pin(connect(&conns.connector, peer)).await?,
        };
        match exchange(stream, peer, head, body).await {
            Ok(response) => return Ok(response),
            Err(e) if reused && !is_timeout(&e) => {
                retried_stale = true;
                tracing::debug!(error = %e, "pooled upstream connection was stale; retrying on a new one");
            }
            Err(e) => return Err(classify(&e, "waiting for the response")),
        }
    }
}

/// A new connection (TCP, and TLS for https providers) from Pingora's connector.
async fn connect(connector: &Connector, peer: &HttpPeer) -> Result<Stream, UpstreamError> {
    let (session, _) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| classify(&e, "connecting"))?;
    match session {
        HttpSession::H1(h1) => Ok(h1.into_inner()),
        _ => Err(UpstreamError::Unreachable(
            "upstream failed while connecting: the provider answered with HTTP/2, which the gateway does not speak upstream".into(),
        )),
    }
}

async fn exchange(mut stream: Stream, peer: &HttpPeer, head: &[u8], body: &Bytes) -> pingora::Result<Response> {
    let io_timeout = peer.options.read_timeout.unwrap_or(Duration::MAX);
    let mut request = head.chain(&body[..]);
    let written = async {
        stream.write_all_buf(&mut request).await?;
        stream.flush().await
    };
    match tokio::time::timeout(io_timeout, written).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::because(ErrorType::WriteError, "writing the request", e)),
        Err(_) => return Error::e_explain(ErrorType::WriteTimedout, "writing the request"),
    }
    Response::read(stream, io_timeout).await
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

fn classify(e: &Error, during: &str) -> UpstreamError {
    // Only the error's kind goes into the message: never an address detail or a header value.
    let msg = format!("upstream failed while {during}: {}", e.etype().as_str());
    if is_timeout(e) {
        UpstreamError::Timeout(msg)
    } else {
        UpstreamError::Unreachable(msg)
    }
}

/// A connected pair over loopback, for tests: the gateway's side as a Pingora stream, and the
/// provider's side.
#[cfg(test)]
async fn loopback_pair() -> (Stream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let client: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(client.unwrap()));
    (client, server.unwrap().0)
}

/// The head of a JSON `POST` the gateway makes itself (a moderation check, a search planner's
/// call) to `endpoint`'s path prefix followed by `path`: `Host`, the body's type and length, the
/// endpoint's key, and the request id when it is plain.
pub fn post_json_head(endpoint: &Provider, path: &str, body_len: usize, request_id: &str) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"POST ");
    if endpoint.path_prefix.is_empty() && path.is_empty() {
        head.push(b'/');
    }
    head.extend_from_slice(endpoint.path_prefix.as_bytes());
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(endpoint.host_header.as_bytes());
    head.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    head.extend_from_slice(b"\r\n");
    if request_id.bytes().all(|b| b.is_ascii_graphic()) {
        head.extend_from_slice(b"x-request-id: ");
        head.extend_from_slice(request_id.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(auth) = &endpoint.auth {
        head.extend_from_slice(b"authorization: ");
        head.extend_from_slice(auth.expose().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Why a whole answer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeError {
    /// Longer than allowed (the connection is dropped).
    TooLarge,
    /// No byte came within the read timeout.
    TimedOut,
    /// The connection failed while reading: the error's kind.
    Broke(&'static str),
}

/// Read a small answer (a service's JSON, a page) to its end, at most `max` bytes: its status
/// and body; the connection goes back to the pool when the answer allows it.
pub async fn read_whole(
    conns: &Connections,
    peer: &HttpPeer,
    mut up: Response,
    max: usize,
) -> Result<(http::StatusCode, Bytes), WholeError> {
    let status = up.status();
    let mut answer = BytesMut::new();
    while let Some(chunk) = up.read_body().await.map_err(|e| {
        if is_timeout(&e) {
            WholeError::TimedOut
        } else {
            WholeError::Broke(e.etype().as_str())
        }
    })? {
        if answer.len() + chunk.len() > max {
            return Err(WholeError::TooLarge);
        }
        answer.extend_from_slice(&chunk);
    }
    release(conns, peer, up);
    Ok((status, answer.freeze()))
}

/// Park a connection whose response was read to its end for the next request, if the response
/// allows it (keep-alive, nothing past the body); close it otherwise.
pub fn release(conns: &Connections, peer: &HttpPeer, response: Response) {
    if let Some(stream) = response.into_reusable() {
        conns.pool.put(peer.reuse_hash(), stream);
    }
}
