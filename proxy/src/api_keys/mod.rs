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
//!
//! Records do not pile up forever: a key the admin API issued, once revoked or expired for
//! longer than the retention (`--key-retention-days`), has its record purged (at start, on each
//! change, and hourly with Redis). That key is refused either way: nothing in the config knows
//! it. A revocation of a *config* key is never purged, since forgetting it would bring the key
//! back; nor is a record written before records said where their key came from.

mod record;
mod store;

pub use record::{new_key, KeyRecord, KeyTable, Origin};
pub use store::{redis_prefix, KeyBackend, KeyStoreError, RedisStore};

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tollgate_limits::Clock;

use crate::key_hash::KeyHash;
use store::{read_file, write_file, PURGE_SCRIPT, WRITE_SCRIPT};

/// How often a node checks Redis for key changes.
pub const POLL: Duration = Duration::from_millis(250);

/// How often nodes sharing keys through Redis purge ended keys' records.
pub const PURGE_EVERY: Duration = Duration::from_secs(3_600);

/// Run-time keys and revocations.
pub struct KeyRegistry {
    table: ArcSwap<KeyTable>,
    backend: KeyBackend,
    clock: Arc<dyn Clock>,
    /// How long an ended API key's record is kept; `None`: forever.
    retention: Option<Duration>,
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
    /// Open the registry, loading what the backend holds (and purging what has outlived
    /// `retention`).
    pub async fn open(
        backend: KeyBackend,
        clock: Arc<dyn Clock>,
        retention: Option<Duration>,
    ) -> Result<KeyRegistry, KeyStoreError> {
        let reg = KeyRegistry {
            table: ArcSwap::from_pointee(KeyTable::default()),
            backend,
            clock,
            retention,
            version: std::sync::atomic::AtomicI64::new(-1),
            writes: tokio::sync::Mutex::new(()),
        };
        match &reg.backend {
            KeyBackend::File(path) => {
                let mut records = read_file(path)?;
                if reg.drop_purgeable(&mut records) > 0 {
                    write_file(path, &records)?;
                }
                reg.table.store(Arc::new(KeyTable::build(records)));
            }
            KeyBackend::Redis(_) => {
                // An unreachable Redis is not fatal: the poller fills the table when it answers.
                if let Err(e) = reg.refresh().await {
                    tracing::error!(error = %e, "key store: cannot read keys from redis yet");
                } else if let Err(e) = reg.purge().await {
                    tracing::error!(error = %e, "key store: purging ended keys failed");
                }
            }
        }
        Ok(reg)
    }

    /// Remove the records that have outlived the retention; how many went.
    fn drop_purgeable(&self, records: &mut Vec<KeyRecord>) -> usize {
        let (now, before) = (self.clock.now_ms(), records.len());
        records.retain(|r| !r.purgeable(now, self.retention));
        let gone = before - records.len();
        log_purged(gone);
        gone
    }

    /// With Redis: delete the records that have outlived the retention, judged on what Redis
    /// holds now (each deleted only if still as read), then reload. How many went. The file
    /// backend purges on each write.
    pub async fn purge(&self) -> Result<usize, KeyStoreError> {
        let KeyBackend::Redis(redis) = &self.backend else {
            return Ok(0);
        };
        let now = self.clock.now_ms();
        let flat: Vec<String> = redis.eval("return redis.call('HGETALL', KEYS[1])", Vec::new()).await?;
        let ended: Vec<(String, String)> = flat
            .chunks_exact(2)
            .filter(|pair| serde_json::from_str::<KeyRecord>(&pair[1]).is_ok_and(|r| r.purgeable(now, self.retention)))
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        let gone = Self::delete_unchanged(redis, ended).await?;
        log_purged(gone);
        if gone > 0 {
            self.refresh().await?;
        }
        Ok(gone)
    }

