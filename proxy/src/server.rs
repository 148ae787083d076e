//! Assembles the process: config, metrics, the public and admin listeners, reload watchers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::api_keys::{self, KeyBackend, KeyRegistry, RedisStore};
use crate::cli::RunOpts;
use crate::config;
use crate::drain::{Drain, SignalWatch};
use crate::edge::{EdgeApp, EdgeOptions};
use crate::error::ErrorCode;
use crate::gateway::{BodyLimits, Gateway, GatewayState};
use crate::live::LiveCell;
use crate::pipeline::admit::quotas::{self, Backend, QuotaStore};
use crate::pipeline::admit::rate_limits::{HotKeys, LimitStores, RateLimiter};
use crate::pipeline::admit::Admission;
use crate::pipeline::cache::shared::{Shared, SharedOptions};
use crate::pipeline::cache::AnswerCache;
use crate::pipeline::head::HeadLimits;
use crate::reload::{self, Reloader};
use crate::telemetry::access::AccessLog;
use crate::telemetry::Metrics;
use crate::tls::CertStore;
use crate::upstream::{Connections, UpstreamOptions};
use tollgate_limits::redis_key::tagged_key;
use tollgate_limits::{
    BucketTable, ExactBuckets, LocalCounters, SharedSlotOptions, SharedSlots, SlotTable, SyncOptions, Syncer,
    SystemClock, TableOptions,
};
use tollgate_semantic::{load_runtime, EmbedPool, ModelFiles, PoolSize, Store, StoreLimits};

