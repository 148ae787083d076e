//! Active health checks: for models whose `health.probe_interval_ms` is set, a cheap `GET`
//! (`health.probe_path`, `/models` by default) to each of their targets on that interval, so a
//! target is ejected before a client meets its failure and let back in as soon as it answers
//! again (without waiting for a client's request to probe it). The result goes into the same
//! health the passive checks feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tollgate_limits::clock::{Clock, SystemClock};

use super::{peer, send, Connections, UpstreamOptions};
use crate::config::{Route, Target};
use crate::live::LiveCell;

/// How often the prober looks for a target due a check.
const TICK: Duration = Duration::from_millis(100);

/// Most of a probe's answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Probe the targets of the served config forever.
pub async fn probe_forever(live: &LiveCell, conns: &Connections, opts: UpstreamOptions) {
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    loop {
        tokio::time::sleep(TICK).await;
        let snapshot = live.load();
        let now = SystemClock.now_ms();
        let mut due: Vec<(&Arc<Route>, &Target)> = Vec::new();
        for route in snapshot.ordered.iter().filter(|r| r.health.probe_interval_ms > 0) {
            for t in &route.targets {
                let key = (t.provider.name.clone(), t.model.clone());
                let at = last.entry(key).or_insert(0);
                if now >= *at + route.health.probe_interval_ms {
                    *at = now;
                    due.push((route, t));
                }
            }
        }
        for (route, target) in due {
            let well = check(conns, &opts, route, target).await;
            let now = SystemClock.now_ms();
            if well {
                target.health.succeeded(now);
            } else if target.health.failed(now, &route.health) {
                tracing::warn!(provider = %target.provider.name, target = %target.model, "target ejected by an active health check");
            }
        }
    }
}

/// One check: the target answers the probe path with a status below 500 in time.
async fn check(conns: &Connections, opts: &UpstreamOptions, route: &Route, target: &Target) -> bool {
    let provider = &target.provider;
    let timeout = route
        .timeouts
        .first_byte
        .unwrap_or(opts.read_timeout)
        .min(Duration::from_secs(5));
    let mut peer = peer(provider, opts);
    peer.options.read_timeout = Some(timeout);
    let mut head = BytesMut::with_capacity(256);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(provider.path_prefix.as_bytes());
    head.extend_from_slice(route.health.probe_path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(provider.host_header.as_bytes());
    head.extend_from_slice(b"\r\ncontent-length: 0\r\nuser-agent: tollgate-health-check\r\n");
    if let Some(auth) = &provider.auth {
        head.extend_from_slice(b"authorization: ");
        head.extend_from_slice(auth.expose().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let call = async {
        let mut up = send(conns, &peer, &head, &Bytes::new()).await.ok()?;
        let status = up.status();
        let mut read = 0;
        while let Ok(Some(chunk)) = up.read_body().await {
            read += chunk.len();
            if read > MAX_ANSWER {
                return Some(status);
            }
        }
        super::release(conns, &peer, up);
        Some(status)
    };
    matches!(tokio::time::timeout(timeout * 2, call).await, Ok(Some(s)) if s.as_u16() < 500)
}
