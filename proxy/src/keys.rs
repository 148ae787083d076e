//! Keys managed at run time (admin API): created, rotated, revoked, expiring — without a restart.
//!
//! Config keys stay in the config file; this registry holds what the admin API changed on top of
//! them: keys it created, and revocations (of either kind). Lookups read an immutable table
//! behind `arc-swap`; every change builds a new table.
//!
//! Where changes live:
//! - with Redis: a hash shared by every node plus a version counter, both updated by one Lua
//!   script; each node polls the version every [`POLL`] and reloads the table when it moved, so a
//!   change is seen everywhere within a second and a node that was cut off catches up as soon as
//!   Redis answers again;
//! - without Redis: a JSON state file, written atomically (temp file + rename) on each change
//!   and read at start, so a restart loses no key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tollgate_limits::Clock;

use crate::config::consumers::{format_hash, hash_key, parse_hash, KeyHash};

/// How often a node checks Redis for key changes.
pub const POLL: Duration = Duration::from_millis(250);

const TABLE_KEY: &str = "tollgate:{keys}:table";
const VERSION_KEY: &str = "tollgate:{keys}:version";

const WRITE_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
";

/// A key record as stored (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRecord {
    pub consumer: String,
    pub id: String,
    /// `sha256:<hex>`.
    pub hash: String,
    pub created_ms: u64,
    #[serde(default)]
    pub expires_ms: Option<u64>,
    #[serde(default)]
    pub revoked_ms: Option<u64>,
}

/// The registry's view: records by key hash.
#[derive(Debug, Default)]
pub struct KeyTable {
    pub by_hash: foldhash::HashMap<KeyHash, KeyRecord>,
}

impl KeyTable {
    fn build(records: impl IntoIterator<Item = KeyRecord>) -> KeyTable {
        let mut by_hash = foldhash::HashMap::default();
        for r in records {
            if let Ok(h) = parse_hash(&r.hash) {
                by_hash.insert(h, r);
            }
        }
        KeyTable { by_hash }
    }

    pub fn records(&self) -> impl Iterator<Item = &KeyRecord> {
        self.by_hash.values()
    }

    pub fn by_id(&self, id: &str) -> Option<&KeyRecord> {
        self.by_hash.values().find(|r| r.id == id)
    }
}

/// Where changes are kept.
pub enum KeyBackend {
    File(PathBuf),
    Redis { client: Client, timeout: Duration },
}

/// A store failure, said without any key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store file {0}: {1}")]
    File(String, String),
    #[error("key store in redis: {0}")]
    Redis(String),
}

/// Run-time keys and revocations.
pub struct KeyRegistry {
    table: ArcSwap<KeyTable>,
    backend: KeyBackend,
    clock: Arc<dyn Clock>,
    version: std::sync::atomic::AtomicI64,
    writes: tokio::sync::Mutex<()>,
}

/// What a lookup in the registry says about a presented key.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The registry knows nothing of it (config keys decide).
    Unknown,
    /// Revoked or expired.
    Refused,
    /// A live key of this consumer, with this id.
    Valid { consumer: &'a str, id: &'a str },
}

impl KeyRegistry {
    /// Open the registry, loading what the backend holds.
    pub async fn open(backend: KeyBackend, clock: Arc<dyn Clock>) -> Result<KeyRegistry, KeyStoreError> {
        let reg = KeyRegistry {
            table: ArcSwap::from_pointee(KeyTable::default()),
            backend,
            clock,
            version: std::sync::atomic::AtomicI64::new(-1),
            writes: tokio::sync::Mutex::new(()),
        };
        match &reg.backend {
            KeyBackend::File(path) => {
                let records = read_file(path)?;
                reg.table.store(Arc::new(KeyTable::build(records)));
            }
            KeyBackend::Redis { .. } => {
                // An unreachable Redis is not fatal: the poller fills the table when it answers.
                if let Err(e) = reg.refresh().await {
                    tracing::error!(error = %e, "key store: cannot read keys from redis yet");
                }
            }
        }
        Ok(reg)
    }

    pub fn table(&self) -> Arc<KeyTable> {
        self.table.load_full()
    }

