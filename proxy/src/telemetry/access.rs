//! The access log: one line per request, and the request metrics that go with it.
//!
//! Fields: request id, endpoint, model (the public model that answered) and target model,
//! provider, client address, status, error, outcome, attempts, cache outcome, latency, TTFT,
//! usage, bytes; when there were any, the model asked for when a fallback answered
//! (`fallback_from`) and the failed attempts (provider, target model, reason, status); for a
//! request that searched, `search` (status, queries, results, failed engine calls, passages
//! and tokens added, time, and why nothing was added). No header
//! value, body text or key ever reaches this line.
//!
//! At tens of thousands of requests per second a log line per request is a hot path of its own:
//! lines are formatted by hand into a shared buffer (no value tree, no per-line syscall) and a
//! writer thread flushes the buffer to stdout every few milliseconds in one write. If stdout
//! blocks and the buffer passes its cap, lines are dropped and counted, never queued without
//! bound and never in the way of a request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::audit::{self, AdminAudit};
use super::logging::LogFormat;
use super::metrics::ModelSeries;
use super::request_metrics;
use super::sink::{Rotation, Sink};
use super::Metrics;
use crate::context::{Caller, RequestCtx};
use crate::json_spans::write_str as json_str;

/// How often the writer thread flushes.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Buffered bytes beyond which new lines are dropped (stdout is not keeping up).
const MAX_BUFFERED: usize = 8 << 20;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Audit and guardrail lines, when they go to a file of their own (else into `buf`).
    audit: Option<Mutex<Vec<u8>>>,
    format: LogFormat,
    /// Where `buf` and `audit` are written (the writer thread's; a flush at shutdown takes it too).
    sinks: Mutex<(Sink, Option<Sink>)>,
}

/// Where the lines go (CLI flags).
#[derive(Debug, Clone)]
pub struct LogFiles {
    /// Access lines (and audit lines unless `audit` is set); stdout when `None`.
    pub access: Option<std::path::PathBuf>,
    /// Audit and guardrail lines in a file of their own.
    pub audit: Option<std::path::PathBuf>,
    pub rotation: Rotation,
}

/// Handle to the access log; cheap to share.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

impl AccessLog {
    /// Start the writer thread.
    pub fn start(format: LogFormat, files: &LogFiles) -> std::io::Result<Self> {
        let access = Sink::open(files.access.as_deref(), files.rotation)?;
        let audit = match &files.audit {
            Some(p) => Some(Sink::open(Some(p), files.rotation)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            audit: audit.is_some().then(|| Mutex::new(Vec::with_capacity(16 * 1024))),
            format,
            sinks: Mutex::new((access, audit)),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("tollgate-access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush(&writer, &mut spare);
                }
            })?;
        Ok(AccessLog { shared })
    }

    /// Write what is buffered now (at shutdown).
    pub fn flush(&self) {
        flush(&self.shared, &mut Vec::new());
    }

    /// The audit line of an admin action (see [`audit::admin_line`]).
    pub fn admin_action(&self, who: Option<&str>, peer: &str, a: &AdminAudit) {
        let mut line = Vec::with_capacity(256);
        let mut stamp = Vec::with_capacity(32);
        timestamp(&mut stamp);
        audit::admin_line(&mut line, self.shared.format, &stamp, who, peer, a);
        if let Ok(mut buf) = self.shared.audit.as_ref().unwrap_or(&self.shared.buf).lock() {
            buf.extend_from_slice(&line);
        }
    }

