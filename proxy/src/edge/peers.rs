//! Open connections per client address, capped.
//!
//! Counted at accept and released when the connection ends, in shards so that accepts on
//! different workers rarely meet on one lock. A connection from a trusted proxy is not counted:
//! many clients share it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

/// Connections open per client address.
#[derive(Debug, Default)]
pub struct PeerCounts {
    shards: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
}

impl PeerCounts {
    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => (u128::from(*v6) ^ (u128::from(*v6) >> 64)) as usize,
        };
        &self.shards[h.wrapping_mul(0x9E37_79B9) % SHARDS]
    }

    /// Count a connection from `ip`, unless `max` are open already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<PeerPermit> {
        let Ok(mut shard) = self.shard(&ip).lock() else {
            return None;
        };
        let n = shard.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerPermit {
            counts: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.shard(&ip).lock().map_or(0, |s| s.get(&ip).copied().unwrap_or(0))
    }
}

/// One counted connection; released when dropped.
#[derive(Debug)]
pub struct PeerPermit {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        if let Ok(mut shard) = self.counts.shard(&self.ip).lock() {
            if let Some(n) = shard.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_address_and_released_when_they_end() {
        let counts = Arc::new(PeerCounts::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| counts.admit(a, 3).unwrap()).collect();
        assert!(counts.admit(a, 3).is_none(), "a fourth from the same address");
        let other = counts.admit(b, 3);
        assert!(other.is_some(), "another address has its own count");
        drop(held);
        assert_eq!(counts.open(a), 0);
        assert!(counts.admit(a, 3).is_some());
    }
}