    /// What the registry says about the key whose hash is `hash`.
    pub fn check<'t>(&self, table: &'t KeyTable, hash: &KeyHash) -> Verdict<'t> {
        match table.by_hash.get(hash) {
            None => Verdict::Unknown,
            Some(r) => {
                let now = self.clock.now_ms();
                if r.revoked_ms.is_some() || r.expires_ms.is_some_and(|e| e <= now) {
                    Verdict::Refused
                } else {
                    Verdict::Valid {
                        consumer: &r.consumer,
                        id: &r.id,
                    }
                }
            }
        }
    }

    /// Add a new key (or a revocation of an existing one) and publish it.
    pub async fn put(&self, record: KeyRecord) -> Result<(), KeyStoreError> {
        let _guard = self.writes.lock().await;
        match &self.backend {
            KeyBackend::File(path) => {
                let mut all: Vec<KeyRecord> = self
                    .table
                    .load()
                    .records()
                    .filter(|r| r.hash != record.hash)
                    .cloned()
                    .collect();
                all.push(record);
                write_file(path, &all)?;
                self.table.store(Arc::new(KeyTable::build(all)));
            }
            KeyBackend::Redis { client, timeout } => {
                let json = serde_json::to_string(&record).map_err(|e| KeyStoreError::Redis(e.to_string()))?;
                let call = client.eval::<i64, _, _, _>(
                    WRITE_SCRIPT,
                    vec![TABLE_KEY.to_string(), VERSION_KEY.to_string()],
                    vec![record.hash.clone(), json],
                );
                tokio::time::timeout(*timeout * 4, call)
                    .await
                    .map_err(|_| KeyStoreError::Redis("timed out".into()))?
                    .map_err(|e| KeyStoreError::Redis(e.to_string()))?;
                drop(_guard);
                self.refresh().await?;
            }
        }
        Ok(())
    }

    /// Reload the table from Redis if its version moved (no-op for the file backend).
    pub async fn refresh(&self) -> Result<bool, KeyStoreError> {
        let KeyBackend::Redis { client, timeout } = &self.backend else {
            return Ok(false);
        };
        let version: Option<i64> = eval(client, *timeout, "return redis.call('GET', KEYS[1])", VERSION_KEY).await?;
        let version = version.unwrap_or(0);
        if version == self.version.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        let flat: Vec<String> = eval(client, *timeout, "return redis.call('HGETALL', KEYS[1])", TABLE_KEY).await?;
        let records = flat
            .chunks(2)
            .filter_map(|pair| pair.get(1))
            .filter_map(|j| serde_json::from_str::<KeyRecord>(j).ok());
        self.table.store(Arc::new(KeyTable::build(records)));
        self.version.store(version, std::sync::atomic::Ordering::Release);
        Ok(true)
    }

    /// Now, by the registry's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// Run a read-only script on one key, within a few command timeouts.
async fn eval<R: fred::types::FromValue>(
    client: &Client,
    timeout: Duration,
    script: &str,
    key: &str,
) -> Result<R, KeyStoreError> {
    let call = client.eval::<R, _, _, _>(script.to_string(), vec![key.to_string()], Vec::<String>::new());
    tokio::time::timeout(timeout * 4, call)
        .await
        .map_err(|_| KeyStoreError::Redis("timed out".into()))?
        .map_err(|e| KeyStoreError::Redis(e.to_string()))
}

/// A new key and its record for `consumer`.
pub fn new_key(consumer: &str, id: String, now_ms: u64, expires_ms: Option<u64>) -> (String, KeyRecord) {
    let key = crate::config::consumers::generate_key();
    let record = KeyRecord {
        consumer: consumer.to_string(),
        id,
        hash: format_hash(&hash_key(key.as_bytes())),
        created_ms: now_ms,
        expires_ms,
        revoked_ms: None,
    };
    (key, record)
}

fn read_file(path: &PathBuf) -> Result<Vec<KeyRecord>, KeyStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| KeyStoreError::File(path.display().to_string(), e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(KeyStoreError::File(path.display().to_string(), e.to_string())),
    }
}

fn write_file(path: &PathBuf, records: &[KeyRecord]) -> Result<(), KeyStoreError> {
    let shown = path.display().to_string();
    let json = serde_json::to_vec_pretty(records).map_err(|e| KeyStoreError::File(shown.clone(), e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| KeyStoreError::File(shown, e.to_string()))
}

/// Poll Redis for key changes, forever, on the current runtime.
pub async fn poll_forever(registry: Arc<KeyRegistry>) {
    let mut down = false;
    loop {
        tokio::time::sleep(POLL).await;
        match registry.refresh().await {
            Ok(_) => {
                if down {
                    tracing::warn!("key store: redis is answering again; keys reconciled");
                    down = false;
                }
            }
            Err(e) => {
                if !down {
                    tracing::error!(error = %e, "key store: cannot reach redis; serving the last known keys");
                    down = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_limits::ManualClock;

    #[tokio::test]
    async fn file_backend_persists_revocations_and_expiry_is_checked_at_lookup() {
        let dir = std::env::temp_dir().join(format!("tollgate-keys-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let _ = std::fs::remove_file(&path);
        let clock = Arc::new(ManualClock::new(1_000));
        let reg = KeyRegistry::open(KeyBackend::File(path.clone()), clock.clone())
            .await
            .unwrap();
        let (key, rec) = new_key("dept-a", "k1".into(), 1_000, Some(5_000));
        let hash = hash_key(key.as_bytes());
        reg.put(rec.clone()).await.unwrap();
        assert_eq!(
            reg.check(&reg.table(), &hash),
            Verdict::Valid {
                consumer: "dept-a",
                id: "k1"
            }
        );
        clock.set_ms(5_000);
        assert_eq!(reg.check(&reg.table(), &hash), Verdict::Refused, "expired");
        clock.set_ms(2_000);
        reg.put(KeyRecord {
            revoked_ms: Some(2_000),
            ..rec
        })
        .await
        .unwrap();

        let reopened = KeyRegistry::open(KeyBackend::File(path.clone()), clock).await.unwrap();
        assert_eq!(
            reopened.check(&reopened.table(), &hash),
            Verdict::Refused,
            "revocation survives a restart"
        );
        assert_eq!(reopened.table().records().count(), 1);
        assert!(
            !std::fs::read_to_string(&path).unwrap().contains(&key),
            "the key itself was stored"
        );
    }
}
