//! A mock OpenAI-compatible upstream that streams like the real thing.
//!
//! Behaviour comes from [`MockConfig`] (the process's flags) and can be overridden per request
//! with `x-mock-*` headers, so one mock serves every test case:
//!
//! | header | meaning |
//! |---|---|
//! | `x-mock-chunks` | content chunks in a stream (and words in a JSON answer) |
//! | `x-mock-ttft-ms` | delay before the first byte of the body |
//! | `x-mock-chunk-delay-ms` | delay between stream chunks |
//! | `x-mock-stall-ms` | delay before the response header ... |
//! | `x-mock-stall-rate` | ... for this fraction of requests in [0, 1] (default 1) |
//! | `x-mock-status` | answer this status (with an OpenAI-style error body) ... |
//! | `x-mock-error-rate` | ... at this rate in [0, 1] (default 1 when a status is given) |
//! | `x-mock-error-code` | the injected error's `code` (`context_length_exceeded` words the message as OpenAI does) |
//! | `x-mock-retry-after` | seconds, sent as `Retry-After` with an injected error |
//! | `x-mock-cut-after` | cut the connection after this many stream chunks |
//! | `x-mock-usage-on-content` | put usage on the last content chunk instead of its own event |
//! | `x-mock-no-usage` | never report usage (as some providers do) |
//! | `x-mock-fragment` | send the stream in pieces of this many bytes, cutting events anywhere |
//! | `x-mock-finish` | the finish reason to report (default `stop`; e.g. `content_filter`, `tool_calls`) |
//! | `x-mock-reply` | the answer's text instead of the mock's words: comma-separated pieces, each percent-encoded UTF-8, one stream chunk each |
//!
//! `POST /v1/moderations` (the OpenAI protocol) and `POST /moderate` (a webhook: `{"texts"}` in,
//! `{"flagged", "categories"}` out) flag a text holding `flag-me` (category `violence`); a text
//! holding `slow-mod` is answered after 2 s, one holding `mod-500` with a 500.
//!
//! Every request is recorded (method, path, headers, body) for tests to inspect.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Defaults for every request; `x-mock-*` headers override them per request.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Name reported in `x-mock-upstream` and in response ids, to tell upstreams apart.
    pub name: String,
    pub chunks: usize,
    pub ttft: Duration,
    pub chunk_delay: Duration,
    pub stall: Duration,
    /// Fraction of requests that stall (the others answer at once).
    pub stall_rate: f64,
    pub error_status: Option<u16>,
    pub error_rate: f64,
    /// The injected error's `code` (default `injected`).
    pub error_code: Option<String>,
    /// `Retry-After` seconds sent with an injected error.
    pub retry_after: Option<u64>,
    /// The first this many requests get the injected error whatever the rate (then the rate).
    pub fail_first: u64,
    pub cut_after: Option<usize>,
    /// Words per content chunk.
    pub words_per_chunk: usize,
    /// Keep at most this many recorded requests (oldest dropped).
    pub record_limit: usize,
    /// The text of every answer instead of the mock's words (as `x-mock-reply`, one piece).
    pub reply: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            name: "mock".into(),
            chunks: 8,
            ttft: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            stall: Duration::ZERO,
            stall_rate: 1.0,
            error_status: None,
            error_rate: 0.0,
            error_code: None,
            retry_after: None,
            fail_first: 0,
            cut_after: None,
            words_per_chunk: 3,
            record_limit: 1000,
            reply: None,
        }
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct State {
    config: MockConfig,
    recorded: Mutex<Vec<Recorded>>,
    served: AtomicU64,
    connections: AtomicU64,
    /// Answers being produced now (a stream until its last event or its reader leaves), and
    /// the most there ever were at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// One answer in the making, counted in [`State::in_flight`] until dropped.
struct InFlight(Arc<State>);

impl InFlight {
    fn start(state: &Arc<State>) -> InFlight {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running mock; dropping it stops accepting connections.
pub struct MockHandle {
    pub addr: SocketAddr,
    state: Arc<State>,
    _stop: watch::Sender<bool>,
}

impl MockHandle {
    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// Answers being produced right now (streams included, until they end or their reader leaves).
    pub fn in_flight(&self) -> u64 {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most answers that were ever in the making at once.
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (to see keep-alive reuse).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// TLS material for serving HTTPS (PEM files).
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Start a mock on `listener` in the current tokio runtime.
pub fn spawn(listener: TcpListener, config: MockConfig, tls: Option<TlsFiles>) -> anyhow::Result<MockHandle> {
    let addr = listener.local_addr()?;
    let acceptor = match tls {
        Some(files) => Some(tls_acceptor(&files)?),
        None => None,
    };
    let state = Arc::new(State {
        config,
        recorded: Mutex::new(Vec::new()),
        served: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
    });
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let accept_state = state.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop_rx.changed() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            accept_state.connections.fetch_add(1, Ordering::Relaxed);
            let state = accept_state.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    Ok(MockHandle {
        addr,
        state,
        _stop: stop_tx,
    })
}

fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut files.cert_pem.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut files.key_pem.as_slice())?
        .ok_or_else(|| anyhow::anyhow!("no private key in PEM"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Per-request behaviour: the config with `x-mock-*` overrides applied.
struct Plan {
    chunks: usize,
    ttft: Duration,
    chunk_delay: Duration,
    stall: Duration,
    stall_rate: f64,
    error_status: Option<u16>,
    error_rate: f64,
    error_code: String,
    retry_after: Option<u64>,
    cut_after: Option<usize>,
    usage_on_content: bool,
    fragment: usize,
    no_usage: bool,
    /// The finish reason reported, letters and `_` only.
    finish: String,
    /// The text to answer, by stream chunk (`x-mock-reply`).
    reply: Option<Vec<String>>,
}

/// `%XX`-decoded UTF-8 (invalid sequences replaced).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn plan(config: &MockConfig, headers: &http::HeaderMap) -> Plan {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
    let ms = |name: &str, default: Duration| num(name).map(Duration::from_millis).unwrap_or(default);
    let error_status = num("x-mock-status").map(|s| s as u16).or(config.error_status);
    let error_rate =
        get("x-mock-error-rate")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(if get("x-mock-status").is_some() {
                1.0
            } else {
                config.error_rate
            });
    Plan {
        chunks: num("x-mock-chunks").map(|n| n as usize).unwrap_or(config.chunks),
        ttft: ms("x-mock-ttft-ms", config.ttft),
        chunk_delay: ms("x-mock-chunk-delay-ms", config.chunk_delay),
        stall: ms("x-mock-stall-ms", config.stall),
        stall_rate: get("x-mock-stall-rate")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(config.stall_rate),
        error_status,
        error_rate,
        error_code: get("x-mock-error-code")
            .or(config.error_code.as_deref())
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or("injected")
            .to_string(),
        retry_after: num("x-mock-retry-after").or(config.retry_after),
        cut_after: num("x-mock-cut-after").map(|n| n as usize).or(config.cut_after),
        usage_on_content: get("x-mock-usage-on-content").is_some(),
        fragment: num("x-mock-fragment").map(|n| n as usize).unwrap_or(0),
        no_usage: get("x-mock-no-usage").is_some(),
        finish: get("x-mock-finish")
            .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or("stop")
            .to_string(),
        reply: get("x-mock-reply")
            .map(|r| r.split(',').map(percent_decode).collect())
            .or_else(|| config.reply.clone().map(|r| vec![r])),
    }
}

type MockBody = ChannelBody;

/// True for this fraction of calls (always at 1 or above).
fn chance(rate: f64) -> bool {
    rate >= 1.0 || rand::thread_rng().gen::<f64>() < rate
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let plan = plan(&state.config, &parts.headers);
    record(&state, &parts, &body);
    let number = state.served.fetch_add(1, Ordering::Relaxed);
    let in_flight = InFlight::start(&state);

    if !plan.stall.is_zero() && chance(plan.stall_rate) {
        tokio::time::sleep(plan.stall).await;
    }
    if let Some(status) = plan.error_status {
        let first = number < state.config.fail_first;
        if first || chance(plan.error_rate) {
            let message = if plan.error_code == "context_length_exceeded" {
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.".to_string()
            } else {
                format!("injected error {status} from {}", state.config.name)
            };
            let msg = format!(
                r#"{{"error":{{"message":"{message}","type":"mock_error","code":"{}"}}}}"#,
                plan.error_code
            );
            let mut resp = json_response(
                &state,
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                msg,
            );
            if let Some(secs) = plan.retry_after {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            return Ok(resp);
        }
    }

    let path = parts.uri.path();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let model = request
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or("mock-model")
        .to_string();
    let stream = request.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
        && !plan.no_usage;
    let prompt_tokens = (body.len() / 4).max(1) as u64;

    let response = match (parts.method.as_str(), path) {
        ("GET", "/v1/models") => json_response(
            &state,
            StatusCode::OK,
            format!(
                r#"{{"object":"list","data":[{{"id":"{model}","object":"model","created":0,"owned_by":"mock"}}]}}"#
            ),
        ),
        ("POST", "/v1/moderations") | ("POST", "/moderate") => {
            let text = String::from_utf8_lossy(&body);
            if text.contains("slow-mod") {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let flagged = text.contains("flag-me");
            if text.contains("mod-500") {
                json_response(
                    &state,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"error":{"message":"moderation down"}}"#.into(),
                )
            } else if path == "/moderate" {
                let categories = if flagged { r#"["violence"]"# } else { "[]" };
                json_response(
                    &state,
                    StatusCode::OK,
                    format!(r#"{{"flagged":{flagged},"categories":{categories}}}"#),
                )
            } else {
                // One result per input, as the real service answers.
                let inputs: Vec<String> = match request.get("input") {
                    Some(serde_json::Value::Array(items)) => items.iter().map(|i| i.to_string()).collect(),
                    Some(one) => vec![one.to_string()],
                    None => vec![String::new()],
                };
                let results: Vec<String> = inputs
                    .iter()
                    .map(|input| {
                        let flagged = input.contains("flag-me");
                        format!(
                            r#"{{"flagged":{flagged},"categories":{{"violence":{flagged},"hate":false}},"category_scores":{{"violence":{},"hate":0.0}}}}"#,
                            if flagged { 0.97 } else { 0.01 }
                        )
                    })
                    .collect();
                json_response(
                    &state,
                    StatusCode::OK,
                    format!(
                        r#"{{"id":"modr-1","model":"omni-moderation-latest","results":[{}]}}"#,
                        results.join(",")
                    ),
                )
            }
        }
        ("POST", "/v1/embeddings") => {
            let body = format!(
                r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}}],"model":"{model}","usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}}}"#
            );
            json_response(&state, StatusCode::OK, body)
        }
        ("POST", "/v1/chat/completions") | ("POST", "/v1/completions") => {
            let chat = path == "/v1/chat/completions";
            if stream {
                stream_response(&state, plan, model, chat, include_usage, prompt_tokens, in_flight)
            } else {
                if !plan.ttft.is_zero() {
                    tokio::time::sleep(plan.ttft).await;
                }
                let words = plan.chunks * state.config.words_per_chunk;
                let text = match (&plan.reply, crate::planner::answer(&request)) {
                    (Some(pieces), _) => json_inner(&pieces.concat()),
                    (None, Some(search_plan)) => json_inner(&search_plan),
                    (None, None) => content_text(words),
                };
                let completion = plan.chunks as u64;
                let body = if chat {
                    format!(
                        r#"{{"id":"chatcmpl-{name}","object":"chat.completion","created":0,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"{finish}"}}],"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion},"total_tokens":{total},"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#,
                        name = state.config.name,
                        finish = plan.finish,
                        total = prompt_tokens + completion
                    )
                } else {
                    format!(
                        r#"{{"id":"cmpl-{name}","object":"text_completion","created":0,"model":"{model}","choices":[{{"index":0,"text":"{text}","finish_reason":"{finish}"}}],"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion},"total_tokens":{total}}}}}"#,
                        finish = plan.finish,
                        name = state.config.name,
                        total = prompt_tokens + completion
                    )
                };
                let body = if plan.no_usage { strip_usage(&body) } else { body };
                json_response(&state, StatusCode::OK, body)
            }
        }
        _ => json_response(
            &state,
            StatusCode::NOT_FOUND,
            r#"{"error":{"message":"mock: no such route","type":"invalid_request_error","code":"not_found"}}"#.into(),
        ),
    };
    Ok(response)
}

fn record(state: &State, parts: &http::request::Parts, body: &Bytes) {
    if state.config.record_limit == 0 {
        return;
    }
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    if let Ok(mut all) = state.recorded.lock() {
        if all.len() >= state.config.record_limit {
            all.remove(0);
        }
        all.push(rec);
    }
}

/// A JSON answer without its `usage` member.
fn strip_usage(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.remove("usage");
            serde_json::Value::Object(m).to_string()
        }
        _ => body.to_string(),
    }
}

/// `s` escaped as JSON string contents (no quotes).
fn json_inner(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn content_text(words: usize) -> String {
    const WORDS: [&str; 8] = ["hello", "from", "the", "mock", "upstream", "streaming", "tokens", "now"];
    let mut s = String::with_capacity(words * 8);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[i % WORDS.len()]);
    }
    s
}

fn json_response(state: &State, status: StatusCode, body: String) -> Response<MockBody> {
    let mut resp = Response::new(ChannelBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&state.config.name) {
        h.insert("x-mock-upstream", v);
    }
    resp
}

/// Wait `delay` between events, as a model generating would; `false` when the reader left
/// meanwhile (the stream ends then, as a real server aborts a generation nobody reads).
async fn pause(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = tx.closed() => false,
    }
}

fn stream_response(
    state: &State,
    plan: Plan,
    model: String,
    chat: bool,
    include_usage: bool,
    prompt_tokens: u64,
    in_flight: InFlight,
) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let name = state.config.name.clone();
    let words_per_chunk = state.config.words_per_chunk;
    let mut plan = plan;
    if let Some(pieces) = &plan.reply {
        plan.chunks = pieces.len();
    }
    tokio::spawn(async move {
        // The stream is in flight until this task ends: its last event sent, cut, or its
        // reader gone.
        let _in_flight = in_flight;
        if !plan.ttft.is_zero() && !pause(&tx, plan.ttft).await {
            return;
        }
        let usage_null = if include_usage { r#","usage":null"# } else { "" };
        let completion = plan.chunks as u64;
        let usage = format!(
            r#"{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":0}}}}"#,
            prompt_tokens + completion
        );
        for i in 0..plan.chunks {
            if plan.cut_after == Some(i) {
                // Let what was sent reach the wire first, as when a real connection dies.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = tx.send(Err(std::io::Error::other("mock: cut"))).await;
                return;
            }
            if i > 0 && !plan.chunk_delay.is_zero() && !pause(&tx, plan.chunk_delay).await {
                return;
            }
            let text = match &plan.reply {
                Some(pieces) => json_inner(&pieces[i]),
                None => content_text(words_per_chunk) + " ",
            };
            let last = i + 1 == plan.chunks;
            let finish = if last {
                format!("\"{}\"", plan.finish)
            } else {
                "null".to_string()
            };
            let usage_here = if last && plan.usage_on_content {
                format!(r#","usage":{usage}"#)
            } else {
                usage_null.to_string()
            };
            let event = if chat {
                format!(
                    "data: {{\"id\":\"chatcmpl-{name}\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":{finish}}}]{usage_here}}}\n\n"
                )
            } else {
                format!(
                    "data: {{\"id\":\"cmpl-{name}\",\"object\":\"text_completion\",\"created\":0,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"finish_reason\":{finish}}}]{usage_here}}}\n\n"
                )
            };
            if !send_event(&tx, Bytes::from(event), plan.fragment).await {
                return;
            }
        }
        if include_usage && !plan.usage_on_content {
            let object = if chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let event = format!(
                "data: {{\"id\":\"chatcmpl-{name}\",\"object\":\"{object}\",\"created\":0,\"model\":\"{model}\",\"choices\":[],\"usage\":{usage}}}\n\n"
            );
            if !send_event(&tx, Bytes::from(event), plan.fragment).await {
                return;
            }
        }
        let _ = send_event(&tx, Bytes::from_static(b"data: [DONE]\n\n"), plan.fragment).await;
    });
    let mut resp = Response::new(ChannelBody::channel(rx));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    if let Ok(v) = http::HeaderValue::from_str(&state.config.name) {
        h.insert("x-mock-upstream", v);
    }
    resp
}