    /// Record a finished request: the line, and the request metrics.
    pub fn record(&self, ctx: &RequestCtx, series: Option<&ModelSeries>, metrics: &Metrics) {
        let latency = ctx.started.elapsed();
        let mut stamp = Vec::with_capacity(32);
        timestamp(&mut stamp);
        let mut line = Vec::with_capacity(1024);
        match self.shared.format {
            LogFormat::Json => json_line(&mut line, &stamp, ctx, latency),
            LogFormat::Text => text_line(&mut line, &stamp, ctx, latency),
        }
        let mut audit_lines = Vec::new();
        let audit_out = if self.shared.audit.is_some() {
            &mut audit_lines
        } else {
            &mut line
        };
        if !matches!(ctx.caller, Caller::Open) {
            audit::request_line(audit_out, self.shared.format, &stamp, ctx);
        }
        for event in &ctx.guard.events {
            audit::guard_line(audit_out, self.shared.format, &stamp, ctx, event);
            let consumer = ctx.names().consumer;
            metrics
                .guardrail_events
                .with_label_values(&[
                    event.direction.name(),
                    event.risk,
                    &event.rule.name,
                    event.action.name(),
                    if consumer.is_empty() { "-" } else { consumer },
                ])
                .inc_by(u64::from(event.count));
        }
        let keep = |buf: &Mutex<Vec<u8>>, lines: &[u8]| match buf.lock() {
            Ok(mut buf) if buf.len() + lines.len() <= MAX_BUFFERED => {
                buf.extend_from_slice(lines);
                true
            }
            _ => false,
        };
        if !keep(&self.shared.buf, &line) {
            metrics.access_log_dropped.inc();
        }
        if let (Some(audit), false) = (&self.shared.audit, audit_lines.is_empty()) {
            if !keep(audit, &audit_lines) {
                metrics.access_log_dropped.inc();
            }
        }
        request_metrics::update(ctx, series, metrics, latency);
        if ctx.answer.cache != crate::pipeline::cache::CacheOutcome::Off {
            metrics
                .cache
                .lookups
                .with_label_values(&[ctx.answer.cache.name()])
                .inc();
        }
    }
}

fn flush(shared: &Shared, spare: &mut Vec<u8>) {
    let Ok(mut sinks) = shared.sinks.lock() else { return };
    let (access, audit) = &mut *sinks;
    take(&shared.buf, spare);
    if !spare.is_empty() {
        let _ = access.write(spare);
        spare.clear();
    }
    if let (Some(buf), Some(sink)) = (&shared.audit, audit) {
        take(buf, spare);
        if !spare.is_empty() {
            let _ = sink.write(spare);
            spare.clear();
        }
    }
}

/// Swap `buf`'s lines into `spare` (empty), leaving `buf` empty.
fn take(buf: &Mutex<Vec<u8>>, spare: &mut Vec<u8>) {
    if let Ok(mut buf) = buf.lock() {
        std::mem::swap(&mut *buf, spare);
    }
}