/// Run the gateway until SIGTERM/SIGINT.
pub fn run(opts: RunOpts) -> anyhow::Result<()> {
    let load_options = config::LoadOptions {
        offline: false,
        completion_reserve: opts.completion_reserve,
    };
    let snapshot = config::load_with(&opts.config, 1, load_options)?;
    config::log_warnings(&snapshot);
    tracing::info!(path = %opts.config.display(), models = snapshot.model_names.len(), "config loaded");
    let cache_policy = snapshot.cache.clone();
    let rerank = snapshot.search.as_ref().and_then(|s| s.rerank.clone());
    let cell = Arc::new(LiveCell::new(snapshot));
    let metrics = Arc::new(Metrics::new().context("creating metrics")?);
    let reloader = Arc::new(Reloader::new(
        opts.config.clone(),
        cell.clone(),
        metrics.clone(),
        1,
        load_options,
    ));

    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.threads
    };
    let conf = ServerConf {
        threads,
        work_stealing: opts.work_stealing,
        grace_period_seconds: Some(opts.shutdown_grace_secs),
        graceful_shutdown_timeout_seconds: Some(opts.shutdown_grace_secs),
        upstream_keepalive_pool_size: opts.upstream_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let log_files = crate::telemetry::access::LogFiles {
        access: opts.access_log.clone(),
        audit: opts.audit_log.clone(),
        rotation: crate::telemetry::sink::Rotation {
            max_bytes: opts.log_rotate_kb.saturating_mul(1 << 10).max(1),
            keep: opts.log_keep,
        },
    };
    let access_log = AccessLog::start(opts.log_format, &log_files).context("opening the access and audit logs")?;
    let shared_rt = shared_state_runtime()?;
    let redis_timeout = Duration::from_millis(opts.redis_timeout_ms);
    let redis = match &opts.redis_url {
        Some(url) => Some(quotas::start_redis(url, redis_timeout, &shared_rt)?),
        None => None,
    };
    let (backend, key_backend) = match &redis {
        Some(r) => (
            Backend::Redis(r.clone()),
            KeyBackend::Redis(RedisStore {
                client: r.client().clone(),
                timeout: redis_timeout,
                prefix: api_keys::redis_prefix(&opts.redis_namespace),
            }),
        ),
        None => (
            Backend::Local(LocalCounters::new()),
            KeyBackend::File(key_store_file(&opts)),
        ),
    };
    let quotas = QuotaStore::new(backend, Arc::new(SystemClock), &opts.redis_namespace);
    let node_id = opts.node_id.clone().unwrap_or_else(default_node_id);
    let limits = start_limits(&opts, redis.as_ref(), &metrics, &node_id, &shared_rt);
    let cache_embedder = match &cache_policy {
        Some(c) if c.semantic => start_embedder(
            &opts,
            &opts.cache_embedder,
            PoolSize {
                threads: opts.cache_embed_threads,
                queue: opts.cache_embed_queue,
                max_batch: opts.cache_embed_batch,
            },
        ),
        _ => None,
    };
    // Its own threads and queue: a search's passages never delay a cache lookup.
    let search_embedder = rerank.and_then(|r| {
        start_embedder(
            &opts,
            r.embedder.as_deref().unwrap_or(&opts.cache_embedder),
            PoolSize {
                threads: opts.search_embed_threads,
                queue: opts.search_embed_queue,
                max_batch: opts.search_embed_batch,
            },
        )
    });
    let cache = answer_cache(
        &opts,
        cache_policy.as_deref(),
        cache_embedder,
        &metrics,
        redis.as_ref(),
        &node_id,
        &shared_rt,
    );
    let retention =
        (opts.key_retention_days > 0).then(|| Duration::from_secs(opts.key_retention_days.saturating_mul(86_400)));
    let keys = Arc::new(shared_rt.block_on(KeyRegistry::open(key_backend, Arc::new(SystemClock), retention))?);
    if redis.is_some() {
        shared_rt.spawn(api_keys::poll_forever(keys.clone()));
    }
    let usage = crate::telemetry::usage::UsageLedger::new(
        opts.usage_retention_days,
        redis.as_ref().map(|r| {
            let prefix = match opts.redis_namespace.as_str() {
                "" => "tollgate:usage".to_string(),
                ns => format!("tollgate:{ns}:usage"),
            };
            (r.client().clone(), prefix, redis_timeout)
        }),
    );
    shared_rt.spawn(crate::telemetry::usage::UsageLedger::run(
        Arc::downgrade(&usage),
        Duration::from_secs(1),
    ));
    let idle_timeout = Duration::from_secs(opts.upstream_idle_timeout_secs);
    let upstreams = Connections::new(opts.upstream_pool_size, idle_timeout);
    let drain = Arc::new(Drain::default());
    let state = Arc::new(GatewayState {
        live: cell.clone(),
        upstreams,
        metrics: metrics.clone(),
        access_log: access_log.clone(),
        admission: Admission {
            quotas,
            limits,
            metrics: metrics.clone(),
            estimator: opts.estimate_tokenizer.estimator(),
        },
        keys: keys.clone(),
        max_body_bytes: opts.max_body_bytes,
        upstream: UpstreamOptions {
            connect_timeout: Duration::from_millis(opts.upstream_connect_timeout_ms),
            read_timeout: Duration::from_millis(opts.upstream_read_timeout_ms),
            idle_timeout,
            total_timeout: (opts.upstream_total_timeout_ms > 0)
                .then(|| Duration::from_millis(opts.upstream_total_timeout_ms)),
        },
        drain: drain.clone(),
        head_limits: HeadLimits {
            max_headers: opts.max_headers,
            max_header_bytes: opts.max_header_bytes,
            max_target_bytes: opts.max_request_target_bytes,
        },
        cache: cache.clone(),
        search_cache: Arc::new(crate::search::cache::SearchCache::new(opts.search_cache_entries)),
        search_embedder,
        tracer: start_tracer(&opts, &metrics, &shared_rt)?,
        usage: usage.clone(),
        body_limits: BodyLimits {
            timeout: Duration::from_secs(opts.body_timeout_secs),
            min_rate: opts.body_min_rate,
            grace: Duration::from_secs(opts.body_rate_grace_secs),
        },
    });
    let sweeper = state.clone();
    shared_rt.spawn(async move {
        // Idle upstream connections past their timeout are closed even when no request comes.
        let every = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            tokio::time::sleep(every).await;
            sweeper.upstreams.pool.sweep();
            sweeper.metrics.upstream_idle.set(sweeper.upstreams.pool.idle() as i64);
        }
    });
    let prober = state.clone();
    shared_rt.spawn(async move {
        crate::upstream::probe::probe_forever(&prober.live, &prober.upstreams, prober.upstream).await;
    });
    let refusals = metrics.downstream_refusals.clone();
    let mut gateway = pingora::proxy::http_proxy(&server.configuration, Gateway::new(state));
    if opts.h2c {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        gateway.server_options = Some(options);
    }
    let edge = EdgeApp::new(
        gateway,
        EdgeOptions {
            head_timeout: Duration::from_secs(opts.head_timeout_secs.max(1)),
            max_head_bytes: opts.max_header_bytes + opts.max_request_target_bytes,
            // The target, the method and the version.
            max_line_bytes: opts.max_request_target_bytes + 32,
            keepalive_idle_secs: opts.keepalive_idle_secs,
            keepalive_requests: (opts.keepalive_requests > 0).then_some(opts.keepalive_requests),
            max_conns_per_ip: opts.max_connections_per_ip,
            h2c: opts.h2c,
        },
        cell.clone(),
        Arc::new(move |code: ErrorCode| refusals.with_label_values(&[code.as_str()]).inc()),
    );
    let mut proxy = Service::new("tollgate".to_string(), edge);
    // Flushes happen where the gateway decides (each streamed chunk, the end of a body); a write
    // buffer larger than Pingora's one-MSS default lets a response header travel with its body.
    let buffers = L4BufferSettings::default().write(opts.downstream_write_buffer_bytes);
    proxy.add_listener(ListenerConfig::tcp(opts.listen.as_str()).l4_buffer(buffers));
    let certs = match (&opts.tls_listen, &opts.tls_cert, &opts.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            let store = Arc::new(CertStore::load(cert, key, metrics.clone()).context("loading the TLS certificate")?);
            let mut tls = pingora::listeners::tls::TlsSettings::intermediate("", "")?;
            tls.set_cert_resolver(store.clone());
            tls.enable_h2();
            proxy.add_listener(ListenerConfig::tcp(addr.as_str()).tls(tls).l4_buffer(buffers));
            Some(store)
        }
        _ => None,
    };
    let mut admin = Service::new(
        "tollgate-admin".to_string(),
        AdminApp {
            snapshot: cell,
            reloader: reloader.clone(),
            metrics,
            keys,
            audit: access_log.clone(),
            cache,
            usage: usage.clone(),
        },
    );
    admin.threads = Some(1);
    admin.add_tcp(&opts.admin_listen);
    server.add_service(proxy);
    server.add_service(admin);

    reload::spawn_watchers(reloader, certs, Duration::from_millis(opts.config_poll_ms))
        .context("starting reload watchers")?;
    tracing::info!(listen = %opts.listen, tls_listen = opts.tls_listen.as_deref().unwrap_or("-"), admin = %opts.admin_listen, threads, "tollgate serving");
    let flush = access_log.clone();
    let signals = SignalWatch {
        drain,
        delay: Duration::from_secs(opts.shutdown_drain_delay_secs),
        grace: Duration::from_secs(opts.shutdown_grace_secs),
        before_exit: Arc::new(move || flush.flush()),
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    access_log.flush();
    Ok(())
}

