//! Redis keys for limits and quotas: a fixed prefix, the identifying parts inside one `{hash
//! tag}` (so a Redis Cluster keeps each key on one slot), and a suffix. Parts that come from
//! clients keep the key's shape: a long part, or one that could close the tag, is replaced by a
//! digest.

use std::fmt::Write as _;

/// Longest part kept verbatim.
const MAX_PART: usize = 96;

/// `prefix{part1/part2/...}suffix`.
pub fn tagged_key(prefix: &str, parts: &[&str], suffix: &str) -> String {
    tagged_key_of(prefix, parts.iter().copied(), suffix)
}

/// [`tagged_key`] of parts given one by one, for callers that hold them in another shape than a
/// slice of `&str` (no slice built per key).
pub fn tagged_key_of<'a, I>(prefix: &str, parts: I, suffix: &str) -> String
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let parts = parts.into_iter();
    // Room for a few more bytes: callers may add a short suffix of their own (a bucket's kind).
    let room = 4;
    let mut key = String::with_capacity(
        prefix.len() + suffix.len() + 2 + parts.clone().map(|p| p.len() + 1).sum::<usize>() + room,
    );
    key.push_str(prefix);
    key.push('{');
    for (i, part) in parts.enumerate() {
        if i > 0 {
            key.push('/');
        }
        push_part(&mut key, part);
    }
    key.push('}');
    key.push_str(suffix);
    key
}

/// Append one part, verbatim when it is short and cannot break the key's shape.
pub fn push_part(key: &mut String, part: &str) {
    // Bytes, not chars: these ASCII bytes never occur inside a multi-byte character.
    if part.len() <= MAX_PART && !part.bytes().any(|b| matches!(b, b'{' | b'}' | b'/')) {
        key.push_str(part);
    } else {
        push_digest(key, part);
    }
}

/// Append `#` and 128 bits of the SHA-256 of `text` in hex: the same on every node and every
/// version, so nodes agree on keys, and the text itself (which may be a credential) stays out.
pub fn push_digest(key: &mut String, text: &str) {
    key.push('#');
    for b in &ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref()[..16] {
        let _ = write!(key, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sit_inside_one_hash_tag() {
        assert_eq!(
            tagged_key("tollgate:limit:", &["tpm", "dept-a"], ":t"),
            "tollgate:limit:{tpm/dept-a}:t"
        );
    }

    #[test]
    fn client_text_cannot_change_the_shape() {
        let k = tagged_key("p:", &["r", "x}{y/z"], "");
        assert_eq!(k.matches('{').count(), 1);
        assert_eq!(k.matches('}').count(), 1);
        assert_eq!(k.matches('/').count(), 1);
        let long = "a".repeat(500);
        assert!(tagged_key("p:", &[&long], "").len() < 60);
        assert_ne!(tagged_key("p:", &["a}"], ""), tagged_key("p:", &["b}"], ""));
    }
}
