//! Relaying a provider's response to the client, chunk by chunk.
//!
//! Each upstream chunk goes out as soon as it arrives, so time to first token is preserved; but
//! chunks that are *already* buffered when one arrives (a provider flushing a burst of events)
//! are taken at once without waiting and written downstream in one write, so a burst costs one
//! send instead of one per event. [`Response::read_body`] is cancel-safe (what a dropped read
//! got stays in its buffer), which is what makes the non-waiting poll sound.
//!
//! The response header waits for the first batch: when that batch already ends the body (a JSON
//! answer, or a stream the provider flushed at once), the client gets it with `Content-Length`,
//! header and body in a single write; otherwise the header goes out with the first chunk and the
//! rest follows chunked, as it arrives.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::Error;

use super::{respond, Call, GatewayState};
use crate::context::{Outcome, RequestCtx};
use crate::pipeline::admit::Settlement;
use crate::pipeline::response::{concat, CountCompletion, Learnt, ResponseChain};
use crate::pipeline::safety::output::OutputGuard;
use crate::telemetry::conversation::LoggedAnswer;
use crate::upstream::{self, moderation, Response};

/// Most bytes gathered from already-buffered chunks into one downstream write.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Set by the gateway, whatever the provider says.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The SSE event a client gets when the upstream dies mid-stream, before the connection is cut.
const CUT_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The upstream connection failed mid-stream.\",\"type\":\"upstream_error\",\"code\":\"upstream_cut\"}}\n\n";

/// The same when the upstream went silent past the idle timeout (or the request's total
/// timeout passed).
const TIMEOUT_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The upstream stopped sending within the time allowed; the answer is incomplete.\",\"type\":\"upstream_error\",\"code\":\"upstream_timeout\"}}\n\n";

/// The client's response header: the provider's (hop-by-hop fields were dropped when it was
/// read), less those the gateway sets, plus the gateway's own.
fn downstream_header(status: StatusCode, mut headers: HeaderMap, is_sse: bool, ctx: &RequestCtx) -> ResponseHeader {
    headers.remove(X_REQUEST_ID);
    if is_sse {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    // Room for the gateway's headers (request id, model, attempts, transfer-encoding).
    headers.reserve(4 + ctx.answer.rate_headers.len());
    respond::add_gateway_headers(&mut headers, ctx);
    if !headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
    }
    respond::header(status, headers)
}

/// The body path of one answer: the response chain, and what it gives to send downstream.
struct BodySink {
    chain: ResponseChain,
    out: Vec<Bytes>,
}

impl BodySink {
    fn push(&mut self, chunk: Bytes) {
        self.chain.push(chunk, &mut self.out);
    }

    /// The body ended, or the client left (then what was generated so far is counted): what
    /// the chain learnt goes into the request's record.
    fn finish(&mut self, ctx: &mut RequestCtx) {
        let Learnt { usage, completion } = self.chain.finish(&mut self.out);
        ctx.answer.usage = usage;
        ctx.answer.completion_counted = completion;
        ctx.guard.events.extend(self.chain.take_guard_events());
    }

    /// Everything pending as one buffer (no copy when it is a single piece).
    fn take_out(&mut self) -> Option<Bytes> {
        self.out.retain(|b| !b.is_empty());
        match self.out.len() {
            0 => None,
            1 => self.out.pop(),
            _ => {
                let whole = concat(&self.out);
                self.out.clear();
                Some(whole)
            }
        }
    }
}

/// How a relay ended, when it did not fail with the client connection.
pub enum Relayed {
    /// The response went to the client (complete, or cut with an in-band error).
    Done,
    /// The upstream broke after its header and before any byte reached the client; the
    /// caller may try the next target.
    BrokeBeforeBody(String),
}

