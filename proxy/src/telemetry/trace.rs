//! OpenTelemetry traces, exported over OTLP/HTTP as JSON.
//!
//! A request is traced when an exporter is configured and the sampler says so: a client's
//! W3C `traceparent` decides for its own trace (parent-based: its `sampled` flag), otherwise the
//! request is sampled with probability `--trace-sample` (`OTEL_TRACES_SAMPLER_ARG`). A traced
//! request holds a [`Trace`]: its root span (the request, kind server, with the GenAI
//! semantic-convention attributes), one span per stage that costs time (authentication, the
//! body, admission by limits and quotas, guardrails, the cache lookup, search) and one per
//! upstream attempt (kind client), whose id goes to the provider in `traceparent`. Untraced
//! requests hold nothing and the client's `traceparent` passes through untouched.
//!
//! At the request's end its spans are rendered and handed to the exporter's bounded queue
//! without waiting: a full queue drops them (counted), and one task on the shared runtime
//! batches and posts them, each post bounded by a timeout, so a slow or dead collector never
//! slows a request.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;

use crate::context::RequestCtx;

/// The span kinds OTLP numbers.
const INTERNAL: u8 = 1;
const SERVER: u8 = 2;
const CLIENT: u8 = 3;

/// A value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// One finished span (the root is written from the request's facts at its end).
#[derive(Debug, Clone)]
struct Span {
    name: String,
    id: [u8; 8],
    kind: u8,
    start: Instant,
    end: Instant,
    attrs: Vec<(&'static str, Value)>,
    error: bool,
}

/// A traced request's trace so far.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: [u8; 16],
    /// The client's span, when it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// The request's own span.
    pub root: [u8; 8],
    /// Unix time and monotonic time of the request's start (span times are offsets from it).
    start_unix_ns: u64,
    start: Instant,
    spans: Vec<Span>,
    /// The stage running now: its name and start.
    stage: Option<(&'static str, Instant)>,
    /// The upstream attempt running now.
    attempt: Option<Span>,
}

/// A `traceparent` header's fields: trace id, parent span id, sampled.
pub fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], bool)> {
    // version "-" trace-id "-" parent-id "-" flags; version 00 has exactly these 55 bytes, later
    // versions may append fields after another "-".
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    if value.len() > 55 && (value[55] != b'-' || &value[..2] == b"00") {
        return None;
    }
    let version = hex::<1>(&value[..2])?;
    if version[0] == 0xff {
        return None;
    }
    let trace = hex::<16>(&value[3..35])?;
    let parent = hex::<8>(&value[36..52])?;
    let flags = hex::<1>(&value[53..55])?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags[0] & 1 == 1))
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// A random id of `N` bytes (at most 16), never all zero.
fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let bytes = rand::random::<u128>().to_le_bytes();
        let id: [u8; N] = std::array::from_fn(|i| bytes[i % 16]);
        if id.iter().any(|&b| b != 0) {
            return id;
        }
    }
}

/// `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    let mut buf = Vec::with_capacity(s.len() + 2);
    crate::json_spans::write_str(&mut buf, s);
    out.push_str(&String::from_utf8_lossy(&buf));
}

impl Trace {
    /// A trace for a request starting at `start` with `headers`, when `sample` (0 to 1) and the
    /// client's `traceparent` say it is traced.
    pub fn begin(headers: &HeaderMap, sample: f64, start: Instant) -> Option<Box<Trace>> {
        let given = headers.get("traceparent").and_then(|v| parse_traceparent(v.as_bytes()));
        let (trace_id, parent) = match given {
            Some((_, _, false)) => return None,
            Some((trace, parent, true)) => (trace, Some(parent)),
            None if sample >= 1.0 || rand::random::<f64>() < sample => (random_id(), None),
            None => return None,
        };
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(start.elapsed());
        Some(Box::new(Trace {
            trace_id,
            parent,
            root: random_id(),
            start_unix_ns: unix.as_nanos() as u64,
            start,
            spans: Vec::new(),
            stage: None,
            attempt: None,
        }))
    }

