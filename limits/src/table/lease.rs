//! The sync side of the table: what a node reports of its shared keys, what Redis grants back,
//! and the wait for a new key's first grant.

use super::*;

/// A key's state sent to Redis at a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub key: Box<str>,
    pub limit: Limit,
    /// This node's balance of the key.
    pub balance: f64,
    pub used: f64,
    pub self_granted: f64,
    /// Demand refused for want of lease since the last report.
    pub wanted: f64,
    /// Give the whole lease back and forget the key.
    pub release: bool,
}

/// Redis's answer to a report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// Added to the node's balance (negative: the node gave that much back).
    pub top_up: f64,
    pub weight: f64,
    /// Everything available on all nodes after this sync.
    pub global: f64,
}

impl BucketTable {
    /// For a reservation of `id` its implicit first lease refused, whether to try again:
    /// `Some(true)` once Redis's first grant is in (taking that refusal's one retry), `None`
    /// while it is awaited; `Some(false)` when no such refusal is owed a retry (a key not held or
    /// not shared, one refused by a granted lease, or whose refusals have had their retries).
    fn first_lease_retry(&self, KeyId(id): KeyId) -> Option<bool> {
        let mut shard = self.shard(id);
        let Some(s) = shard.map.get_mut(&id).and_then(|e| e.shared.as_mut()) else {
            return Some(false);
        };
        if s.first_lease_refusals == 0 {
            return Some(false);
        }
        if !s.granted {
            return None;
        }
        s.first_lease_refusals -= 1;
        Some(true)
    }

    /// After a reservation of the shared key `id` was refused: wait, at most `wait`, for the
    /// first grant if it was the implicit first lease (`capacity / nodes`, rounded down) that
    /// refused it; whether to try again (`false` at once for a refusal by a granted lease, or a
    /// key not shared). A limit smaller than the number of nodes gives each an implicit lease of
    /// nothing, and a request larger than `capacity / nodes` never fits one, yet the whole limit
    /// may be free. The syncer reports a new key at once, so this is one Redis round trip, once
    /// per key; a grant that came between the refusal and this call counts (the refusal was
    /// recorded with the key, under its shard's lock).
    pub async fn first_grant(&self, id: KeyId, wait: std::time::Duration) -> bool {
        // Most refusals are by a granted lease: answered without the shared waker.
        if let Some(retry) = self.first_lease_retry(id) {
            return retry;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let granted = self.first_grants.notified();
            let mut granted = std::pin::pin!(granted);
            // Registered before the check, so a grant between the two is not missed.
            granted.as_mut().enable();
            if let Some(retry) = self.first_lease_retry(id) {
                return retry;
            }
            if !self.store_ok() || tokio::time::timeout_at(deadline, granted).await.is_err() {
                return false;
            }
        }
    }

    /// The shared keys due for a sync: those that used or refused something since the last
    /// report (from each shard's queue); with `full`, also those holding a lease (once a second,
    /// so the share follows the other nodes') and idle ones (to give the lease back) — a scan of
    /// every key, which the syncer does about once a second rather than every round. Each is
    /// marked in flight until [`Self::apply`] or [`Self::restore`].
    pub fn due_reports(&self, now_ms: u64, max: usize, full: bool) -> Vec<Report> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let Shard { map, dirty } = &mut *guard;
            let mut still_queued = Vec::new();
            for id in dirty.drain(..) {
                let Some(e) = map.get_mut(&id) else { continue };
                let Some(s) = &mut e.shared else { continue };
                if s.in_flight || out.len() >= max {
                    // Reported once the answer in flight is in (or next round).
                    still_queued.push(id);
                    continue;
                }
                s.queued = false;
                out.push(report(e, now_ms, self.opts.idle_release_ms));
            }
            *dirty = still_queued;
            if !full {
                continue;
            }
            for e in map.values_mut() {
                if out.len() >= max {
                    return out;
                }
                let Some(s) = &mut e.shared else { continue };
                if s.in_flight || s.queued {
                    continue;
                }
                let idle = now_ms.saturating_sub(e.last_used_ms);
                let holding = now_ms.saturating_sub(s.last_report_ms) >= 1_000;
                if holding || idle >= self.opts.idle_release_ms {
                    out.push(report(e, now_ms, self.opts.idle_release_ms));
                }
            }
        }
        out
    }

    /// Apply Redis's answer to `report`.
    pub fn apply(&self, report: &Report, grant: Grant, now_ms: u64) {
        let id = self.id(&report.key);
        let mut guard = self.shard(id);
        let Shard { map, dirty } = &mut *guard;
        let Some(e) = map.get_mut(&id) else {
            return;
        };
        if report.release {
            if e.last_used_ms + self.opts.idle_release_ms <= now_ms {
                map.remove(&id);
                return;
            }
            // Used again while the release was on its way (its balance went back to the pool):
            // start over on a fresh implicit lease, charged with what was used meanwhile.
            let used_meanwhile = e.shared.as_ref().map_or(0.0, |s| s.used);
            let last_used = e.last_used_ms;
            *e = self.new_entry(e.limit, now_ms, Some(&report.key));
            e.last_used_ms = last_used;
            e.bucket.adjust(f64::INFINITY, used_meanwhile);
            if let Some(s) = &mut e.shared {
                s.used = used_meanwhile;
                queue(dirty, id, s);
            }
            return;
        }
        let Some(s) = &mut e.shared else { return };
        s.in_flight = false;
        s.last_report_ms = now_ms;
        if !std::mem::replace(&mut s.granted, true) {
            self.first_grants.notify_waiters();
        }
        e.bucket.add(grant.top_up);
        s.weight = grant.weight.clamp(0.0, 1.0);
        s.global = grant.global;
        s.global_at_ms = now_ms;
    }

    /// Redis did not answer `report`: keep what it carried for the next sync.
    pub fn restore(&self, report: &Report) {
        let id = self.id(&report.key);
        let mut guard = self.shard(id);
        let Shard { map, dirty } = &mut *guard;
        let Some(e) = map.get_mut(&id) else {
            return;
        };
        let Some(s) = &mut e.shared else { return };
        s.in_flight = false;
        s.used += report.used;
        s.self_granted += report.self_granted;
        s.wanted += report.wanted;
        queue(dirty, id, s);
    }
}

/// The report of a shared entry, which goes in flight.
fn report(e: &mut Entry, now_ms: u64, idle_release_ms: u64) -> Report {
    let release = now_ms.saturating_sub(e.last_used_ms) >= idle_release_ms;
    let balance = e.bucket.level();
    let limit = e.limit;
    let (key, used, self_granted, wanted) = match &mut e.shared {
        Some(s) => {
            s.in_flight = true;
            (
                s.key.clone(),
                std::mem::take(&mut s.used),
                std::mem::take(&mut s.self_granted),
                std::mem::take(&mut s.wanted),
            )
        }
        None => (Box::from(""), 0.0, 0.0, 0.0),
    };
    Report {
        key,
        limit,
        balance,
        used,
        self_granted,
        wanted,
        release,
    }
}