/// Poll a future once without waiting; `None` if it is not ready.
fn poll_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Stream the upstream response to the client, through the output guard when one applies.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the relay's inputs, spelled out"
)]
pub async fn relay(
    state: &GatewayState,
    peer: &HttpPeer,
    mut up: Response,
    strip_usage_event: bool,
    count: CountCompletion,
    guard: Option<OutputGuard>,
    deadline: Option<tokio::time::Instant>,
    session: &mut Session,
    call: &mut Call,
) -> pingora::Result<Relayed> {
    let status = up.status();
    let is_sse = up
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut sink = BodySink {
        chain: ResponseChain::new(is_sse, status.is_success(), strip_usage_event, count),
        out: Vec::with_capacity(8),
    };
    if call.cache_pending.is_some() && status.is_success() {
        sink.chain.keep_for_cache();
    }
    if let (Some(guard), true) = (guard, status.is_success()) {
        sink.chain.guard_output(guard);
    }
    if let (Some(list), true) = (&call.references, status.is_success()) {
        sink.chain.add_references(list.clone());
    }
    if status.is_success() && call.ctx.logs_answers() {
        call.ctx.answer.logged = Some(Box::new(LoggedAnswer::new(is_sse)));
    }
    let header = Box::new(downstream_header(status, up.take_headers(), is_sse, &call.ctx));
    call.ctx.answer.status = status.as_u16();
    let result = relay_body(state, peer, up, &mut sink, header, is_sse, deadline, session, call).await;
    if result.is_err() {
        // The client left, or the upstream broke mid-body: what was generated still counts.
        sink.finish(&mut call.ctx);
    }
    result
}

/// Move the body from upstream to the client until it ends. The request's ledger is settled as
/// soon as the body has ended, before the client sees the end (a client that sends its next
/// request at once meets the limits as they now are).
#[allow(clippy::too_many_arguments, reason = "one call site; the relay's state, spelled out")]
async fn relay_body(
    state: &GatewayState,
    peer: &HttpPeer,
    mut up: Response,
    sink: &mut BodySink,
    header: Box<ResponseHeader>,
    is_sse: bool,
    deadline: Option<tokio::time::Instant>,
    session: &mut Session,
    call: &mut Call,
) -> pingora::Result<Relayed> {
    let ctx = &mut call.ctx;
    let mut header = Some(header);
    loop {
        let (ended, failure) = match deadline {
            None => read_burst(&mut up, sink, &mut ctx.answer.waited).await,
            // Cancel-safe: what a dropped read got stays in the response's buffer.
            Some(d) => match tokio::time::timeout_at(d, read_burst(&mut up, sink, &mut ctx.answer.waited)).await {
                Ok(read) => read,
                Err(_) => (
                    false,
                    Some(Error::explain(
                        pingora::ErrorType::ReadTimedout,
                        "the request's total timeout passed",
                    )),
                ),
            },
        };
        if failure.is_none() && sink.chain.moderates() {
            moderate(state, sink, ctx).await;
        }
        // The output guard ended the answer: what the provider still sends is not read.
        let cut_short = sink.chain.blocked();
        let ended = ended || cut_short;
        let failure = failure.filter(|_| !cut_short);
        if ended {
            sink.finish(ctx);
            if sink.chain.moderates() {
                moderate(state, sink, ctx).await;
            }
            let tokens = ctx.tokens_used();
            state
                .admission
                .settle(&mut call.ledger, Settlement::Answered { tokens })
                .await;
            if let (Some(pending), Some(cache)) = (call.cache_pending.take(), state.cache.as_deref()) {
                if let Some(answer) = sink.chain.recorded() {
                    crate::pipeline::cache::record(cache, *pending, answer);
                }
            }
        }
        if let (Some(e), Some(_)) = (&failure, &header) {
            // Nothing has reached the client yet: the attempt failed, another target may serve.
            return Ok(Relayed::BrokeBeforeBody(format!(
                "upstream failed before the body: {}",
                e.etype().as_str()
            )));
        }
        let data = sink.take_out();
        if data.is_none() && !ended && failure.is_none() {
            // Everything so far is held back (a guarded answer): nothing to send yet.
            continue;
        }
        if let Some(h) = header.take() {
            if ended {
                // The whole body came in the first batch (a JSON answer, a burst stream): send it
                // with its length, header and body in one write.
                send_whole(session, ctx, h, data).await?;
                if !cut_short {
                    upstream::release(&state.upstreams, peer, up);
                }
                return Ok(Relayed::Done);
            }
            send_header(session, ctx, h).await?;
        }
        write(session, ctx, data).await?;
        if let Some(e) = failure {
            // What was generated before the break reached the client, and counts.
            sink.finish(ctx);
            return cut(session, ctx, is_sse, e).await.map(|()| Relayed::Done);
        }
        if ended {
            break;
        }
    }
    to_client(ctx, session.write_response_body(None, true).await)?;
    if !sink.chain.blocked() {
        upstream::release(&state.upstreams, peer, up);
    }
    Ok(Relayed::Done)
}