    /// Delete each `(field, record as read)` whose field still holds that record (another node
    /// may have rewritten it since); bumps the version when any went. How many went.
    async fn delete_unchanged(redis: &RedisStore, read: Vec<(String, String)>) -> Result<usize, KeyStoreError> {
        if read.is_empty() {
            return Ok(0);
        }
        let args = read.into_iter().flat_map(|(field, json)| [field, json]).collect();
        let gone: i64 = redis.eval(PURGE_SCRIPT, args).await?;
        Ok(usize::try_from(gone).unwrap_or(0))
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
                self.drop_purgeable(&mut all);
                write_file(path, &all)?;
                self.table.store(Arc::new(KeyTable::build(all)));
            }
            KeyBackend::Redis(redis) => {
                let json = serde_json::to_string(&record).map_err(|e| KeyStoreError::Redis(e.to_string()))?;
                redis.eval::<i64>(WRITE_SCRIPT, vec![record.hash.clone(), json]).await?;
                drop(_guard);
                self.refresh().await?;
            }
        }
        Ok(())
    }

    /// Reload the table from Redis if its version moved (no-op for the file backend).
    pub async fn refresh(&self) -> Result<bool, KeyStoreError> {
        let KeyBackend::Redis(redis) = &self.backend else {
            return Ok(false);
        };
        let version: Option<i64> = redis.eval("return redis.call('GET', KEYS[2])", Vec::new()).await?;
        let version = version.unwrap_or(0);
        if version == self.version.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        let flat: Vec<String> = redis.eval("return redis.call('HGETALL', KEYS[1])", Vec::new()).await?;
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

fn log_purged(records: usize) {
    if records > 0 {
        tracing::info!(records, "key store: purged keys revoked or expired past the retention");
    }
}

/// Poll Redis for key changes, forever, on the current runtime; purge ended keys' records every
/// [`PURGE_EVERY`].
pub async fn poll_forever(registry: Arc<KeyRegistry>) {
    let mut down = false;
    let mut last_purge = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        if !down && last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            if let Err(e) = registry.purge().await {
                tracing::error!(error = %e, "key store: purging ended keys failed");
            }
        }
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
    use crate::key_hash::hash_key;
    use fred::prelude::*;
    use tollgate_limits::ManualClock;

    #[tokio::test]
    async fn file_backend_persists_revocations_and_expiry_is_checked_at_lookup() {
        let dir = std::env::temp_dir().join(format!("tollgate-keys-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let _ = std::fs::remove_file(&path);
        let clock = Arc::new(ManualClock::new(1_000));
        let reg = KeyRegistry::open(KeyBackend::File(path.clone()), clock.clone(), None)
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

        let reopened = KeyRegistry::open(KeyBackend::File(path.clone()), clock, None)
            .await
            .unwrap();
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

    const DAY: u64 = 86_400_000;
    const MONTH: Option<Duration> = Some(Duration::from_secs(30 * 86_400));

    /// One record of each kind, all ended (or not) at day 1; ids say what each is.
    fn mixed_records() -> Vec<KeyRecord> {
        let api = |id: &str, revoked: Option<u64>, expires: Option<u64>| {
            let (_, mut r) = new_key("dept-a", id.to_string(), 0, expires);
            r.revoked_ms = revoked;
            r
        };
        let mut config_revocation = api("config-revoked", Some(DAY), None);
        config_revocation.origin = Some(Origin::Config);
        let mut legacy = api("legacy-revoked", Some(DAY), None);
        legacy.origin = None;
        vec![
            api("api-revoked", Some(DAY), None),
            api("api-expired", None, Some(DAY)),
            api("api-revoked-later", Some(20 * DAY), None),
            api("api-live", None, None),
            api("api-expires-later", None, Some(400 * DAY)),
            config_revocation,
            legacy,
        ]
    }

    fn ids(reg: &KeyRegistry) -> Vec<String> {
        let mut ids: Vec<String> = reg.table().records().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn ended_api_keys_are_purged_after_the_retention_and_config_revocations_never() {
        let dir = std::env::temp_dir().join(format!("tollgate-keys-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        write_file(&path, &mixed_records()).unwrap();

        // Day 30: nothing has been over for 30 days yet.
        let clock = Arc::new(ManualClock::new(30 * DAY));
        let reg = KeyRegistry::open(KeyBackend::File(path.clone()), clock.clone(), MONTH)
            .await
            .unwrap();
        assert_eq!(reg.table().records().count(), 7);

        // Day 31, at start: the two API keys over since day 1 go, from the file too.
        clock.set_ms(31 * DAY);
        let reg = KeyRegistry::open(KeyBackend::File(path.clone()), clock.clone(), MONTH)
            .await
            .unwrap();
        let kept = [
            "api-expires-later",
            "api-live",
            "api-revoked-later",
            "config-revoked",
            "legacy-revoked",
        ];
        assert_eq!(ids(&reg), kept);
        assert_eq!(read_file(&path).unwrap().len(), 5);

        // Day 60, on a change: the one revoked on day 20 goes with it.
        clock.set_ms(60 * DAY);
        let (_, fresh) = new_key("dept-a", "fresh".into(), 60 * DAY, None);
        reg.put(fresh).await.unwrap();
        assert_eq!(
            ids(&reg),
            [
                "api-expires-later",
                "api-live",
                "config-revoked",
                "fresh",
                "legacy-revoked"
            ]
        );
        assert_eq!(read_file(&path).unwrap().len(), 5);

        // A retention too long to count in milliseconds keeps everything: this one is 2^64 + 384
        // ms, which cut to 64 bits would be 384 ms.
        let forever = Some(Duration::from_secs(18_446_744_073_709_552));
        assert!(!read_file(&path)
            .unwrap()
            .iter()
            .any(|r| r.purgeable(10_000 * DAY, forever)));

        // Years on, with retention off: nothing goes.
        clock.set_ms(5_000 * DAY);
        let kept_all = KeyRegistry::open(KeyBackend::File(path.clone()), clock, None)
            .await
            .unwrap();
        assert_eq!(kept_all.table().records().count(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn with_redis_a_purge_deletes_only_records_unchanged_since_it_read_them() {
        let counters =
            tollgate_limits::RedisCounters::new("redis://127.0.0.1:6379", Duration::from_millis(500)).unwrap();
        counters
            .connect(Duration::from_secs(2))
            .await
            .expect("these tests need a redis server on 127.0.0.1:6379");
        let prefix = format!("tollgate-test-{}-{}:{{keys}}", std::process::id(), line!());
        let backend = |client: &Client| {
            KeyBackend::Redis(RedisStore {
                client: client.clone(),
                timeout: Duration::from_millis(500),
                prefix: prefix.clone(),
            })
        };
        let client = counters.client().clone();
        let clock = Arc::new(ManualClock::new(DAY));
        let writer = KeyRegistry::open(backend(&client), clock.clone(), None).await.unwrap();
        for r in mixed_records() {
            writer.put(r).await.unwrap();
        }

        // A purge deletes only what is as it read it: a record another node rewrote in between
        // (here given a later expiry) stays.
        let KeyBackend::Redis(redis) = &writer.backend else {
            panic!("a redis backend")
        };
        let stale = |id: &str| {
            let r = writer.table().by_id(id).unwrap().clone();
            (r.hash.clone(), serde_json::to_string(&r).unwrap())
        };
        let (expired, revoked) = (stale("api-expired"), stale("api-revoked"));
        let mut rewritten = writer.table().by_id("api-expired").unwrap().clone();
        rewritten.expires_ms = Some(400 * DAY);
        writer.put(rewritten).await.unwrap();
        let gone = KeyRegistry::delete_unchanged(redis, vec![expired, revoked])
            .await
            .unwrap();
        assert_eq!(gone, 1, "only the unchanged record goes");

        // On day 31 another node purges what has been over for 30 days: nothing more here but a
        // second API key revoked on day 1.
        let (_, mut late) = new_key("dept-a", "api-revoked-2".into(), 0, None);
        late.revoked_ms = Some(DAY);
        writer.put(late).await.unwrap();
        clock.set_ms(31 * DAY);
        let node = KeyRegistry::open(backend(&client), clock.clone(), None).await.unwrap();
        let node = KeyRegistry {
            retention: MONTH,
            ..node
        };
        assert_eq!(node.purge().await.unwrap(), 1);
        assert_eq!(
            ids(&node),
            [
                "api-expired",
                "api-expires-later",
                "api-live",
                "api-revoked-later",
                "config-revoked",
                "legacy-revoked"
            ]
        );
        // Every node sees it: the version moved.
        assert!(writer.refresh().await.unwrap());
        assert_eq!(ids(&writer), ids(&node));
        assert_eq!(node.purge().await.unwrap(), 0);
        let _: () = client
            .del(vec![format!("{prefix}:table"), format!("{prefix}:version")])
            .await
            .unwrap();
    }
}
