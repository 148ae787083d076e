//! Command line: every tunable of the process is a flag with a `TOLLGATE_*` env fallback.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::logging::LogFormat;

/// Tollgate, an LLM edge gateway.
#[derive(Parser, Debug)]
#[command(name = "tollgate", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunOpts,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a config file; exit non-zero with every problem found.
    Check {
        /// Config file to check.
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: PathBuf,
        /// For CI: no DNS lookups, and a secret whose variable or file is missing is a warning.
        #[arg(long)]
        offline: bool,
        /// The `--completion-reserve` the gateway will run with (rules without their own are
        /// checked against it).
        #[arg(long, default_value_t = 1_024)]
        completion_reserve: u64,
    },
    /// Build or refresh the embedded knowledge bases: every `local` search engine of a config
    /// file (indexed again only when its documents changed), or one folder; `--query` then
    /// shows what a search finds.
    Kb {
        /// Config file whose `local` engines are opened (and built when their documents changed).
        #[arg(long, conflicts_with_all = ["docs", "index"])]
        config: Option<PathBuf>,
        /// A folder of Markdown, text and HTML documents (with `--index`).
        #[arg(long, requires = "index")]
        docs: Option<PathBuf>,
        /// Where the folder's index is kept.
        #[arg(long, requires = "docs")]
        index: Option<PathBuf>,
        /// With `--docs`: build the index even if the documents did not change.
        #[arg(long)]
        rebuild: bool,
        /// Search for this and print the results.
        #[arg(long)]
        query: Option<String>,
        /// Results shown for `--query`.
        #[arg(long, default_value_t = 5)]
        results: usize,
    },
    /// Manage consumer API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a fresh API key once, with the hash to put in the config (the key itself is not stored).
    New {
        /// The key's loggable id (default: generated).
        #[arg(long)]
        id: Option<String>,
    },
}