fn json_line(out: &mut Vec<u8>, stamp: &[u8], ctx: &RequestCtx, latency: Duration) {
    let f = ctx.names();
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(stamp);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\",\"request_id\":");
    json_str(out, &ctx.request_id);
    out.extend_from_slice(b",\"endpoint\":");
    json_str(out, ctx.endpoint.map(|e| e.name()).unwrap_or("-"));
    out.extend_from_slice(b",\"consumer\":");
    json_str(out, f.consumer);
    out.extend_from_slice(b",\"key_id\":");
    json_str(out, f.key_id);
    out.extend_from_slice(b",\"model\":");
    json_str(out, f.asked);
    out.extend_from_slice(b",\"target_model\":");
    json_str(out, f.used);
    out.extend_from_slice(b",\"provider\":");
    json_str(out, f.provider);
    out.extend_from_slice(b",\"client_ip\":\"");
    if let Some(ip) = ctx.client_ip {
        let _ = write!(out, "{ip}");
    }
    out.push(b'"');
    for (name, value) in scalars(ctx, latency) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Scalar::Code(c) => {
                out.push(b'"');
                out.extend_from_slice(c.as_bytes());
                out.push(b'"');
            }
            v => v.push_to(out),
        }
    }
    // Only when there is something to say: most requests are answered at the first attempt.
    if let Some(from) = &ctx.answer.fallback_from {
        out.extend_from_slice(b",\"fallback_from\":");
        json_str(out, &from.name);
    }
    for (i, f) in ctx.answer.failed_attempts.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b",\"failed_attempts\":[" } else { b"," });
        out.extend_from_slice(b"{\"provider\":");
        json_str(out, &f.provider);
        out.extend_from_slice(b",\"target_model\":");
        json_str(out, &f.target_model);
        out.extend_from_slice(b",\"reason\":");
        json_str(out, f.reason);
        if let Some(s) = f.status {
            let _ = write!(out, ",\"status\":{s}");
        }
        out.push(b'}');
    }
    if !ctx.answer.failed_attempts.is_empty() {
        out.push(b']');
    }
    if ctx.answer.attempts > 0 {
        let _ = write!(out, ",\"upstream_ms\":{:.3}", ctx.answer.waited.as_secs_f64() * 1000.0);
    }
    if let (Some(price), Some(usage)) = (ctx.price(), ctx.answer_usage()) {
        let _ = write!(out, ",\"cost\":{:.9},\"currency\":", price.cost(&usage));
        json_str(out, &price.currency);
    }
    if let Some(search) = &ctx.search {
        let _ = write!(
            out,
            ",\"search\":{{\"status\":\"{}\",\"queries\":{},\"results\":{},\"engines_failed\":{},\"pages_fetched\":{},\"pages_cached\":{},\"pages_refused\":{},\"pages_failed\":{},\"page_bytes\":{},\"passages\":{},\"passages_dropped\":{},\"tokens_added\":{},\"ms\":{:.1},\"engines_ms\":{:.1},\"pages_ms\":{:.1},\"rank_ms\":{:.2}",
            search.status.name(),
            search.queries,
            search.results,
            search.engines_failed,
            search.pages_fetched,
            search.pages_cached,
            search.pages_refused,
            search.pages_failed,
            search.page_bytes,
            search.passages,
            search.passages_dropped,
            search.tokens_added,
            search.took.as_secs_f64() * 1000.0,
            search.engines_took.as_secs_f64() * 1000.0,
            search.pages_took.as_secs_f64() * 1000.0,
            search.rank_took.as_secs_f64() * 1000.0,
        );
        if !search.reason.is_empty() {
            let _ = write!(out, ",\"reason\":\"{}\"", search.reason);
        }
        if !search.rerank.is_empty() {
            let _ = write!(
                out,
                ",\"rerank\":\"{}\",\"rerank_ms\":{:.2}",
                search.rerank,
                search.rerank_took.as_secs_f64() * 1000.0
            );
        }
        if let Some(p) = &search.planner {
            out.extend_from_slice(b",\"planner\":{\"model\":");
            json_str(out, &p.model);
            let u = p.usage.unwrap_or_default();
            let _ = write!(
                out,
                ",\"attempts\":{},\"prompt_tokens\":{},\"completion_tokens\":{},\"ms\":{:.1}}}",
                p.attempts,
                u.prompt,
                u.completion,
                p.took.as_secs_f64() * 1000.0
            );
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"target\":\"tollgate::access\"}\n");
}

fn text_line(out: &mut Vec<u8>, stamp: &[u8], ctx: &RequestCtx, latency: Duration) {
    use std::io::Write as _;
    let f = ctx.names();
    out.extend_from_slice(stamp);
    let _ = write!(
        out,
        "  INFO tollgate::access: access request_id={} consumer={:?} key_id={:?} endpoint={} model={:?} target_model={:?} provider={:?}",
        ctx.request_id,
        f.consumer,
        f.key_id,
        ctx.endpoint.map(|e| e.name()).unwrap_or("-"),
        f.asked,
        f.used,
        f.provider,
    );
    match ctx.client_ip {
        Some(ip) => {
            let _ = write!(out, " client_ip={ip}");
        }
        None => out.extend_from_slice(b" client_ip=-"),
    }
    for (name, value) in scalars(ctx, latency) {
        match value {
            Scalar::Code("") => {
                let _ = write!(out, " {name}=-");
            }
            v => {
                let _ = write!(out, " {name}={v}");
            }
        }
    }
    out.push(b'\n');
}