/// A runtime for process-wide shared state (Redis connections, the key poller), on its own
/// thread for the life of the process; the gateway's worker runtimes only send it requests.
fn shared_state_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tollgate-shared")
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("tollgate-shared-owner".into())
        .spawn(move || {
            rt.block_on(std::future::pending::<()>());
        })?;
    Ok(handle)
}

/// The rate limiter: this node's bucket table, and with Redis the background syncer of shared
/// limits (started on `rt`) and exact mode. Redis refusing scripts is reported loudly here and
/// in metrics; limits then follow their `on_redis_error` policy, never quietly per node.
fn start_limits(
    opts: &RunOpts,
    redis: Option<&tollgate_limits::RedisCounters>,
    metrics: &Metrics,
    node_id: &str,
    rt: &tokio::runtime::Handle,
) -> RateLimiter {
    let table = Arc::new(BucketTable::new(TableOptions {
        max_keys: opts.limits_max_keys,
        idle_release_ms: opts.limits_idle_release_ms,
    }));
    let clock: Arc<dyn tollgate_limits::Clock> = Arc::new(SystemClock);
    let slots = Arc::new(SlotTable::new());
    let mut sync_stats = None;
    let mut shared_slots = None;
    let node_id = node_id.to_string();
    let exact = redis.map(|r| {
        let syncer = Syncer::new(
            table.clone(),
            r.client().clone(),
            clock.clone(),
            SyncOptions {
                node_id: node_id.clone(),
                interval: Duration::from_millis(opts.limits_sync_interval_ms.max(1)),
                timeout: Duration::from_millis(opts.redis_timeout_ms.max(1)),
                max_keys_per_round: 50_000,
                nodes_key: match limits_namespace(opts) {
                    "" => tollgate_limits::sync::NODES_KEY.to_string(),
                    ns => tagged_key(&format!("tollgate:limits:{ns}:"), &["nodes"], ""),
                },
            },
        );
        sync_stats = Some(syncer.stats.clone());
        let shared = Arc::new(SharedSlots::new(
            slots.clone(),
            r.client().clone(),
            clock.clone(),
            SharedSlotOptions {
                node_id: node_id.clone(),
                lease_timeout: Duration::from_millis(opts.limits_slot_lease_ms.max(3)),
                timeout: Duration::from_millis(opts.redis_timeout_ms.max(1)),
                interval: Duration::from_millis(opts.limits_sync_interval_ms.max(1)),
            },
            syncer.stats.clone(),
        ));
        rt.spawn(shared.clone().run());
        shared_slots = Some(shared);
        match rt.block_on(syncer.check_scripts()) {
            Ok(nodes) => tracing::info!(nodes, "limits: shared through redis"),
            Err(e) if tollgate_limits::sync::is_script_refusal(&e) => tracing::error!(
                error = %e,
                "limits: REDIS REFUSES SCRIPTS: shared and exact rate limits cannot be enforced across nodes; they follow their on_redis_error policy (see tollgate_limit_redis_scripts_ok)"
            ),
            Err(e) => tracing::error!(error = %e, "limits: redis not answering at start; rules follow their on_redis_error policy until it does"),
        }
        rt.spawn(syncer.run());
        ExactBuckets::new(r.client().clone())
    });
    metrics.watch_limits(table.clone(), sync_stats);
    RateLimiter::new(
        LimitStores {
            table,
            slots,
            shared_slots,
            exact,
        },
        Duration::from_millis(opts.limits_exact_timeout_ms.max(1)),
        clock,
        opts.completion_reserve,
        limits_namespace(opts),
        HotKeys {
            rps: opts.limits_hot_key_rps,
            log_interval_ms: opts.log_repeat_interval_secs.saturating_mul(1000),
        },
    )
}