/// Flags of the gateway process.
#[derive(Args, Debug, Clone)]
pub struct RunOpts {
    /// Config file (TOML).
    #[arg(long, env = "TOLLGATE_CONFIG", default_value = "tollgate.toml")]
    pub config: PathBuf,
    /// Public listener (OpenAI-compatible API).
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Public TLS listener (HTTPS, HTTP/2 by ALPN); needs `--tls-cert` and `--tls-key`.
    #[arg(long, env = "TOLLGATE_TLS_LISTEN", requires_all = ["tls_cert", "tls_key"])]
    pub tls_listen: Option<String>,
    /// Certificate chain (PEM) of the TLS listener; reloaded on SIGHUP and when it changes.
    #[arg(long, env = "TOLLGATE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of the TLS listener; reloaded with the certificate.
    #[arg(long, env = "TOLLGATE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Admin listener (metrics, reload); keep it private.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: String,
    /// Worker threads of the public listener (0 = one per CPU).
    #[arg(long, env = "TOLLGATE_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Let idle worker threads take queued requests from busy ones (one shared scheduler);
    /// `false` gives each worker its own single-threaded scheduler (cheaper per request, no
    /// balancing of connections after they are accepted).
    #[arg(long, env = "TOLLGATE_WORK_STEALING", default_value_t = true, action = clap::ArgAction::Set)]
    pub work_stealing: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How tokens are counted for models without a tokenizer (prompts before forwarding, and
    /// completions the provider reports no usage for): o200k or cl100k (a stand-in tokenizer),
    /// or bytes (about 4 bytes a token). Such counts are marked as estimates.
    #[arg(long, env = "TOLLGATE_ESTIMATE_TOKENIZER", value_enum, default_value_t = EstimateTokenizer::O200k)]
    pub estimate_tokenizer: EstimateTokenizer,
    /// A request head must arrive whole within this many seconds of its first byte (of the
    /// accept, for a connection's first request); else `408` and the connection closes.
    #[arg(long, env = "TOLLGATE_HEAD_TIMEOUT_SECS", default_value_t = 10)]
    pub head_timeout_secs: u64,
    /// Most headers a request may have (`431` past it).
    #[arg(long, env = "TOLLGATE_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,
    /// Most bytes of header names and values a request may have (`431` past it).
    #[arg(long, env = "TOLLGATE_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Longest request target (path and query), in bytes (`414` past it).
    #[arg(long, env = "TOLLGATE_MAX_REQUEST_TARGET_BYTES", default_value_t = 8 * 1024)]
    pub max_request_target_bytes: usize,
    /// A request body must arrive whole within this many seconds of its head (`408`).
    #[arg(long, env = "TOLLGATE_BODY_TIMEOUT_SECS", default_value_t = 60)]
    pub body_timeout_secs: u64,
    /// Bytes per second a request body must average once `--body-rate-grace-secs` have passed
    /// (`408`; 0 = off).
    #[arg(long, env = "TOLLGATE_BODY_MIN_RATE", default_value_t = 1024)]
    pub body_min_rate: u64,
    /// Seconds a request body may take before its minimum rate applies.
    #[arg(long, env = "TOLLGATE_BODY_RATE_GRACE_SECS", default_value_t = 5)]
    pub body_rate_grace_secs: u64,
    /// Seconds an idle keep-alive client connection is kept.
    #[arg(long, env = "TOLLGATE_KEEPALIVE_IDLE_SECS", default_value_t = 15)]
    pub keepalive_idle_secs: u64,
    /// Requests served on one client connection before it is closed (0 = no limit).
    #[arg(long, env = "TOLLGATE_KEEPALIVE_REQUESTS", default_value_t = 0)]
    pub keepalive_requests: u32,
    /// Client connections open at once from one address (trusted proxies are not counted; 0 =
    /// no cap); past it, `429` and the connection closes.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub max_connections_per_ip: u32,
    /// Accept HTTP/2 without TLS (h2c, prior knowledge) on the public listener.
    #[arg(long, env = "TOLLGATE_H2C", default_value_t = false, action = clap::ArgAction::Set)]
    pub h2c: bool,
    /// Upstream connect timeout, in milliseconds.
    #[arg(long, env = "TOLLGATE_UPSTREAM_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    pub upstream_connect_timeout_ms: u64,
    /// Upstream read timeout (response header, and between body chunks), in milliseconds.
    #[arg(long, env = "TOLLGATE_UPSTREAM_READ_TIMEOUT_MS", default_value_t = 120_000)]
    pub upstream_read_timeout_ms: u64,
    /// Longest time for a whole request (every attempt and the answer's body), in
    /// milliseconds; a model's `timeouts.total_ms` overrides it. 0: no limit.
    #[arg(long, env = "TOLLGATE_UPSTREAM_TOTAL_TIMEOUT_MS", default_value_t = 0)]
    pub upstream_total_timeout_ms: u64,
    /// Idle upstream connections kept per process for reuse.
    #[arg(long, env = "TOLLGATE_UPSTREAM_POOL_SIZE", default_value_t = 512)]
    pub upstream_pool_size: usize,
    /// How long an idle upstream connection is kept, in seconds.
    #[arg(long, env = "TOLLGATE_UPSTREAM_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub upstream_idle_timeout_secs: u64,
    /// Write buffer per client connection, in bytes (a header and a small body go in one send).
    #[arg(long, env = "TOLLGATE_DOWNSTREAM_WRITE_BUFFER_BYTES", default_value_t = 16 * 1024)]
    pub downstream_write_buffer_bytes: usize,
    /// Redis for the state every node shares, e.g. `redis://127.0.0.1:6379`: quota counts,
    /// rate limits (token and request buckets, `sync` and `exact` rules) and keys created
    /// through the admin API. Unset: all of it in memory and this node's alone (keys in
    /// `--key-store-file`).
    #[arg(long, env = "TOLLGATE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Separates this gateway cluster's state in Redis (run-time keys, quota counts, and rate
    /// limits unless `--limits-namespace` says otherwise) from another cluster's in the same
    /// Redis: letters, digits, `-`, `_` and `.`, up to 64. Empty: the keys used so far.
    #[arg(long, env = "TOLLGATE_REDIS_NAMESPACE", default_value = "", value_parser = namespace)]
    pub redis_namespace: String,
    /// Without Redis, where keys created or revoked through the admin API are kept
    /// (default: `<config file>.keys.json`).
    #[arg(long, env = "TOLLGATE_KEY_STORE_FILE")]
    pub key_store_file: Option<PathBuf>,
    /// Days a key issued through the admin API is still listed after it was revoked or expired;
    /// then its record is purged (0 = never). Revocations of config keys are always kept.
    #[arg(long, env = "TOLLGATE_KEY_RETENTION_DAYS", default_value_t = 30)]
    pub key_retention_days: u64,
    /// Longest wait for a Redis answer on the request path, in milliseconds.
    #[arg(long, env = "TOLLGATE_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// Completion tokens a rate limit reserves for a request without `max_tokens`, and the
    /// most it reserves for one with it (a rule's `completion_reserve` overrides it).
    #[arg(long, env = "TOLLGATE_COMPLETION_RESERVE", default_value_t = 1_024)]
    pub completion_reserve: u64,
    /// Time between syncs of shared rate limits with Redis, in milliseconds.
    #[arg(long, env = "TOLLGATE_LIMITS_SYNC_INTERVAL_MS", default_value_t = 20)]
    pub limits_sync_interval_ms: u64,
    /// Longest wait for Redis in an `exact` rate limit decision (and for the first grant of a
    /// `sync` key whose implicit first lease cannot hold a request), in milliseconds.
    #[arg(long, env = "TOLLGATE_LIMITS_EXACT_TIMEOUT_MS", default_value_t = 100)]
    pub limits_exact_timeout_ms: u64,
    /// Most rate limit keys held in memory per node (idle keys go first).
    #[arg(long, env = "TOLLGATE_LIMITS_MAX_KEYS", default_value_t = 1_000_000)]
    pub limits_max_keys: usize,
    /// A shared rate limit key unused this long gives its lease back, in milliseconds.
    #[arg(long, env = "TOLLGATE_LIMITS_IDLE_RELEASE_MS", default_value_t = 5_000)]
    pub limits_idle_release_ms: u64,
    /// A node that has not renewed its concurrency slots for this long (it died) has them
    /// reclaimed by the other nodes, in milliseconds; live nodes renew three times within it.
    #[arg(long, env = "TOLLGATE_LIMITS_SLOT_LEASE_MS", default_value_t = 10_000)]
    pub limits_slot_lease_ms: u64,
    /// Requests in one second on one node past which a rate limit key is logged and counted as
    /// hot (`tollgate_limit_hot_keys_total`); 0 turns it off.
    #[arg(long, env = "TOLLGATE_LIMITS_HOT_KEY_RPS", default_value_t = 100)]
    pub limits_hot_key_rps: u64,
    /// A warning about a lasting condition (a key that stays hot) is logged once per this many
    /// seconds, with how often it recurred since; metrics still count every occurrence.
    #[arg(long, env = "TOLLGATE_LOG_REPEAT_INTERVAL_SECS", default_value_t = 60)]
    pub log_repeat_interval_secs: u64,
    /// Separates this gateway cluster's rate limits from another's in the same Redis (a word
    /// put into every limit key); nodes with the same namespace share their limits. Empty:
    /// `--redis-namespace`.
    #[arg(long, env = "TOLLGATE_LIMITS_NAMESPACE", default_value = "")]
    pub limits_namespace: String,
    /// This node's name among the nodes sharing limits (default: host name, pid and a random
    /// suffix).
    #[arg(long, env = "TOLLGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Folder of the semantic cache's files, as `scripts/fetch-models.sh` lays it out
    /// (`onnxruntime/libonnxruntime.so`, `embedders/<name>/`).
    #[arg(long, env = "TOLLGATE_MODELS_DIR", default_value = ".models")]
    pub models_dir: PathBuf,
    /// The semantic cache's embedding model: a folder name under `--models-dir`/embedders, or a
    /// folder holding `model.onnx` and `tokenizer.json`.
    #[arg(long, env = "TOLLGATE_CACHE_EMBEDDER", default_value = "use-multilingual-v3")]
    pub cache_embedder: String,
    /// Threads that embed questions for the semantic cache (each with its own model session).
    #[arg(long, env = "TOLLGATE_CACHE_EMBED_THREADS", default_value_t = 1)]
    pub cache_embed_threads: usize,
    /// Questions waiting for an embedding at most; past it a lookup skips the semantic step.
    #[arg(long, env = "TOLLGATE_CACHE_EMBED_QUEUE", default_value_t = 32)]
    pub cache_embed_queue: usize,
    /// Questions embedded together in one run of the model at most.
    #[arg(long, env = "TOLLGATE_CACHE_EMBED_BATCH", default_value_t = 16)]
    pub cache_embed_batch: usize,
    /// Longest expected queue wait for a question's embedding, in ms: when the questions already
    /// waiting would keep it longer, the lookup skips the semantic step at once (counted as
    /// shed). A lookup waits at most this plus 50 ms for its vector.
    #[arg(long, env = "TOLLGATE_CACHE_EMBED_WAIT_MS", default_value_t = 10)]
    pub cache_embed_wait_ms: u64,
    /// Memory for cached answers, questions and vectors on this node, in MiB.
    #[arg(long, env = "TOLLGATE_CACHE_MAX_MB", default_value_t = 256)]
    pub cache_max_mb: usize,
    /// Largest answer kept in the cache, in KiB.
    #[arg(long, env = "TOLLGATE_CACHE_MAX_ENTRY_KB", default_value_t = 1024)]
    pub cache_max_entry_kb: usize,
    /// Search engine answers kept on this node for `[search] cache_ttl_seconds` (a quarter as
    /// many result pages); 0 turns the search cache off.
    #[arg(long, env = "TOLLGATE_SEARCH_CACHE_ENTRIES", default_value_t = 10_000)]
    pub search_cache_entries: usize,
    /// Threads that embed search passages for `[search.rerank]` (each with its own model
    /// session; apart from the semantic cache's, so search never delays a cache lookup).
    #[arg(long, env = "TOLLGATE_SEARCH_EMBED_THREADS", default_value_t = 1)]
    pub search_embed_threads: usize,
    /// Texts (questions and passages) waiting for an embedding at most; past it a request's
    /// passages are ranked by their words alone (counted as shed).
    #[arg(long, env = "TOLLGATE_SEARCH_EMBED_QUEUE", default_value_t = 128)]
    pub search_embed_queue: usize,
    /// Texts embedded together in one run of the model at most.
    #[arg(long, env = "TOLLGATE_SEARCH_EMBED_BATCH", default_value_t = 17)]
    pub search_embed_batch: usize,
    /// The OTLP/HTTP collector's base URL (`/v1/traces` is added): traces are exported when it
    /// or `--otlp-traces-endpoint` is set. `http://` or `https://` (system CAs).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The OTLP/HTTP traces endpoint as a whole URL (wins over `--otlp-endpoint`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "tollgate")]
    pub otel_service_name: String,
    /// Share of requests traced when the client sends no `traceparent` (0 to 1); a client's
    /// `traceparent` decides for its own trace.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 1.0)]
    pub trace_sample: f64,
    /// Spans waiting for export at most; past it a request's spans are dropped (counted).
    #[arg(long, env = "TOLLGATE_TRACE_QUEUE", default_value_t = 4096)]
    pub trace_queue: usize,
    /// Spans posted to the collector in one batch at most (a batch also goes after a second).
    #[arg(long, env = "TOLLGATE_TRACE_BATCH", default_value_t = 512)]
    pub trace_batch: usize,
    /// Longest time one post to the collector may take, in ms.
    #[arg(long, env = "TOLLGATE_TRACE_EXPORT_TIMEOUT_MS", default_value_t = 2000)]
    pub trace_export_timeout_ms: u64,
    /// Posts of a batch after the first when the collector is unreachable, times out or answers
    /// 429/502/503/504 (backoff from 0.5 s, doubling, or the collector's `Retry-After`; at most
    /// 10 s); then the batch is dropped (counted).
    #[arg(long, env = "TOLLGATE_TRACE_RETRIES", default_value_t = 2)]
    pub trace_retries: u32,
    /// How often entries past their time are dropped from memory, in seconds (they are never
    /// answered once expired, whenever they are dropped).
    #[arg(long, env = "TOLLGATE_CACHE_SWEEP_SECS", default_value_t = 10)]
    pub cache_sweep_secs: u64,
    /// Items kept (approximately) in the Redis stream that tells nodes of new cache entries
    /// and flushes; a node that falls further behind warms up again from the entries.
    #[arg(long, env = "TOLLGATE_CACHE_REDIS_LOG_LEN", default_value_t = 100_000)]
    pub cache_redis_log_len: u64,
    /// How often the config file is checked for changes, in milliseconds (0 = never).
    #[arg(long, env = "TOLLGATE_CONFIG_POLL_MS", default_value_t = 1_000)]
    pub config_poll_ms: u64,
    /// Seconds in-flight requests and streams get to finish on SIGTERM, once the listeners
    /// close; the process exits as soon as none is left.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Seconds between SIGTERM and the listeners closing, while `/readyz` already answers 503
    /// (set it to the readiness poll interval of the load balancer in front).
    #[arg(long, env = "TOLLGATE_SHUTDOWN_DRAIN_DELAY_SECS", default_value_t = 0)]
    pub shutdown_drain_delay_secs: u64,
    /// Log line format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Access lines go to this file (rotated by size) instead of stdout; audit and guardrail
    /// lines go with them unless `--audit-log` is set.
    #[arg(long, env = "TOLLGATE_ACCESS_LOG")]
    pub access_log: Option<PathBuf>,
    /// Audit and guardrail lines (requests of consumers, admin actions, content safety events)
    /// go to this file (rotated by size) instead of with the access lines.
    #[arg(long, env = "TOLLGATE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// A log file is rotated when a write would take it past this many KiB (at a line boundary).
    #[arg(long, env = "TOLLGATE_LOG_ROTATE_KB", default_value_t = 102_400)]
    pub log_rotate_kb: u64,
    /// Rotated files kept per log (`<file>.1` is the newest).
    #[arg(long, env = "TOLLGATE_LOG_KEEP", default_value_t = 5)]
    pub log_keep: usize,
    /// Hours of usage kept for `GET /admin/usage`, in days (in Redis with `--redis-url`, else
    /// in this node's memory).
    #[arg(long, env = "TOLLGATE_USAGE_RETENTION_DAYS", default_value_t = 35)]
    pub usage_retention_days: u64,
    /// Log filter (e.g. `info`, `tollgate=debug`).
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info")]
    pub log_level: String,
}

/// A Redis namespace: a word that can sit in a key without changing its shape.
fn namespace(text: &str) -> Result<String, String> {
    let ok = text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(text.to_string())
    } else {
        Err("letters, digits, `-`, `_` and `.` only, up to 64".into())
    }
}