    /// The stage `name` starts now (the one before, if any, ends).
    pub fn stage(&mut self, name: &'static str) {
        let now = Instant::now();
        self.end_stage_at(now);
        self.stage = Some((name, now));
    }

    /// The running stage, if any, ends now.
    pub fn end_stage(&mut self) {
        self.end_stage_at(Instant::now());
    }

    fn end_stage_at(&mut self, now: Instant) {
        if let Some((name, start)) = self.stage.take() {
            self.spans.push(Span {
                name: name.to_string(),
                id: random_id(),
                kind: INTERNAL,
                start,
                end: now,
                attrs: Vec::new(),
                error: false,
            });
        }
    }

    /// An upstream attempt to `provider`'s `model` starts now: the `traceparent` value to send
    /// with it (its span as the parent).
    pub fn attempt(&mut self, operation: &'static str, provider: &str, model: &str) -> String {
        self.end_stage();
        self.end_attempt(None, None);
        let id = random_id();
        self.attempt = Some(Span {
            name: format!("{operation} {model}"),
            id,
            kind: CLIENT,
            start: Instant::now(),
            end: Instant::now(),
            attrs: vec![
                ("gen_ai.operation.name", Value::Str(operation.to_string())),
                ("gen_ai.provider.name", Value::Str(provider.to_string())),
                ("gen_ai.request.model", Value::Str(model.to_string())),
            ],
            error: false,
        });
        let mut v = String::with_capacity(55);
        v.push_str("00-");
        push_hex(&mut v, &self.trace_id);
        v.push('-');
        push_hex(&mut v, &id);
        v.push_str("-01");
        v
    }

    /// The running attempt ends now; `failure` names why it did not give the answer.
    pub fn end_attempt(&mut self, failure: Option<&'static str>, status: Option<u16>) {
        if let Some(mut span) = self.attempt.take() {
            span.end = Instant::now();
            if let Some(s) = status {
                span.attrs.push(("http.response.status_code", Value::Int(i64::from(s))));
            }
            if let Some(why) = failure {
                span.attrs.push(("error.type", Value::Str(why.to_string())));
                span.error = true;
            }
            self.spans.push(span);
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        self.start_unix_ns + at.saturating_duration_since(self.start).as_nanos() as u64
    }
}

/// The GenAI operation of an endpoint.
pub fn operation(endpoint: Option<crate::api::Endpoint>) -> &'static str {
    use crate::api::Endpoint;
    match endpoint {
        Some(Endpoint::ChatCompletions) => "chat",
        Some(Endpoint::Completions) => "text_completion",
        Some(Endpoint::Embeddings) => "embeddings",
        _ => "http",
    }
}

/// What the exporter counts.
#[derive(Clone)]
pub struct TraceMetrics {
    /// Spans dropped because the export queue was full.
    pub dropped: IntCounter,
    /// Posts to the collector, by result (`ok`, `retried`, `failed`).
    pub exports: IntCounterVec,
}

impl TraceMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = TraceMetrics {
            dropped: IntCounter::new(
                "tollgate_trace_spans_dropped_total",
                "Spans dropped because the trace export queue was full (a slow or dead collector)",
            )?,
            exports: IntCounterVec::new(
                Opts::new(
                    "tollgate_trace_exports_total",
                    "Posts of span batches to the OTLP collector, by result (ok; retried: a transient failure, posted again; failed: the batch dropped)",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.exports.clone()))?;
        Ok(m)
    }
}

/// Where and how traces go (CLI flags and the standard `OTEL_*` variables).
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// `http://host:port/path` of the collector's OTLP/HTTP traces endpoint.
    pub endpoint: String,
    pub service: String,
    pub sample: f64,
    /// Spans waiting for export at most.
    pub queue: usize,
    /// Spans per post at most.
    pub batch: usize,
    pub timeout: Duration,
    /// Posts of a batch after the first when the collector is unreachable, times out or answers
    /// 429, 502, 503 or 504.
    pub retries: u32,
}

/// The exporter's handle: requests hand it their spans.
pub struct Tracer {
    pub sample: f64,
    queue: mpsc::Sender<(usize, String)>,
    metrics: TraceMetrics,
}

