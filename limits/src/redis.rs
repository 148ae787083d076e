//! Window counters in Redis, shared by every gateway node.
//!
//! One Lua script per increment (`INCR`, and `PEXPIREAT` to the window's end on the first one)
//! makes the count atomic across nodes: with a limit of N, exactly N increments see a count of
//! at most N, whichever nodes they come from. Keys carry a `{hash tag}` so a Redis Cluster keeps
//! each counter on one slot.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fred::prelude::*;

const INCR_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return n
";

/// Give one back, only to a counter that still exists: a window that expired meanwhile is not
/// brought back as a negative count without an expiry.
const DECR_SCRIPT: &str = r"
if (tonumber(redis.call('GET', KEYS[1])) or 0) > 0 then return redis.call('DECR', KEYS[1]) end
return 0
";

/// Why Redis could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(String),
}

/// A connection for commands sent on the request path: opened (with the base client's config
/// and reconnect policy) by its first use, on that use's runtime — in the gateway, the one
/// serving requests — so a command is sent and its answer read by the thread that waits for it,
/// instead of hopping to the runtime that drives the base client and back (two cross-thread
/// wake-ups per command). That runtime must live as long as the handle.
#[derive(Clone)]
pub(crate) struct RequestPathClient {
    base: Client,
    own: Arc<OnceLock<Client>>,
}

impl RequestPathClient {
    pub(crate) fn new(base: Client) -> Self {
        RequestPathClient {
            base,
            own: Arc::new(OnceLock::new()),
        }
    }

    pub(crate) fn get(&self) -> &Client {
        self.own.get_or_init(|| {
            let c = self.base.clone_new();
            // Connects, and reconnects by the same policy, in the background of this runtime.
            drop(c.connect());
            c
        })
    }
}

/// A handle to Redis for counters; cheap to clone.
#[derive(Clone)]
pub struct RedisCounters {
    client: Client,
    /// What [`RedisCounters::incr`] counts on.
    hot: RequestPathClient,
    timeout: Duration,
}

impl RedisCounters {
    /// A client for `url` (`redis://host:port/db`). Call [`RedisCounters::connect`] from inside a
    /// tokio runtime that lives as long as the client.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        let config = Config::from_url(url).map_err(|e| RedisError::Redis(e.to_string()))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()
            .map_err(|e| RedisError::Redis(e.to_string()))?;
        Ok(RedisCounters {
            hot: RequestPathClient::new(client.clone()),
            client,
            timeout,
        })
    }

    /// Start connecting (and reconnecting forever) in the current runtime; waits up to
    /// `wait` for the first connection.
    pub async fn connect(&self, wait: Duration) -> Result<(), RedisError> {
        let _task = self.client.connect();
        match tokio_timeout(wait, self.client.wait_for_connect()).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(RedisError::Redis(e.to_string())),
            None => Err(RedisError::Timeout(wait)),
        }
    }

    /// The underlying client, for other shared state kept in the same Redis.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The per-command timeout this handle was built with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Add one to `key` for the window ending at `end_ms`; returns the new count. The first
    /// call opens this handle's request-path connection on the current runtime
    /// ([`RequestPathClient`]).
    pub async fn incr(&self, key: &str, end_ms: u64) -> Result<u64, RedisError> {
        let n = self.run(INCR_SCRIPT, key, vec![end_ms as i64]).await?;
        Ok(n.max(0) as u64)
    }

    /// Take back one increment of `key` (a request that was counted but not served).
    pub async fn decr(&self, key: &str) -> Result<(), RedisError> {
        self.run(DECR_SCRIPT, key, Vec::new()).await.map(drop)
    }

    /// Run a counter script on `key` over the request-path connection, within the timeout.
    async fn run(&self, script: &'static str, key: &str, args: Vec<i64>) -> Result<i64, RedisError> {
        let call = self.hot.get().eval::<i64, _, _, _>(script, vec![key.to_string()], args);
        match tokio_timeout(self.timeout, call).await {
            Some(Ok(n)) => Ok(n),
            Some(Err(e)) => Err(RedisError::Redis(e.to_string())),
            None => Err(RedisError::Timeout(self.timeout)),
        }
    }
}

/// `Some(output)` if `fut` finished within `d`.
async fn tokio_timeout<F: std::future::Future>(d: Duration, fut: F) -> Option<F::Output> {
    tokio::time::timeout(d, fut).await.ok()
}
