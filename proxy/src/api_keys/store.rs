//! Where run-time key changes are kept: a Redis hash and version counter shared by every node
//! (changed by Lua scripts), or a JSON state file written atomically.

use std::path::PathBuf;
use std::time::Duration;

use fred::prelude::*;

use super::record::KeyRecord;

pub(super) const WRITE_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
";

/// Delete each field (odd ARGV) still holding the record it was judged on (even ARGV): a record
/// rewritten since (e.g. by another node) stays. Bumps the version when anything went.
pub(super) const PURGE_SCRIPT: &str = r"
local gone = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    gone = gone + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if gone > 0 then redis.call('INCR', KEYS[2]) end
return gone
";

/// Where changes are kept.
pub enum KeyBackend {
    File(PathBuf),
    Redis(RedisStore),
}

/// The key store in Redis.
pub struct RedisStore {
    pub client: Client,
    /// One command's timeout (a script gets a few).
    pub timeout: Duration,
    /// The Redis keys' common start ([`redis_prefix`]).
    pub prefix: String,
}

impl RedisStore {
    /// Run `script` on the table and version keys, within a few command timeouts.
    pub(super) async fn eval<R: fred::types::FromValue>(
        &self,
        script: &str,
        args: Vec<String>,
    ) -> Result<R, KeyStoreError> {
        let keys = vec![format!("{}:table", self.prefix), format!("{}:version", self.prefix)];
        let call = self.client.eval::<R, _, _, _>(script.to_string(), keys, args);
        tokio::time::timeout(self.timeout * 4, call)
            .await
            .map_err(|_| KeyStoreError::Redis("timed out".into()))?
            .map_err(|e| KeyStoreError::Redis(e.to_string()))
    }
}

/// The start of the key store's Redis keys, `tollgate:{keys}` or `tollgate:<namespace>:{keys}`:
/// then `…:table` (records by hash) and `…:version`.
pub fn redis_prefix(namespace: &str) -> String {
    match namespace {
        "" => "tollgate:{keys}".to_string(),
        ns => format!("tollgate:{ns}:{{keys}}"),
    }
}

/// A store failure, said without any key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store file {0}: {1}")]
    File(String, String),
    #[error("key store in redis: {0}")]
    Redis(String),
}

pub(super) fn read_file(path: &PathBuf) -> Result<Vec<KeyRecord>, KeyStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| KeyStoreError::File(path.display().to_string(), e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(KeyStoreError::File(path.display().to_string(), e.to_string())),
    }
}

pub(super) fn write_file(path: &PathBuf, records: &[KeyRecord]) -> Result<(), KeyStoreError> {
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