impl Tracer {
    /// Start the exporter task on `rt`.
    pub fn start(opts: &TraceOptions, metrics: TraceMetrics, rt: &tokio::runtime::Handle) -> anyhow::Result<Tracer> {
        let endpoint = collector(&opts.endpoint)?;
        // Traces of a few spans each: the queue holds about `queue` spans.
        let (queue, rx) = mpsc::channel((opts.queue / 4).max(1));
        let exporter = Exporter {
            conns: crate::upstream::Connections::new(2, Duration::from_secs(30)),
            upstream: crate::upstream::UpstreamOptions {
                connect_timeout: opts.timeout,
                read_timeout: opts.timeout,
                idle_timeout: Duration::from_secs(30),
                total_timeout: Some(opts.timeout),
            },
            endpoint,
            service: opts.service.clone(),
            batch: opts.batch.max(1),
            timeout: opts.timeout,
            retries: opts.retries,
            metrics: metrics.clone(),
        };
        rt.spawn(exporter.run(rx));
        Ok(Tracer {
            sample: opts.sample.clamp(0.0, 1.0),
            queue,
            metrics,
        })
    }

    /// Render the finished request's spans and queue them; never waits.
    pub fn finish(&self, ctx: &RequestCtx, trace: &mut Trace) {
        trace.end_stage();
        let end = Instant::now();
        if let Some(mut attempt) = trace.attempt.take() {
            attempt.end = end;
            if let Some(u) = ctx.answer_usage() {
                attempt
                    .attrs
                    .push(("gen_ai.usage.input_tokens", Value::Int(u.prompt as i64)));
                attempt
                    .attrs
                    .push(("gen_ai.usage.output_tokens", Value::Int(u.completion as i64)));
            }
            if ctx.answer.status > 0 {
                attempt
                    .attrs
                    .push(("http.response.status_code", Value::Int(i64::from(ctx.answer.status))));
            }
            trace.spans.push(attempt);
        }
        let root = root_span(ctx, trace, end);
        let mut out = String::with_capacity(512 * (trace.spans.len() + 1));
        write_span(&mut out, trace, &root, trace.parent.as_ref());
        for span in &trace.spans {
            out.push(',');
            write_span(&mut out, trace, span, Some(&trace.root));
        }
        let n = trace.spans.len() + 1;
        if self.queue.try_send((n, out)).is_err() {
            self.metrics.dropped.inc_by(n as u64);
        }
    }
}

/// The request's own span, from its facts.
fn root_span(ctx: &RequestCtx, trace: &Trace, end: Instant) -> Span {
    let names = ctx.names();
    let operation = operation(ctx.endpoint);
    let mut attrs = vec![
        ("gen_ai.operation.name", Value::Str(operation.to_string())),
        ("http.response.status_code", Value::Int(i64::from(ctx.answer.status))),
        ("tollgate.request_id", Value::Str(ctx.request_id.clone())),
        ("tollgate.attempts", Value::Int(i64::from(ctx.answer.attempts))),
        ("tollgate.cache", Value::Str(ctx.answer.cache.name().to_string())),
        ("gen_ai.request.stream", Value::Bool(ctx.prompt.stream)),
    ];
    if !names.asked.is_empty() {
        attrs.push(("gen_ai.request.model", Value::Str(names.asked.to_string())));
    }
    if !names.used.is_empty() {
        attrs.push(("gen_ai.response.model", Value::Str(names.used.to_string())));
        attrs.push(("gen_ai.provider.name", Value::Str(names.provider.to_string())));
    }
    if !names.consumer.is_empty() {
        attrs.push(("tollgate.consumer", Value::Str(names.consumer.to_string())));
    }
    if let Some(u) = ctx.answer_usage() {
        attrs.push(("gen_ai.usage.input_tokens", Value::Int(u.prompt as i64)));
        attrs.push(("gen_ai.usage.output_tokens", Value::Int(u.completion as i64)));
    }
    if let Some(code) = ctx.answer.error {
        attrs.push(("error.type", Value::Str(code.as_str().to_string())));
    }
    let name = if names.asked.is_empty() {
        operation.to_string()
    } else {
        format!("{operation} {}", names.asked)
    };
    Span {
        name,
        id: trace.root,
        kind: SERVER,
        start: trace.start,
        end,
        attrs,
        error: ctx.answer.status >= 500 || ctx.answer.status == 0,
    }
}

