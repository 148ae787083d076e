//! `tollgate-mock`: the mock OpenAI-compatible upstream as a process, for load tests and demos.

use std::time::Duration;

use clap::Parser;
use tollgate_loadtest::mock::{self, MockConfig, TlsFiles};

/// A fast mock OpenAI-compatible upstream (chat, completions, embeddings, models; JSON and SSE).
#[derive(Parser, Debug)]
#[command(name = "tollgate-mock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_MOCK_LISTEN", default_value = "127.0.0.1:9000")]
    listen: String,
    /// Name reported in `x-mock-upstream` and response ids.
    #[arg(long, env = "TOLLGATE_MOCK_NAME", default_value = "mock")]
    name: String,
    /// Content chunks per streamed answer.
    #[arg(long, env = "TOLLGATE_MOCK_CHUNKS", default_value_t = 8)]
    chunks: usize,
    /// Words per content chunk.
    #[arg(long, env = "TOLLGATE_MOCK_WORDS_PER_CHUNK", default_value_t = 3)]
    words_per_chunk: usize,
    /// Milliseconds before the first body byte.
    #[arg(long, env = "TOLLGATE_MOCK_TTFT_MS", default_value_t = 0)]
    ttft_ms: u64,
    /// Milliseconds between stream chunks.
    #[arg(long, env = "TOLLGATE_MOCK_CHUNK_DELAY_MS", default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Milliseconds before the response header.
    #[arg(long, env = "TOLLGATE_MOCK_STALL_MS", default_value_t = 0)]
    stall_ms: u64,
    /// Fraction of requests that wait --stall-ms (the others answer at once).
    #[arg(long, env = "TOLLGATE_MOCK_STALL_RATE", default_value_t = 1.0)]
    stall_rate: f64,
    /// Status code to inject (with --error-rate).
    #[arg(long, env = "TOLLGATE_MOCK_ERROR_STATUS")]
    error_status: Option<u16>,
    /// Fraction of requests answered with --error-status.
    #[arg(long, env = "TOLLGATE_MOCK_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// The injected error's `code` (`context_length_exceeded` words the message as OpenAI does).
    #[arg(long, env = "TOLLGATE_MOCK_ERROR_CODE")]
    error_code: Option<String>,
    /// `Retry-After` seconds sent with an injected error.
    #[arg(long, env = "TOLLGATE_MOCK_RETRY_AFTER")]
    retry_after: Option<u64>,
    /// The first this many requests get --error-status whatever the rate.
    #[arg(long, env = "TOLLGATE_MOCK_FAIL_FIRST", default_value_t = 0)]
    fail_first: u64,
    /// Cut the connection after this many stream chunks.
    #[arg(long, env = "TOLLGATE_MOCK_CUT_AFTER")]
    cut_after: Option<usize>,
    /// Answer every completion with this text instead of the mock's words.
    #[arg(long, env = "TOLLGATE_MOCK_REPLY")]
    reply: Option<String>,
    /// Worker threads.
    #[arg(long, env = "TOLLGATE_MOCK_THREADS", default_value_t = 1)]
    threads: usize,
    /// Serve HTTPS with this PEM certificate (needs --tls-key).
    #[arg(long, env = "TOLLGATE_MOCK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<String>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "TOLLGATE_MOCK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = MockConfig {
        name: args.name,
        chunks: args.chunks,
        words_per_chunk: args.words_per_chunk,
        ttft: Duration::from_millis(args.ttft_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        stall: Duration::from_millis(args.stall_ms),
        stall_rate: args.stall_rate,
        error_status: args.error_status,
        error_rate: args.error_rate,
        error_code: args.error_code,
        retry_after: args.retry_after,
        fail_first: args.fail_first,
        cut_after: args.cut_after,
        record_limit: 0,
        reply: args.reply,
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_pem: std::fs::read(c)?,
            key_pem: std::fs::read(k)?,
        }),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        let handle = mock::spawn(listener, config, tls)?;
        eprintln!("tollgate-mock listening on {}", handle.addr);
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}
