//! Concurrency slots: how many requests of one key are in flight at once on this node.
//!
//! A request takes a slot when it is admitted and gives it back once when it ends. A key's
//! entry exists only while one of its slots is taken (or a request waits for one), so the table
//! holds no idle state and never evicts: it is exactly as large as what is in flight, and a
//! slot can never be lost to an eviction while its request runs.
//!
//! Waiting is first come, first served: a request that finds every slot taken may queue (for
//! as long as its rule allows), and a slot given back goes straight to the oldest waiter, so a
//! newcomer cannot overtake it.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

const SHARDS: usize = 64;

/// A key as the slot table knows it: a 128-bit digest, so an entry holds no string and the
/// key is hashed once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotKey(u128);

#[derive(Default)]
struct Entry {
    taken: u64,
    /// A key shared through Redis: the slots this node holds a lease of (see
    /// [`crate::shared_slots`]); `None` for a key of this node alone, whose capacity each
    /// caller gives.
    lease: Option<u64>,
    /// The most slots taken at once since the lease was last trimmed.
    peak: u64,
    /// Requests waiting for a slot, oldest first. A waiter that gave up has dropped its
    /// receiver; it is skipped when a slot is handed on.
    waiters: VecDeque<oneshot::Sender<()>>,
}

impl Entry {
    fn take_one(&mut self) {
        self.taken += 1;
        self.peak = self.peak.max(self.taken);
    }

    /// Hand free slots, up to `capacity`, to the waiters still waiting, oldest first.
    fn serve_waiters(&mut self, capacity: u64) {
        while self.taken < capacity {
            let Some(waiter) = self.waiters.pop_front() else { break };
            if waiter.send(()).is_ok() {
                self.take_one();
            }
        }
    }

    /// Nothing taken, nobody waiting, nothing leased: the entry can go.
    fn idle(&self) -> bool {
        self.taken == 0 && self.waiters.is_empty() && self.lease.unwrap_or(0) == 0
    }
}

/// What asking for a slot got.
#[derive(Debug)]
pub enum Acquire {
    /// Taken; `in_use` slots of the key are now taken (this one included).
    Taken { in_use: u64 },
    /// Every slot is taken and the request may not wait (or the queue is full).
    Full { in_use: u64 },
    /// Every slot is taken; the request is queued. Await [`Waiting::wait`].
    Queued(Waiting),
}

/// A place in a key's queue.
#[derive(Debug)]
pub struct Waiting {
    rx: oneshot::Receiver<()>,
}

impl Waiting {
    /// Wait up to `timeout` for a slot: `true` once one is handed over (it is then this
    /// request's, to be released like any other), `false` if none came in time.
    pub async fn wait(mut self, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(result) => result.is_ok(),
            Err(_) => {
                // A slot handed over just as the time ran out is this request's: take it
                // rather than lose it.
                self.rx.close();
                self.rx.try_recv().is_ok()
            }
        }
    }
}

/// This node's slots, by key.
pub struct SlotTable {
    shards: Box<[Mutex<HashMap<u128, Entry, foldhash::fast::RandomState>>]>,
    hashers: [foldhash::quality::RandomState; 2],
}

impl Default for SlotTable {
    fn default() -> Self {
        SlotTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
            hashers: Default::default(),
        }
    }
}