/// The `--estimate-tokenizer` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EstimateTokenizer {
    O200k,
    Cl100k,
    Bytes,
}

impl EstimateTokenizer {
    pub fn estimator(self) -> crate::pipeline::tokens::Estimator {
        use crate::pipeline::tokens::Estimator;
        match self {
            EstimateTokenizer::O200k => {
                Estimator::Tokenizer(std::sync::Arc::new(tollgate_tokenize::Tokenizer::o200k()))
            }
            EstimateTokenizer::Cl100k => {
                Estimator::Tokenizer(std::sync::Arc::new(tollgate_tokenize::Tokenizer::cl100k()))
            }
            EstimateTokenizer::Bytes => Estimator::Bytes,
        }
    }
}

/// `tollgate kb`: open (building when needed) the knowledge bases of a config file, or one
/// folder; print what each holds and, with a query, what it finds.
pub fn kb(
    config: Option<&Path>,
    folder: Option<(&Path, &Path)>,
    rebuild: bool,
    query: Option<&str>,
    results: usize,
) -> ExitCode {
    let mut opened: Vec<(String, std::sync::Arc<crate::kb::KnowledgeBase>)> = Vec::new();
    match (config, folder) {
        (Some(path), _) => {
            let snapshot = match crate::config::load(path, 1) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            for engine in snapshot.search.iter().flat_map(|s| s.engines.iter()) {
                if let crate::config::search::Backend::Local(Some(kb)) = &engine.backend {
                    opened.push((engine.name.clone(), kb.clone()));
                }
            }
            if opened.is_empty() {
                eprintln!("{}: no search engine of kind local", path.display());
                return ExitCode::FAILURE;
            }
        }
        (None, Some((docs, index))) => {
            match crate::kb::KnowledgeBase::open(docs, index, &docs.to_string_lossy(), rebuild) {
                Ok(kb) => opened.push((docs.display().to_string(), std::sync::Arc::new(kb))),
                Err(e) => {
                    eprintln!("tollgate kb: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, None) => {
            eprintln!("tollgate kb: give --config FILE, or --docs DIR with --index DIR");
            return ExitCode::FAILURE;
        }
    }
    for (name, kb) in &opened {
        let how = match kb.opened {
            crate::kb::Opened::Built(took) => format!("indexed in {} ms", took.as_millis()),
            crate::kb::Opened::Existing => "unchanged, index reused".to_string(),
        };
        println!("{name}: {} documents, {how}", kb.documents);
        let Some(q) = query else { continue };
        match kb.search(q, results) {
            Ok(found) => {
                for (i, f) in found.iter().enumerate() {
                    println!("  {}. {:.2}  {}  ({})", i + 1, f.score, f.title, f.path);
                }
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