/// The trace exporter, when an OTLP endpoint is configured (flags or `OTEL_*` variables).
fn start_tracer(
    opts: &RunOpts,
    metrics: &Metrics,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<Option<crate::telemetry::trace::Tracer>> {
    let endpoint = match (&opts.otlp_traces_endpoint, &opts.otlp_endpoint) {
        (Some(e), _) if !e.is_empty() => e.clone(),
        (_, Some(base)) if !base.is_empty() => format!("{}/v1/traces", base.trim_end_matches('/')),
        _ => return Ok(None),
    };
    let options = crate::telemetry::trace::TraceOptions {
        endpoint: endpoint.clone(),
        service: opts.otel_service_name.clone(),
        sample: opts.trace_sample,
        queue: opts.trace_queue,
        batch: opts.trace_batch,
        timeout: Duration::from_millis(opts.trace_export_timeout_ms.max(1)),
        retries: opts.trace_retries,
    };
    let tracer = crate::telemetry::trace::Tracer::start(&options, metrics.trace.clone(), rt)
        .context("starting the trace exporter")?;
    tracing::info!(endpoint = %endpoint, sample = tracer.sample, "traces exported over OTLP/HTTP");
    Ok(Some(tracer))
}

/// An embedding pool of sentence model `name` (under `--models-dir`, or a directory), for the
/// semantic cache or search's ranking, started when the config at start uses it (a section
/// added by a later reload goes without: exact cache repeats only, ranking by words only).
/// `None`, said at start, when the model does not load.
fn start_embedder(opts: &RunOpts, name: &str, size: PoolSize) -> Option<Arc<EmbedPool>> {
    let embedder = std::path::Path::new(name);
    let dir = if embedder.is_dir() {
        embedder.to_path_buf()
    } else {
        opts.models_dir.join("embedders").join(name)
    };
    let started = load_runtime(&opts.models_dir.join("onnxruntime/libonnxruntime.so"))
        .and_then(|()| EmbedPool::start(&ModelFiles::in_dir(&dir), size));
    match started {
        Ok(pool) => {
            tracing::info!(model = %dir.display(), threads = size.threads, "embedder loaded");
            Some(Arc::new(pool))
        }
        Err(e) => {
            tracing::error!(error = %e, "the embedder did not load (run scripts/setup.sh, or see --models-dir and --cache-embedder): the cache answers exact repeats only, search ranks passages by their words only");
            None
        }
    }
}

/// The answer cache, when the config has one: the store always, the embedding pool when the
/// semantic step is on and the model loaded (else the cache answers exact repeats only). With Redis, entries are shared with the other nodes ([`Shared`]). A `[cache]`
/// section added by a later reload gets a store with no pool and no sharing.
fn answer_cache(
    opts: &RunOpts,
    policy: Option<&crate::config::cache::CachePolicy>,
    embedder: Option<Arc<EmbedPool>>,
    metrics: &Metrics,
    redis: Option<&tollgate_limits::RedisCounters>,
    node: &str,
    rt: &tokio::runtime::Handle,
) -> Option<Arc<AnswerCache>> {
    let store = Store::new(StoreLimits {
        max_bytes: opts.cache_max_mb.saturating_mul(1 << 20),
        max_entry_bytes: opts.cache_max_entry_kb.saturating_mul(1 << 10),
        ..StoreLimits::default()
    });
    let pool = policy.filter(|p| p.semantic).and(embedder);
    let cache = Arc::new(AnswerCache {
        store,
        pool,
        embed_wait: Duration::from_millis(opts.cache_embed_wait_ms),
        metrics: metrics.cache.clone(),
        shared: std::sync::OnceLock::new(),
    });
    if let (Some(redis), Some(_)) = (redis, policy) {
        let base = match opts.redis_namespace.as_str() {
            "" => "tollgate:cache".to_string(),
            ns => format!("tollgate:cache:{ns}"),
        };
        let shared = Shared::start(
            redis.client(),
            SharedOptions {
                base,
                node: node.to_string(),
                embedder: opts.cache_embedder.clone(),
                log_len: opts.cache_redis_log_len.max(1),
                timeout: Duration::from_millis(opts.redis_timeout_ms.max(1)),
            },
            Arc::downgrade(&cache),
            metrics.cache.clone(),
            rt,
        );
        let _ = cache.shared.set(shared);
    }
    let sweep = Duration::from_secs(opts.cache_sweep_secs.max(1));
    rt.spawn(AnswerCache::expire_forever(Arc::downgrade(&cache), sweep));
    let stats = Arc::downgrade(&cache);
    metrics.watch_cache(Box::new(move || {
        stats.upgrade().map(|c| c.store.stats()).unwrap_or_default()
    }));
    Some(cache)
}

fn limits_namespace(opts: &RunOpts) -> &str {
    match opts.limits_namespace.as_str() {
        "" => &opts.redis_namespace,
        ns => ns,
    }
}

/// Host name, process id and a random suffix: unique per process.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".to_string());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// Where run-time key changes are kept without Redis: `--key-store-file`, or beside the config.
fn key_store_file(opts: &RunOpts) -> std::path::PathBuf {
    opts.key_store_file.clone().unwrap_or_else(|| {
        let mut name = opts.config.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".keys.json");
        opts.config.with_file_name(name)
    })
}