/// One span as OTLP/JSON (ids in hex, times as decimal strings).
fn write_span(out: &mut String, trace: &Trace, span: &Span, parent: Option<&[u8; 8]>) {
    out.push_str("{\"traceId\":\"");
    push_hex(out, &trace.trace_id);
    out.push_str("\",\"spanId\":\"");
    push_hex(out, &span.id);
    out.push('"');
    if let Some(p) = parent {
        out.push_str(",\"parentSpanId\":\"");
        push_hex(out, p);
        out.push('"');
    }
    out.push_str(",\"name\":");
    push_json_str(out, &span.name);
    let _ = write!(
        out,
        ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
        span.kind,
        trace.ns(span.start),
        trace.ns(span.end)
    );
    for (i, (key, value)) in span.attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"key\":\"{key}\",\"value\":");
        match value {
            Value::Str(s) => {
                out.push_str("{\"stringValue\":");
                push_json_str(out, s);
                out.push('}');
            }
            Value::Int(n) => {
                let _ = write!(out, "{{\"intValue\":\"{n}\"}}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{{\"boolValue\":{b}}}");
            }
        }
        out.push('}');
    }
    // Status: 2 is an error; unset otherwise.
    out.push_str(if span.error {
        "],\"status\":{\"code\":2}}"
    } else {
        "],\"status\":{}}"
    });
}

/// The collector as the gateway reaches any HTTP service (providers, moderation, engines):
/// `http://` or `https://` (system CAs), the host resolved now.
fn collector(url: &str) -> anyhow::Result<crate::config::Provider> {
    let raw = crate::config::raw::RawProvider {
        index: 0,
        name: toml::Spanned::new(0..0, "otlp".to_string()),
        kind: crate::config::raw::ProviderKind::Openai,
        base_url: toml::Spanned::new(0..0, url.to_string()),
        api_key: None,
        ca_file: None,
    };
    let mut problems = crate::config::problems::Problems::new("");
    match crate::config::providers::compile_as(&raw, "the OTLP endpoint", "url", None, &mut problems) {
        Some(endpoint) if problems.is_empty() => Ok(endpoint),
        _ => anyhow::bail!("the OTLP endpoint `{url}`: {}", problems.into_vec().join("; ")),
    }
}

struct Exporter {
    conns: crate::upstream::Connections,
    upstream: crate::upstream::UpstreamOptions,
    endpoint: crate::config::Provider,
    service: String,
    batch: usize,
    timeout: Duration,
    retries: u32,
    metrics: TraceMetrics,
}

