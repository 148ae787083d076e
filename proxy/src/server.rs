//! Assembles the process: config, metrics, the public and admin listeners, reload watchers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::cli::RunOpts;
use crate::config::{self, SnapshotCell};
use crate::gateway::{Gateway, GatewayState};
use crate::keys::{self, KeyBackend, KeyRegistry};
use crate::quota::{self, Backend, QuotaStore};
use crate::reload::{self, Reloader};
use crate::telemetry::access::AccessLog;
use crate::telemetry::Metrics;
use crate::upstream::UpstreamOptions;
use tollgate_limits::{LocalCounters, SystemClock};

/// Run the gateway until SIGTERM/SIGINT.
pub fn run(opts: RunOpts) -> anyhow::Result<()> {
    let snapshot = config::load(&opts.config, 1)?;
    tracing::info!(path = %opts.config.display(), models = snapshot.model_names.len(), "config loaded");
    let cell = Arc::new(SnapshotCell::new(snapshot));
    let metrics = Arc::new(Metrics::new().context("creating metrics")?);
    let reloader = Arc::new(Reloader::new(opts.config.clone(), cell.clone(), metrics.clone(), 1));

    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.threads
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(opts.shutdown_grace_secs),
        graceful_shutdown_timeout_seconds: Some(opts.shutdown_grace_secs),
        upstream_keepalive_pool_size: opts.upstream_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let access_log = AccessLog::start(opts.log_format).context("starting the access-log writer")?;
    let shared_rt = shared_state_runtime()?;
    let redis_timeout = Duration::from_millis(opts.redis_timeout_ms);
    let redis = match &opts.redis_url {
        Some(url) => Some(quota::start_redis(url, redis_timeout, &shared_rt)?),
        None => None,
    };
    let (backend, key_backend) = match &redis {
        Some(r) => (
            Backend::Redis(r.clone()),
            KeyBackend::Redis {
                client: r.client().clone(),
                timeout: redis_timeout,
            },
        ),
        None => (
            Backend::Local(LocalCounters::new()),
            KeyBackend::File(key_store_file(&opts)),
        ),
    };
    let quotas = QuotaStore::new(backend, Arc::new(SystemClock));
    let keys = Arc::new(shared_rt.block_on(KeyRegistry::open(key_backend, Arc::new(SystemClock)))?);
    if redis.is_some() {
        shared_rt.spawn(keys::poll_forever(keys.clone()));
    }
    let connector = Connector::new(Some(ConnectorOptions::new(opts.upstream_pool_size)));
    let state = Arc::new(GatewayState {
        snapshot: cell.clone(),
        connector,
        metrics: metrics.clone(),
        access_log: access_log.clone(),
        quotas,
        keys: keys.clone(),
        max_body_bytes: opts.max_body_bytes,
        upstream: UpstreamOptions {
            connect_timeout: Duration::from_millis(opts.upstream_connect_timeout_ms),
            read_timeout: Duration::from_millis(opts.upstream_read_timeout_ms),
            idle_timeout: Duration::from_secs(opts.upstream_idle_timeout_secs),
        },
    });
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, Gateway::new(state), "tollgate");
    // Flushes happen where the gateway decides (each streamed chunk, the end of a body); a write
    // buffer larger than Pingora's one-MSS default lets a response header travel with its body.
    let buffers = L4BufferSettings::default().write(opts.downstream_write_buffer_bytes);
    proxy.add_listener(ListenerConfig::tcp(opts.listen.as_str()).l4_buffer(buffers));
    let mut admin = Service::new(
        "tollgate-admin".to_string(),
        AdminApp {
            snapshot: cell,
            reloader: reloader.clone(),
            metrics,
            keys,
            audit: access_log.clone(),
        },
    );
    admin.threads = Some(1);
    admin.add_tcp(&opts.admin_listen);
    server.add_service(proxy);
    server.add_service(admin);

    reload::spawn_watchers(reloader, Duration::from_millis(opts.config_poll_ms)).context("starting reload watchers")?;
    tracing::info!(listen = %opts.listen, admin = %opts.admin_listen, threads, "tollgate serving");
    server.run(RunArgs::default());
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

/// Where run-time key changes are kept without Redis: `--key-store-file`, or beside the config.
fn key_store_file(opts: &RunOpts) -> std::path::PathBuf {
    opts.key_store_file.clone().unwrap_or_else(|| {
        let mut name = opts.config.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".keys.json");
        opts.config.with_file_name(name)
    })
}
