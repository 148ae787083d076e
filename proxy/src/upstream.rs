//! Talking to a provider: one attempt = a pooled connection, the request, the response header.
//!
//! The gateway forwards every body through this path, whatever its size: Pingora's own proxy
//! loop can only replay a request body of up to 64 KiB on retry, and LLM requests are larger.
//! Here the body is a `Bytes` held by the request, so any attempt (retry, fallback to another
//! target) re-sends it whole. Connections come from Pingora's keep-alive pool and go back to it
//! when a response was read to its end.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::config::{Provider, Target};
use crate::error::ApiError;

/// Process-wide upstream settings (CLI flags).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the response header and between two body reads.
    pub read_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
}

/// Why an attempt failed before a response header arrived.
#[derive(Debug)]
pub enum AttemptError {
    /// Could not connect, or the connection broke before the header: 502, try the next target.
    Unreachable(String),
    /// Connecting or waiting for the header took too long: 504, try the next target.
    Timeout(String),
}

impl AttemptError {
    pub fn to_api_error(&self) -> ApiError {
        match self {
            AttemptError::Unreachable(m) => ApiError::bad_gateway(m.clone()),
            AttemptError::Timeout(m) => ApiError::gateway_timeout(m.clone()),
        }
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            AttemptError::Unreachable(_) => "unreachable",
            AttemptError::Timeout(_) => "timeout",
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

/// The request header sent to `target` for a client request.
pub fn request_header(
    client: &RequestHeader,
    target: &Target,
    path_and_query: &str,
    body_len: usize,
    request_id: &str,
) -> pingora::Result<RequestHeader> {
    let provider = &target.provider;
    // Built from a plain header map: no case-preserving copy of each name, no re-parse of each
    // name on insertion (upstreams, like every HTTP/1 server, ignore the case of names).
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = client.method.clone();
    parts.uri = http::Uri::try_from(provider.upstream_path(path_and_query))
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "building the upstream path", e))?;
    let mut headers = http::HeaderMap::with_capacity(client.headers.len() + 4);
    for (name, value) in client.headers.iter() {
        if DROPPED_REQUEST_HEADERS.contains(&name.as_str()) || name.as_str() == "x-request-id" {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(header::HOST, provider.host_header.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    if let Some(auth) = &provider.auth {
        headers.insert(header::AUTHORIZATION, auth.expose().clone());
    }
    parts.headers = headers;
    Ok(RequestHeader::from(parts))
}

/// Send the request and wait for the response header. A stale pooled connection (closed by the
/// provider while idle) is retried once on a fresh one before the attempt counts as failed.
pub async fn send(
    connector: &Connector,
    peer: &HttpPeer,
    req: &RequestHeader,
    body: &Bytes,
) -> Result<HttpSession, AttemptError> {
    let mut retried_stale = false;
    loop {
        let (mut session, reused) = connector
            .get_http_session(peer)
            .await
            .map_err(|e| classify(&e, "connecting"))?;
        // Pingora's connector does not apply the peer's timeouts to the HTTP session itself.
        session.set_read_timeout(peer.options.read_timeout);
        session.set_write_timeout(peer.options.read_timeout);
        match exchange(&mut session, req, body).await {
            Ok(()) => return Ok(session),
            Err(e) if reused && !retried_stale && !is_timeout(&e) => {
                retried_stale = true;
                tracing::debug!(error = %e, "pooled upstream connection was stale; retrying on a new one");
            }
            Err(e) => return Err(classify(&e, "waiting for the response")),
        }
    }
}

async fn exchange(session: &mut HttpSession, req: &RequestHeader, body: &Bytes) -> pingora::Result<()> {
    // Pingora flushes the request header before the body: two sends, and on loopback or a LAN
    // each send is the expensive part of a small request. Corked, the header waits for the body
    // and both leave as one segment when the cork comes off.
    let fd = session.stream().map(|s| s.id());
    cork(fd, true);
    let sent = write_request(session, req, body).await;
    cork(fd, false);
    sent?;
    session.read_response_header().await?;
    Ok(())
}

async fn write_request(session: &mut HttpSession, req: &RequestHeader, body: &Bytes) -> pingora::Result<()> {
    session.write_request_header(Box::new(req.clone())).await?;
    session.write_request_body(body.clone(), true).await?;
    session.finish_request_body().await?;
    Ok(())
}

/// Set or clear `TCP_CORK` on the connection's socket (Linux). Best effort: a failure only
/// costs the extra send.
fn cork(fd: Option<i32>, on: bool) {
    #[cfg(target_os = "linux")]
    if let Some(fd) = fd {
        let value: libc::c_int = on.into();
        // SAFETY: `fd` is the socket of a connection the caller holds open for the duration of
        // this call, and the option value points to a live c_int of the size passed. The call
        // cannot touch memory beyond it. Exercised by every test that sends a request upstream.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, on);
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

fn classify(e: &Error, during: &str) -> AttemptError {
    // Error text from Pingora names the address and the cause, never a header value.
    let msg = format!("upstream failed while {during}: {}", e.etype().as_str());
    if is_timeout(e) {
        AttemptError::Timeout(msg)
    } else {
        AttemptError::Unreachable(msg)
    }
}

/// Give a session whose response was read to its end back to the pool; drop it otherwise.
pub async fn release(connector: &Connector, peer: &HttpPeer, mut session: HttpSession, idle: Duration) {
    if session.response_done() {
        connector.release_http_session(session, peer, Some(idle)).await;
    } else {
        session.shutdown().await;
    }
}