/// A value of the access line after its strings: a number, a flag or a fixed code.
enum Scalar {
    Int(i64),
    Flag(bool),
    Ms(Option<Duration>),
    Code(&'static str),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Flag(b) => write!(f, "{b}"),
            Scalar::Ms(d) => write!(f, "{}", Ms(*d)),
            Scalar::Code(c) => f.write_str(c),
        }
    }
}

/// The access line's fields after its strings, in order, shared by the JSON and text forms.
fn scalars(ctx: &RequestCtx, latency: Duration) -> [(&'static str, Scalar); 19] {
    let usage = ctx.answer.usage.unwrap_or_default();
    let n = |v: u64| Scalar::Int(v as i64);
    [
        ("stream", Scalar::Flag(ctx.prompt.stream)),
        ("status", Scalar::Int(i64::from(ctx.answer.status))),
        ("error", Scalar::Code(ctx.answer.error.map_or("", |c| c.as_str()))),
        ("outcome", Scalar::Code(ctx.answer.outcome.name())),
        ("attempts", Scalar::Int(i64::from(ctx.answer.attempts))),
        ("cache", Scalar::Code(ctx.answer.cache.name())),
        ("latency_ms", Scalar::Ms(Some(latency))),
        ("ttft_ms", Scalar::Ms(ctx.answer.ttft)),
        ("prompt_tokens", n(usage.prompt)),
        ("completion_tokens", n(usage.completion)),
        ("cached_tokens", n(usage.cached)),
        ("total_tokens", n(usage.total)),
        ("usage_known", Scalar::Flag(ctx.answer.usage.is_some())),
        (
            "prompt_tokens_counted",
            Scalar::Int(ctx.prompt.counted.map_or(-1, |c| c.tokens() as i64)),
        ),
        (
            "prompt_count_estimated",
            Scalar::Flag(ctx.prompt.counted.is_some_and(|c| c.is_estimate())),
        ),
        (
            "completion_tokens_counted",
            Scalar::Int(ctx.answer.completion_counted.map_or(-1, |c| c.tokens() as i64)),
        ),
        (
            "completion_count_estimated",
            Scalar::Flag(ctx.answer.completion_counted.is_some_and(|c| c.is_estimate())),
        ),
        ("bytes_in", n(ctx.prompt.bytes_in)),
        ("bytes_out", n(ctx.answer.bytes_out)),
    ]
}

/// A duration in milliseconds with three decimals (integer arithmetic), or `-1` when unknown.
impl Scalar {
    /// The value as the JSON line writes it (the `Display` form, without the formatter).
    fn push_to(&self, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        match self {
            Scalar::Int(n) => out.extend_from_slice(num.format(*n).as_bytes()),
            Scalar::Flag(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Scalar::Ms(None) => out.extend_from_slice(b"-1"),
            Scalar::Ms(Some(d)) => {
                let us = d.as_micros();
                out.extend_from_slice(num.format(us / 1000).as_bytes());
                let frac = (us % 1000) as u16;
                out.extend_from_slice(&[
                    b'.',
                    b'0' + (frac / 100) as u8,
                    b'0' + (frac / 10 % 10) as u8,
                    b'0' + (frac % 10) as u8,
                ]);
            }
            Scalar::Code(c) => out.extend_from_slice(c.as_bytes()),
        }
    }
}

struct Ms(Option<Duration>);

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-1"),
            Some(d) => {
                let us = d.as_micros();
                write!(f, "{}.{:03}", us / 1000, us % 1000)
            }
        }
    }
}

/// Now as RFC 3339 UTC with microseconds, e.g. `2026-11-25T07:06:17.927158Z`.
fn timestamp(out: &mut Vec<u8>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    push_timestamp(out, now);
}