/// Send one event, whole or in `fragment`-byte pieces; false when the client is gone.
async fn send_event(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, event: Bytes, fragment: usize) -> bool {
    if fragment == 0 {
        return tx.send(Ok(event)).await.is_ok();
    }
    let mut at = 0;
    while at < event.len() {
        let end = (at + fragment).min(event.len());
        if tx.send(Ok(event.slice(at..end))).await.is_err() {
            return false;
        }
        at = end;
        tokio::task::yield_now().await;
    }
    true
}

/// A response body that is either one buffer or chunks arriving over a channel.
pub struct ChannelBody {
    full: Option<Bytes>,
    rx: Option<mpsc::Receiver<Result<Bytes, std::io::Error>>>,
}

impl ChannelBody {
    fn full(b: Bytes) -> Self {
        ChannelBody {
            full: Some(b),
            rx: None,
        }
    }
    fn channel(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Self {
        ChannelBody {
            full: None,
            rx: Some(rx),
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(b) = self.full.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match self.rx.as_mut() {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match (&self.full, &self.rx) {
            (Some(b), _) => hyper::body::SizeHint::with_exact(b.len() as u64),
            (None, None) => hyper::body::SizeHint::with_exact(0),
            _ => hyper::body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.full.is_none() && self.rx.is_none()
    }
}
