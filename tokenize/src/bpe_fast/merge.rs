//! Byte-pair merging of one piece, counted without building a token list.
//!
//! tiktoken's rule: start from single bytes and repeatedly join the adjacent pair whose joined
//! bytes have the lowest rank (leftmost on ties) until no joined pair is a token. The piece's
//! count is the number of parts left. Most pieces are whole tokens (one lookup); the rest are
//! merged in fixed arrays on the stack. Pieces longer than [`MAX_MERGE`] bytes (one repeated
//! character, long CJK runs) go to bpe-openai's linear-time encoder, which yields the same tokens:
//! the quadratic rule would be slow there, and that is the case it was built for.
//!
//! Ranks are looked up in two tables built once from the rank list bpe-openai embeds: tokens of
//! up to seven bytes keyed by the bytes packed into a `u64` with their length, longer ones by
//! their bytes.

use std::collections::HashMap;

use foldhash::fast::FixedState;

/// The longest piece merged here; longer ones go to bpe-openai (measured: past ~12 bytes its
/// linear encoder beats the quadratic rule).
pub const MAX_MERGE: usize = 12;

const NONE: u32 = u32::MAX;

/// Every token's rank (its id), by its bytes.
pub struct Ranks {
    short: HashMap<u64, u32, FixedState>,
    long: HashMap<&'static [u8], u32, FixedState>,
    bpe: &'static bpe_openai::Tokenizer,
}

/// A slice of up to seven bytes as one key: the bytes little-endian, the length in the top byte.
#[inline(always)]
fn short_key(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let len = bytes.len().min(7);
    word[..len].copy_from_slice(&bytes[..len]);
    word[7] = len as u8;
    u64::from_le_bytes(word)
}

impl Ranks {
    pub fn new(bpe: &'static bpe_openai::Tokenizer) -> Ranks {
        let n = bpe.bpe.num_tokens();
        let mut short = HashMap::with_capacity_and_hasher(n, FixedState::default());
        let mut long = HashMap::with_capacity_and_hasher(n / 2, FixedState::default());
        for id in 0..n as u32 {
            let bytes = bpe.bpe.token_bytes(id);
            if bytes.len() <= 7 {
                short.insert(short_key(bytes), id);
            } else {
                long.insert(bytes, id);
            }
        }
        Ranks { short, long, bpe }
    }

    /// The rank of `bytes` if they are a token.
    #[inline(always)]
    pub fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.len() <= 7 {
            self.short.get(&short_key(bytes)).copied()
        } else {
            self.long.get(bytes).copied()
        }
    }

    #[inline(always)]
    fn rank_or_none(&self, bytes: &[u8]) -> u32 {
        self.rank(bytes).unwrap_or(NONE)
    }

    /// Tokens in one piece.
    #[inline]
    pub fn count(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return piece.len().min(1);
        }
        if piece.len() > MAX_MERGE {
            return self.bpe.bpe.count(piece);
        }
        self.merge(piece, |_, _| {})
    }

    /// The tokens of one piece, appended to `out`.
    pub fn encode(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        if let Some(rank) = self.rank(piece) {
            out.push(rank);
            return;
        }
        if piece.len() > MAX_MERGE {
            out.extend(self.bpe.bpe.encode_via_backtracking(piece));
            return;
        }
        self.merge(piece, |part, ranks| out.push(ranks.rank_or_none(part)));
    }

    /// Merges `piece` (2..=MAX_MERGE bytes) and returns its part count; `each` sees every final
    /// part, in order.
    #[inline(always)]
    fn merge(&self, piece: &[u8], mut each: impl FnMut(&[u8], &Self)) -> usize {
        let n = piece.len();
        // Boundaries of the parts: starts[0..parts + 1]; pair[i] = rank of parts i and i + 1 joined.
        let mut starts = [0u8; MAX_MERGE + 1];
        let mut pair = [NONE; MAX_MERGE];
        for (i, s) in starts.iter_mut().enumerate().take(n + 1) {
            // n <= MAX_MERGE < 256: every boundary fits a byte.
            *s = i as u8;
        }
        let bytes = |from: u8, to: u8| piece.get(from as usize..to as usize).unwrap_or_default();
        for i in 0..n - 1 {
            pair[i] = self.rank_or_none(bytes(starts[i], starts[i + 2]));
        }
        let mut parts = n;
        while parts > 1 {
            let mut best = NONE;
            let mut at = 0;
            for (i, &r) in pair[..parts - 1].iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NONE {
                break;
            }
            // Join parts `at` and `at + 1`: drop boundary `at + 1`.
            starts.copy_within(at + 2..parts + 1, at + 1);
            pair.copy_within(at + 1..parts - 1, at);
            parts -= 1;
            pair[at] = if at + 1 < parts {
                self.rank_or_none(bytes(starts[at], starts[at + 2]))
            } else {
                NONE
            };
            if at > 0 {
                pair[at - 1] = self.rank_or_none(bytes(starts[at - 1], starts[at + 1]));
            }
        }
        for i in 0..parts {
            each(bytes(starts[i], starts[i + 1]), self);
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_tell_lengths_and_zero_bytes_apart() {
        assert_ne!(short_key(b"a"), short_key(b"a\0"));
        assert_ne!(short_key(b""), short_key(b"\0"));
        assert_eq!(short_key(b"abc"), short_key(b"abc"));
    }

    #[test]
    fn merging_gives_bpe_openais_tokens() {
        let bpe = bpe_openai::o200k_base();
        let ranks = Ranks::new(bpe);
        for piece in [
            " unbelievably",
            "ababababababab",
            " 你好世界我们",
            "🙂🙂🙂",
            "\u{301}\u{301}\u{301}",
            &"x".repeat(MAX_MERGE),
            &"xy".repeat(MAX_MERGE),
        ] {
            let mut ours = Vec::new();
            ranks.encode(piece.as_bytes(), &mut ours);
            assert_eq!(ours, bpe.bpe.encode_via_backtracking(piece.as_bytes()), "{piece:?}");
            assert_eq!(ranks.count(piece.as_bytes()), ours.len(), "{piece:?}");
        }
    }
}