/// Why a post failed, and whether it may be posted again (and after how long, if the collector
/// said).
#[derive(Debug)]
struct PostError {
    why: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// First wait before a batch is posted again (doubling after each try).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Longest wait before a batch is posted again, whatever the collector asks.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Exporter {
    /// Take traces off the queue and post them in batches (a batch is posted when it is full,
    /// or a second after its first trace), until the gateway exits.
    async fn run(self, mut rx: mpsc::Receiver<(usize, String)>) {
        let mut batch: Vec<String> = Vec::new();
        let mut spans = 0usize;
        loop {
            let first = match rx.recv().await {
                Some(t) => t,
                None => return,
            };
            spans += first.0;
            batch.push(first.1);
            let due = tokio::time::Instant::now() + Duration::from_secs(1);
            while spans < self.batch {
                match tokio::time::timeout_at(due, rx.recv()).await {
                    Ok(Some((n, t))) => {
                        spans += n;
                        batch.push(t);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let body = bytes::Bytes::from(self.body(&batch));
            self.export(&body).await;
            batch.clear();
            spans = 0;
        }
    }

    fn body(&self, traces: &[String]) -> String {
        let mut out = String::with_capacity(256 + traces.iter().map(String::len).sum::<usize>());
        out.push_str(
            "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":",
        );
        out.push_str(&serde_json::Value::String(self.service.clone()).to_string());
        out.push_str("}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"tollgate\",\"version\":\"");
        out.push_str(env!("CARGO_PKG_VERSION"));
        out.push_str("\"},\"spans\":[");
        out.push_str(&traces.join(","));
        out.push_str("]}]}]}");
        out
    }

    /// Post one batch; as OTLP asks of exporters, a transient failure (unreachable, timed out,
    /// 429, 502, 503, 504) is posted again after a backoff (the collector's `Retry-After` when it
    /// sends one, at most [`MAX_BACKOFF`]), up to `retries` times. Meanwhile requests go on
    /// queueing their spans (and dropping them, counted, once the queue is full).
    async fn export(&self, body: &bytes::Bytes) {
        let mut backoff = FIRST_BACKOFF;
        for tried in 0..=self.retries {
            let failure = match tokio::time::timeout(self.timeout, self.post(body)).await {
                Ok(Ok(())) => {
                    self.metrics.exports.with_label_values(&["ok"]).inc();
                    return;
                }
                Ok(Err(e)) => e,
                Err(_) => PostError {
                    why: format!("no answer within {:?}", self.timeout),
                    retryable: true,
                    retry_after: None,
                },
            };
            if !failure.retryable || tried == self.retries {
                tracing::debug!(error = %failure.why, tries = tried + 1, "trace export failed; batch dropped");
                break;
            }
            self.metrics.exports.with_label_values(&["retried"]).inc();
            tokio::time::sleep(failure.retry_after.unwrap_or(backoff).min(MAX_BACKOFF)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.metrics.exports.with_label_values(&["failed"]).inc();
    }

    /// One POST through the gateway's own HTTP client (pooled connections, TLS).
    async fn post(&self, body: &bytes::Bytes) -> Result<(), PostError> {
        use crate::upstream;
        let transient = |why: String| PostError {
            why,
            retryable: true,
            retry_after: None,
        };
        let head = upstream::post_json_head(&self.endpoint, "", body.len(), "tollgate-trace-export");
        let peer = upstream::peer(&self.endpoint, &self.upstream);
        let up = upstream::send(&self.conns, &peer, &head, body)
            .await
            .map_err(|e| transient(e.outcome().to_string()))?;
        let now_ms = tollgate_limits::clock::Clock::now_ms(&tollgate_limits::clock::SystemClock);
        let retry_after = crate::pipeline::health::retry_after_ms(up.headers(), now_ms).map(Duration::from_millis);
        let (status, _) = upstream::read_whole(&self.conns, &peer, up, 64 * 1024)
            .await
            .map_err(|e| transient(format!("{e:?}")))?;
        if status.is_success() {
            return Ok(());
        }
        Err(PostError {
            why: format!("the collector answered {status}"),
            retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_w3c_defines_it() {
        let v = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, parent, sampled) = parse_traceparent(v).unwrap();
        assert_eq!(trace[0], 0x4b);
        assert_eq!(parent[7], 0xb7);
        assert!(sampled);
        assert!(
            !parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .2
        );
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        // A later version may carry more fields.
        assert!(parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").is_some());
    }

    #[test]
    fn sampling_follows_the_parent_then_the_ratio() {
        let start = Instant::now();
        let mut h = HeaderMap::new();
        assert!(Trace::begin(&h, 0.0, start).is_none());
        assert!(Trace::begin(&h, 1.0, start).is_some());
        h.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = Trace::begin(&h, 0.0, start).unwrap();
        assert_eq!(t.parent.unwrap()[7], 0xb7);
        h.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        assert!(Trace::begin(&h, 1.0, start).is_none());
    }

    #[test]
    fn an_attempt_sends_its_own_span_as_the_parent() {
        let mut t = Trace::begin(&HeaderMap::new(), 1.0, Instant::now()).unwrap();
        t.stage("admission");
        let header = t.attempt("chat", "p", "m");
        let (trace, parent, sampled) = parse_traceparent(header.as_bytes()).unwrap();
        assert_eq!(trace, t.trace_id);
        assert!(sampled);
        assert_eq!(t.spans.len(), 1, "the stage ended when the attempt began");
        t.end_attempt(Some("timeout"), None);
        assert_eq!(t.spans[1].id, parent);
        assert!(t.spans[1].error);
    }
}
