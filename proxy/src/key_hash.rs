//! API keys as the gateway keeps them: never the key, only its SHA-256, written `sha256:<hex>` in
//! the config file and the key store; and fresh keys drawn from the OS.

/// SHA-256 of a key.
pub type KeyHash = [u8; 32];

/// SHA-256 of a key.
pub fn hash_key(key: &[u8]) -> KeyHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A fresh API key: `tg-` and 40 random base-62 characters (about 238 bits) from the OS.
pub fn generate_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let mut key = String::with_capacity(43);
    key.push_str("tg-");
    for _ in 0..40 {
        key.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    key
}

/// `sha256:<hex>` form of a hash, as written in config.
pub fn format_hash(hash: &KeyHash) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hash in `sha256:<64 hex>` form, as written in config and in the key store.
pub fn parse_hash(text: &str) -> Result<KeyHash, String> {
    let hex = text.strip_prefix("sha256:").ok_or("must start with `sha256:`")?;
    if hex.len() != 64 {
        return Err("must be `sha256:` followed by 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or(""), 16).map_err(|_| "is not hex".to_string())?;
    }
    Ok(out)
}