impl SlotTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn key(&self, key: &str) -> SlotKey {
        SlotKey((u128::from(self.hashers[0].hash_one(key)) << 64) | u128::from(self.hashers[1].hash_one(key)))
    }

    fn shard(&self, key: SlotKey) -> std::sync::MutexGuard<'_, HashMap<u128, Entry, foldhash::fast::RandomState>> {
        self.shards[(key.0 as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Take one of `capacity` slots of `key`; when all are taken, queue if `max_waiters` allows
    /// (0: never wait).
    pub fn acquire(&self, key: SlotKey, capacity: u64, max_waiters: usize) -> Acquire {
        self.take(key, Some(capacity), max_waiters)
    }

    /// Take a slot of a shared key within this node's lease of it (none held: none free).
    pub fn acquire_leased(&self, key: SlotKey, max_waiters: usize) -> Acquire {
        self.take(key, None, max_waiters)
    }

    fn take(&self, key: SlotKey, capacity: Option<u64>, max_waiters: usize) -> Acquire {
        let mut shard = self.shard(key);
        let entry = shard.entry(key.0).or_default();
        let capacity = capacity.unwrap_or(entry.lease.unwrap_or(0));
        // Waiters go first (there are free slots with waiters only after a reload raised the
        // capacity): a newcomer does not take a slot a waiter is owed.
        entry.serve_waiters(capacity);
        if entry.taken < capacity {
            entry.take_one();
            return Acquire::Taken { in_use: entry.taken };
        }
        let in_use = entry.taken;
        entry.waiters.retain(|w| !w.is_closed());
        if entry.waiters.len() >= max_waiters {
            if entry.idle() {
                shard.remove(&key.0);
            }
            return Acquire::Full { in_use };
        }
        let (tx, rx) = oneshot::channel();
        entry.waiters.push_back(tx);
        Acquire::Queued(Waiting { rx })
    }

    /// Give a slot of `key` back: to the oldest waiter still waiting, else to the key.
    pub fn release(&self, key: SlotKey) {
        let mut shard = self.shard(key);
        let Some(entry) = shard.get_mut(&key.0) else {
            return;
        };
        while let Some(waiter) = entry.waiters.pop_front() {
            if waiter.send(()).is_ok() {
                // Handed over: the slot stays taken, by the waiter now.
                return;
            }
        }
        entry.taken = entry.taken.saturating_sub(1);
        if entry.idle() {
            shard.remove(&key.0);
        }
    }

    /// Set this node's lease of a shared key; waiters take what it frees. Returns the slots in
    /// use. A lease of 0 with nothing in use forgets the key.
    pub fn set_lease(&self, key: SlotKey, lease: u64) -> u64 {
        let mut shard = self.shard(key);
        let entry = shard.entry(key.0).or_default();
        entry.lease = Some(lease);
        entry.serve_waiters(lease);
        let in_use = entry.taken;
        if entry.idle() {
            shard.remove(&key.0);
        }
        in_use
    }

    /// Lower a shared key's lease to what is in use — or, with `keep_peak`, to the most that was
    /// in use at once since the last trim (so a steady load keeps what it keeps using) — and
    /// start the next peak from now: `(lease before, lease after, in use)`, or `None` for a key
    /// without a lease. Admissions see the lower lease at once, so what is then reported to
    /// Redis is never less than what this node may admit.
    pub fn trim_lease(&self, key: SlotKey, keep_peak: bool) -> Option<(u64, u64, u64)> {
        let mut shard = self.shard(key);
        let entry = shard.get_mut(&key.0)?;
        let before = entry.lease?;
        let keep = if keep_peak {
            entry.peak.max(entry.taken)
        } else {
            entry.taken
        };
        let lease = before.min(keep);
        entry.lease = Some(lease);
        entry.peak = entry.taken;
        Some((before, lease, entry.taken))
    }

    /// Requests of `key` waiting for a slot now.
    pub fn waiting_of(&self, key: SlotKey) -> u64 {
        self.shard(key)
            .get(&key.0)
            .map_or(0, |e| e.waiters.iter().filter(|w| !w.is_closed()).count() as u64)
    }

    /// A shared key's lease on this node.
    pub fn lease_of(&self, key: SlotKey) -> Option<u64> {
        self.shard(key).get(&key.0).and_then(|e| e.lease)
    }

    /// Slots of `key` taken now.
    pub fn in_use_of(&self, key: SlotKey) -> u64 {
        self.shard(key).get(&key.0).map_or(0, |e| e.taken)
    }

    /// Slots taken now, over every key (counted shard by shard: for tests and diagnostics, not
    /// the request path).
    pub fn in_use(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(|e| e.taken)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Keys with a slot taken or a request waiting.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_capacity_and_given_back() {
        let t = SlotTable::new();
        let k = t.key("a");
        for i in 1..=3 {
            assert!(matches!(t.acquire(k, 3, 0), Acquire::Taken { in_use } if in_use == i));
        }
        assert!(matches!(t.acquire(k, 3, 0), Acquire::Full { in_use: 3 }));
        t.release(k);
        assert_eq!(t.in_use_of(k), 2);
        assert!(matches!(t.acquire(k, 3, 0), Acquire::Taken { in_use: 3 }));
        for _ in 0..3 {
            t.release(k);
        }
        // Nothing in flight: nothing held.
        assert_eq!((t.keys(), t.in_use()), (0, 0));
        // A release of a key with nothing taken changes nothing.
        t.release(k);
        assert_eq!((t.keys(), t.in_use()), (0, 0));
    }

    #[test]
    fn keys_do_not_share_slots() {
        let t = SlotTable::new();
        let (a, b) = (t.key("a"), t.key("b"));
        assert!(matches!(t.acquire(a, 1, 0), Acquire::Taken { .. }));
        assert!(matches!(t.acquire(b, 1, 0), Acquire::Taken { .. }));
        assert!(matches!(t.acquire(a, 1, 0), Acquire::Full { .. }));
        assert_eq!(t.in_use(), 2);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_a_late_one_gives_up() {
        let t = std::sync::Arc::new(SlotTable::new());
        let k = t.key("a");
        assert!(matches!(t.acquire(k, 1, 4), Acquire::Taken { .. }));
        let Acquire::Queued(first) = t.acquire(k, 1, 4) else {
            panic!("not queued")
        };
        let Acquire::Queued(second) = t.acquire(k, 1, 4) else {
            panic!("not queued")
        };
        t.release(k);
        assert!(first.wait(Duration::from_millis(10)).await);
        // The second waits on; the slot is the first's until it is released.
        assert!(!second.wait(Duration::from_millis(10)).await);
        assert_eq!(t.in_use_of(k), 1);
        // A newcomer does not overtake a waiter, and a released slot skips the one that left.
        let Acquire::Queued(third) = t.acquire(k, 1, 4) else {
            panic!("not queued")
        };
        t.release(k);
        assert!(third.wait(Duration::from_millis(10)).await);
        t.release(k);
        assert_eq!((t.keys(), t.in_use()), (0, 0));
    }

    #[test]
    fn the_queue_is_bounded() {
        let t = SlotTable::new();
        let k = t.key("a");
        assert!(matches!(t.acquire(k, 1, 1), Acquire::Taken { .. }));
        let _waiting = t.acquire(k, 1, 1);
        assert!(matches!(t.acquire(k, 1, 1), Acquire::Full { in_use: 1 }));
    }

    #[test]
    fn a_shared_key_admits_within_its_lease_and_a_trim_stops_admissions_at_once() {
        let t = SlotTable::new();
        let k = t.key("shared");
        assert!(
            matches!(t.acquire_leased(k, 0), Acquire::Full { in_use: 0 }),
            "no lease, no slot"
        );
        assert_eq!(t.set_lease(k, 3), 0);
        for _ in 0..3 {
            assert!(matches!(t.acquire_leased(k, 0), Acquire::Taken { .. }));
        }
        assert!(matches!(t.acquire_leased(k, 0), Acquire::Full { in_use: 3 }));
        t.release(k);
        t.release(k);
        // Trimmed to the round's peak, the lease stays; trimmed again (a round later), it is
        // what is in use: the freed slots are not admitted again.
        assert_eq!(t.trim_lease(k, true), Some((3, 3, 1)));
        assert_eq!(t.trim_lease(k, true), Some((3, 1, 1)));
        assert!(matches!(t.acquire_leased(k, 0), Acquire::Full { in_use: 1 }));
        t.release(k);
        // The lease keeps the key until it is set to 0.
        assert_eq!(t.keys(), 1);
        assert_eq!(t.set_lease(k, 0), 0);
        assert_eq!(t.keys(), 0);
    }

    #[tokio::test]
    async fn a_larger_lease_serves_waiters() {
        let t = SlotTable::new();
        let k = t.key("shared");
        t.set_lease(k, 1);
        assert!(matches!(t.acquire_leased(k, 0), Acquire::Taken { .. }));
        let Acquire::Queued(w) = t.acquire_leased(k, 4) else {
            panic!("not queued")
        };
        assert_eq!(t.set_lease(k, 2), 2);
        assert!(w.wait(Duration::from_millis(10)).await);
    }
}
