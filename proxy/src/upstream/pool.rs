//! Idle keep-alive connections to providers, kept for the next request to the same peer.
//!
//! Pingora's connector keeps its own pool, but each connection put back there gets a watcher
//! task (to notice the provider closing it) and each one taken out is checked with a
//! `getpeername`; on a small request that bookkeeping costs as much as the proxying. Here an idle
//! connection is just parked: it is checked once, without blocking, when it is taken after
//! having idled a while (a closed or chatty connection is dropped), connections idle past the
//! timeout are dropped when their peer is next used and by a periodic [`Pool::sweep`], and the
//! rare connection the provider closed a moment before it was reused fails its write or read and
//! is retried once on a fresh one by the caller. New connections (TCP, TLS) still come from
//! Pingora's connector.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// A connection idle for less than this is reused without a liveness check.
const CHECK_AFTER: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    since: Instant,
}

#[derive(Default)]
struct Parked {
    /// Per peer (Pingora's reuse hash: address, TLS, SNI, CA…), oldest first.
    by_peer: HashMap<u64, Vec<Idle>>,
    total: usize,
}

/// Idle upstream connections, shared by all worker threads.
pub struct Pool {
    parked: Mutex<Parked>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// At most `max_idle` connections in all, each kept at most `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            parked: Mutex::new(Parked::default()),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently parked live connection to `peer`, if any.
    pub fn take(&self, peer: u64) -> Option<Stream> {
        let now = Instant::now();
        loop {
            let (found, expired) = {
                let mut parked = self.parked.lock().ok()?;
                let list = parked.by_peer.get_mut(&peer)?;
                let keep_from = list
                    .iter()
                    .position(|i| now.duration_since(i.since) < self.idle_timeout)
                    .unwrap_or(list.len());
                let expired: Vec<Idle> = list.drain(..keep_from).collect();
                let found = list.pop();
                parked.total -= expired.len() + usize::from(found.is_some());
                (found, expired)
            };
            // Closing sockets happens outside the lock.
            drop(expired);
            let mut idle = found?;
            if now.duration_since(idle.since) < CHECK_AFTER || is_quiet(&mut idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Park a connection whose response was read to its end. Dropped (closed) when the pool is full.
    pub fn put(&self, peer: u64, stream: Stream) {
        let Ok(mut parked) = self.parked.lock() else { return };
        if parked.total >= self.max_idle {
            drop(parked);
            drop(stream);
            return;
        }
        parked.total += 1;
        parked.by_peer.entry(peer).or_default().push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Close every connection idle past the timeout.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        if let Ok(mut parked) = self.parked.lock() {
            for list in parked.by_peer.values_mut() {
                let keep_from = list
                    .iter()
                    .position(|i| now.duration_since(i.since) < self.idle_timeout)
                    .unwrap_or(list.len());
                expired.extend(list.drain(..keep_from));
            }
            parked.by_peer.retain(|_, list| !list.is_empty());
            parked.total -= expired.len();
        }
        drop(expired);
    }

    /// Connections parked now.
    pub fn idle(&self) -> usize {
        self.parked.lock().map_or(0, |p| p.total)
    }
}

/// Whether an idle connection has nothing to say: no bytes, no close. A provider that closed it
/// (or sent something unasked) makes it unusable for the next request.
fn is_quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::loopback_pair;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_parked_connection_is_handed_back_to_its_peer_only() {
        let pool = Pool::new(8, Duration::from_secs(60));
        let (client, _server) = loopback_pair().await;
        pool.put(1, client);
        assert_eq!(pool.idle(), 1);
        assert!(pool.take(2).is_none());
        assert!(pool.take(1).is_some());
        assert!(pool.take(1).is_none());
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_full_pool_closes_what_it_cannot_keep() {
        let pool = Pool::new(1, Duration::from_secs(60));
        let (a, _sa) = loopback_pair().await;
        let (b, _sb) = loopback_pair().await;
        pool.put(1, a);
        pool.put(1, b);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed() {
        let pool = Pool::new(8, Duration::ZERO);
        let (a, _sa) = loopback_pair().await;
        let (b, _sb) = loopback_pair().await;
        pool.put(1, a);
        pool.put(2, b);
        pool.sweep();
        assert_eq!(pool.idle(), 0);
        let (c, _sc) = loopback_pair().await;
        pool.put(1, c);
        assert!(pool.take(1).is_none(), "expired on the way out too");
    }

    #[tokio::test]
    async fn a_connection_the_provider_closed_is_not_reused() {
        let (client, mut server) = loopback_pair().await;
        let mut client = client;
        assert!(is_quiet(&mut client));
        server.shutdown().await.unwrap();
        drop(server);
        // The close reaches the client socket asynchronously; wait for it without a clock.
        let mut quiet = true;
        for _ in 0..1000 {
            tokio::task::yield_now().await;
            quiet = is_quiet(&mut client);
            if !quiet {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!quiet);
    }
}