/// `now` (since the epoch) as RFC 3339 UTC with microseconds: `2026-11-25T13:22:34.475667Z`.
/// The part up to the seconds changes once a second: each thread keeps the last one it wrote,
/// so most lines only write their microseconds.
fn push_timestamp(out: &mut Vec<u8>, now: Duration) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let secs = now.as_secs();
    let (cached, mut head) = SECOND.get();
    if cached != secs {
        head = second_prefix(secs);
        SECOND.set((secs, head));
    }
    let mut stamp = [0u8; 27];
    stamp[..20].copy_from_slice(&head);
    put_digits(&mut stamp[20..26], u64::from(now.subsec_micros()));
    stamp[26] = b'Z';
    out.extend_from_slice(&stamp);
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the epoch.
fn second_prefix(secs: u64) -> [u8; 20] {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let mut p = *b"0000-00-00T00:00:00.";
    put_digits(&mut p[0..4], y.clamp(0, 9999) as u64);
    put_digits(&mut p[5..7], u64::from(m));
    put_digits(&mut p[8..10], u64::from(d));
    put_digits(&mut p[11..13], s / 3600);
    put_digits(&mut p[14..16], s / 60 % 60);
    put_digits(&mut p[17..19], s % 60);
    p
}

/// The last `slots.len()` decimal digits of `n`, zero-padded.
fn put_digits(slots: &mut [u8], mut n: u64) {
    for slot in slots.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ModelStage;
    use crate::sse::Usage;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut out = Vec::new();
        push_timestamp(&mut out, Duration::new(1_795_613_954, 475_667_123));
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-25T13:39:14.475667Z");
        let mut out = Vec::new();
        push_timestamp(&mut out, Duration::new(951_782_400, 5_000));
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00.000005Z");
        // The same second again (the thread's kept prefix), then the next one.
        for (nanos, secs, want) in [
            (999_999_999, 951_782_400, "2000-02-29T00:00:00.999999Z"),
            (0, 951_782_401, "2000-02-29T00:00:01.000000Z"),
            (1_000, 951_782_400, "2000-02-29T00:00:00.000001Z"),
        ] {
            let mut out = Vec::new();
            push_timestamp(&mut out, Duration::new(secs, nanos));
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn dates_are_right_across_leap_years_and_eras() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn json_values_are_written_as_their_display_form() {
        let cases = [
            Scalar::Int(0),
            Scalar::Int(-1),
            Scalar::Int(i64::MAX),
            Scalar::Flag(true),
            Scalar::Flag(false),
            Scalar::Ms(None),
            Scalar::Ms(Some(Duration::from_micros(7))),
            Scalar::Ms(Some(Duration::from_micros(12_345))),
            Scalar::Ms(Some(Duration::from_secs(3_600))),
            Scalar::Code("ok"),
        ];
        for v in cases {
            let mut out = Vec::new();
            v.push_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn json_line_is_valid_json_with_escaped_client_text() {
        let mut ctx = RequestCtx::new();
        ctx.request_id = "r1".into();
        ctx.model = ModelStage::Unknown("evil\"\n\u{1}model".into());
        ctx.answer.status = 404;
        ctx.answer.usage = Some(Usage {
            prompt: 3,
            completion: 4,
            total: 7,
            cached: 1,
        });
        let mut out = Vec::new();
        json_line(
            &mut out,
            b"2026-01-01T00:00:00.000000Z",
            &ctx,
            Duration::from_micros(1500),
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "evil\"\n\u{1}model");
        assert_eq!(v["status"], 404);
        assert_eq!(v["total_tokens"], 7);
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["message"], "access");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("failed_attempts").is_none() && v.get("fallback_from").is_none());
    }

    #[test]
    fn failed_attempts_are_listed_only_when_there_were_some() {
        let mut ctx = RequestCtx::new();
        for (provider, status) in [("a\"x", Some(503)), ("b", None)] {
            ctx.answer.failed_attempts.push(crate::context::FailedAttempt {
                provider: provider.into(),
                target_model: "m".into(),
                reason: if status.is_some() {
                    "retryable_status"
                } else {
                    "timeout"
                },
                status,
            });
        }
        let mut out = Vec::new();
        json_line(&mut out, b"2026-01-01T00:00:00.000000Z", &ctx, Duration::ZERO);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["failed_attempts"],
            serde_json::json!([
                {"provider": "a\"x", "target_model": "m", "reason": "retryable_status", "status": 503},
                {"provider": "b", "target_model": "m", "reason": "timeout"}
            ])
        );
    }
}