/// Output moderation: ask the services about every window the output guard has ready, one
/// batch (one call per service) at a time; the guard releases or ends the answer on each verdict.
async fn moderate(state: &GatewayState, sink: &mut BodySink, ctx: &mut RequestCtx) {
    while let Some(batch) = sink.chain.moderation_due() {
        let texts: Vec<&str> = batch.texts.iter().map(String::as_str).collect();
        let mut verdicts = Vec::with_capacity(batch.rules.len());
        for rule in &batch.rules {
            verdicts.push(match rule.moderation() {
                Some(service) => {
                    moderation::check(
                        &state.upstreams,
                        &state.upstream,
                        service,
                        &texts,
                        "output",
                        &ctx.request_id,
                    )
                    .await
                }
                None => moderation::Verdict::Clean,
            });
        }
        sink.chain.moderated(&batch, &verdicts, &ctx.request_id, &mut sink.out);
        ctx.guard.events.extend(sink.chain.take_guard_events());
    }
}

/// Wait for the next upstream chunk (the wait added to `waited`), then take every chunk
/// already buffered behind it without waiting. Returns whether the body ended, and the error
/// that broke it, if any.
async fn read_burst(
    up: &mut Response,
    sink: &mut BodySink,
    waited: &mut std::time::Duration,
) -> (bool, Option<Box<Error>>) {
    let asked = std::time::Instant::now();
    let first = up.read_body().await;
    *waited += asked.elapsed();
    let mut taken = match first {
        Ok(Some(c)) => {
            let n = c.len();
            sink.push(c);
            n
        }
        Ok(None) => return (true, None),
        Err(e) => return (false, Some(e)),
    };
    while taken < COALESCE_LIMIT {
        match poll_now(up.read_body()) {
            None => break,
            Some(Ok(Some(c))) => {
                taken += c.len();
                sink.push(c);
            }
            Some(Ok(None)) => return (true, None),
            Some(Err(e)) => return (false, Some(e)),
        }
    }
    (false, None)
}

/// The result of a write to the client; a failure means the client is gone.
fn to_client<T>(ctx: &mut RequestCtx, r: pingora::Result<T>) -> pingora::Result<T> {
    if r.is_err() {
        ctx.answer.outcome = Outcome::ClientGone;
    }
    r
}

async fn send_header(session: &mut Session, ctx: &mut RequestCtx, header: Box<ResponseHeader>) -> pingora::Result<()> {
    to_client(ctx, session.write_response_header(header, false).await)
}

/// A complete body: `Content-Length` instead of chunked framing, one write.
async fn send_whole(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut header: Box<ResponseHeader>,
    data: Option<Bytes>,
) -> pingora::Result<()> {
    let len = data.as_ref().map_or(0, Bytes::len);
    header.remove_header(&http::header::TRANSFER_ENCODING);
    header.insert_header(http::header::CONTENT_LENGTH, len)?;
    send_header(session, ctx, header).await?;
    write(session, ctx, data).await?;
    to_client(ctx, session.write_response_body(None, true).await)?;
    Ok(())
}

async fn write(session: &mut Session, ctx: &mut RequestCtx, data: Option<Bytes>) -> pingora::Result<()> {
    let Some(data) = data else { return Ok(()) };
    if ctx.answer.ttft.is_none() {
        ctx.answer.ttft = Some(ctx.started.elapsed());
    }
    ctx.answer.bytes_out += data.len() as u64;
    if let Some(logged) = &mut ctx.answer.logged {
        logged.push(&data);
    }
    to_client(ctx, session.write_response_body(Some(data), false).await)
}

/// The upstream failed after the response started: tell an SSE client in-band, then return the
/// error so the connection is dropped without a terminating chunk.
async fn cut(session: &mut Session, ctx: &mut RequestCtx, is_sse: bool, e: Box<Error>) -> pingora::Result<()> {
    ctx.answer.outcome = Outcome::UpstreamCut;
    tracing::warn!(request_id = %ctx.request_id, error = %e.etype().as_str(), "upstream failed mid-response; cutting the client's stream");
    if is_sse {
        let event = if matches!(e.etype(), pingora::ErrorType::ReadTimedout) {
            TIMEOUT_EVENT
        } else {
            CUT_EVENT
        };
        let _ = session
            .write_response_body(Some(Bytes::from_static(event)), false)
            .await;
    }
    Err(e)
}
