//! Config reload: build a new snapshot and swap it in, or refuse and keep the old one.
//!
//! Three triggers lead here: SIGHUP, a change of the file's content (polled), and the admin API.
//! The first two also reload the TLS listener's certificate ([`CertStore`]).
//! Reloads are serialised; requests in flight keep the snapshot they started with.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{self, ConfigError};
use crate::live::LiveCell;
use crate::telemetry::Metrics;
use crate::tls::CertStore;

/// Owns the path and the swap.
pub struct Reloader {
    path: PathBuf,
    cell: Arc<LiveCell>,
    metrics: Arc<Metrics>,
    version: AtomicU64,
    options: config::LoadOptions,
    /// Hash of the file content last loaded (or refused), so polling reacts to changes only.
    last_content: Mutex<u64>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        cell: Arc<LiveCell>,
        metrics: Arc<Metrics>,
        version: u64,
        options: config::LoadOptions,
    ) -> Self {
        let hash = content_hash(&path).unwrap_or(0);
        metrics.config_version.set(version as i64);
        Reloader {
            path,
            cell,
            metrics,
            version: AtomicU64::new(version),
            options,
            last_content: Mutex::new(hash),
        }
    }

    /// Load the file now; on success the new snapshot serves the next request.
    pub fn reload(&self, trigger: &str) -> Result<u64, ConfigError> {
        let mut last = self.last_content.lock().unwrap_or_else(|p| p.into_inner());
        *last = content_hash(&self.path).unwrap_or(0);
        let next = self.version.load(Ordering::Relaxed) + 1;
        match config::load_with(&self.path, next, self.options) {
            Ok(snapshot) => {
                config::log_warnings(&snapshot);
                self.cell.store(snapshot);
                self.version.store(next, Ordering::Relaxed);
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                self.metrics.config_version.set(next as i64);
                tracing::info!(trigger, version = next, path = %self.path.display(), "config reloaded");
                Ok(next)
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(trigger, error = %e, "config reload refused; the previous config keeps serving");
                Err(e)
            }
        }
    }

    /// Reload if the file's content changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = content_hash(&self.path);
        let changed = {
            let last = self.last_content.lock().unwrap_or_else(|p| p.into_inner());
            now.is_some_and(|h| h != *last)
        };
        if changed {
            let _ = self.reload("file_change");
        }
    }
}

fn content_hash(path: &std::path::Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Start the SIGHUP listener and (when `poll` is non-zero) the file poller on their own thread;
/// both reload the TLS certificate too, when there is one.
pub fn spawn_watchers(reloader: Arc<Reloader>, certs: Option<Arc<CertStore>>, poll: Duration) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("tollgate-reload".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGHUP; reload by signal is off");
                        return;
                    }
                };
                let mut tick = tokio::time::interval(if poll.is_zero() {
                    Duration::from_secs(3600)
                } else {
                    poll
                });
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = hup.recv() => {
                            let (r, c) = (reloader.clone(), certs.clone());
                            let _ = tokio::task::spawn_blocking(move || {
                                let _ = r.reload("sighup");
                                if let Some(c) = c {
                                    let _ = c.reload("sighup");
                                }
                            })
                            .await;
                        }
                        _ = tick.tick() => {
                            if !poll.is_zero() {
                                let (r, c) = (reloader.clone(), certs.clone());
                                let _ = tokio::task::spawn_blocking(move || {
                                    r.reload_if_changed();
                                    if let Some(c) = c {
                                        c.reload_if_changed();
                                    }
                                })
                                .await;
                            }
                        }
                    }
                }
            });
        })?;
    Ok(())
}
