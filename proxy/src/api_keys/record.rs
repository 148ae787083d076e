//! What the key store holds of a key: its record (never the key itself), and the table of
//! records by hash that lookups read.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key_hash::{format_hash, hash_key, parse_hash, KeyHash};

/// Where a record's key lives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Issued by the admin API: the record is all there is of the key.
    Api,
    /// Written in the config file: the record only revokes it.
    Config,
}

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
    /// Absent in records written before it existed (those are never purged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The id of the key this one replaced by a rotation (its lineage, one step back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
}

impl KeyRecord {
    /// Whether the record can go: an API key, revoked or expired at least `retention` ago.
    pub(super) fn purgeable(&self, now_ms: u64, retention: Option<Duration>) -> bool {
        let Some(retention) = retention else { return false };
        let ended = match (self.revoked_ms, self.expires_ms) {
            (Some(r), Some(e)) => Some(r.min(e)),
            (r, e) => r.or(e),
        };
        self.origin == Some(Origin::Api)
            && ended.is_some_and(|t| {
                let kept = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
                t.saturating_add(kept) <= now_ms
            })
    }
}

/// The registry's view: records by key hash.
#[derive(Debug, Default)]
pub struct KeyTable {
    pub by_hash: foldhash::HashMap<KeyHash, KeyRecord>,
}

impl KeyTable {
    pub(super) fn build(records: impl IntoIterator<Item = KeyRecord>) -> KeyTable {
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

/// A new key and its record for `consumer`.
pub fn new_key(consumer: &str, id: String, now_ms: u64, expires_ms: Option<u64>) -> (String, KeyRecord) {
    let key = crate::key_hash::generate_key();
    let record = KeyRecord {
        consumer: consumer.to_string(),
        id,
        hash: format_hash(&hash_key(key.as_bytes())),
        created_ms: now_ms,
        expires_ms,
        revoked_ms: None,
        origin: Some(Origin::Api),
        rotated_from: None,
    };
    (key, record)
}
