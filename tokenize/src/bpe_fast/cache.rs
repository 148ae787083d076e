//! A small per-thread memory of recent pieces and their token counts.
//!
//! Text repeats at the word level (Zipf's law; and a gateway sees the same system prompts over and
//! over), so most pieces were counted moments ago. A direct-mapped table of 4096 slots (128 KiB,
//! it stays in the core's L2 cache) answers those with one load and a compare of the piece's own
//! bytes, instead of a probe into the ~4 MB rank table or a merge. Keys are the exact bytes, so
//! an answer is never a guess; a collision only evicts.

use std::cell::RefCell;

/// The longest piece remembered.
const MAX_KEY: usize = 61;
const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    /// The piece's first 16 bytes ([`head_of`]): with the length, the whole piece up to 16 bytes.
    head: [u64; 2],
    /// The bytes past the first 16, for pieces longer than that.
    rest: [u8; MAX_KEY - 16],
    /// 0: empty.
    len: u8,
    count: u8,
    /// Which encoding counted it (both share the thread's table).
    encoding: u8,
}

const EMPTY: Slot = Slot {
    head: [0; 2],
    rest: [0; MAX_KEY - 16],
    len: 0,
    count: 0,
    encoding: 0,
};

/// One thread's table.
pub struct PieceCache {
    slots: Box<[Slot]>,
}

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache { slots: vec![EMPTY; SLOTS].into_boxed_slice() });
}

/// A piece's first 16 bytes as two words; shorter pieces as two overlapping loads of their ends,
/// zero-padded below 4 bytes. With the length, the words are the piece's bytes up to 16.
#[inline(always)]
fn head_of(piece: &[u8]) -> [u64; 2] {
    let len = piece.len();
    let load = |at: usize, n: usize| {
        let mut word = [0u8; 8];
        if let Some(src) = piece.get(at..at + n) {
            word[..n].copy_from_slice(src);
        }
        u64::from_le_bytes(word)
    };
    if len >= 16 {
        [load(0, 8), load(8, 8)]
    } else if len >= 8 {
        [load(0, 8), load(len - 8, 8)]
    } else if len >= 4 {
        [load(0, 4), load(len - 4, 4)]
    } else {
        [load(0, len), 0]
    }
}

#[inline(always)]
fn slot_of(piece: &[u8], head: [u64; 2], encoding: u8) -> usize {
    let len = piece.len();
    let mut tail = 0;
    if len > 16 {
        let mut word = [0u8; 8];
        if let Some(src) = piece.get(len - 8..) {
            word.copy_from_slice(src);
        }
        tail = u64::from_le_bytes(word);
    }
    let h = (head[0] ^ head[1].rotate_left(29) ^ tail.rotate_left(13) ^ ((len as u64) << 56) ^ u64::from(encoding))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 52) as usize % SLOTS
}

impl PieceCache {
    /// Runs `f` with this thread's table; `None` (and `f` not run) if the table is in use
    /// further up the stack or the thread is shutting down.
    pub fn with<R>(f: impl FnOnce(&mut PieceCache) -> R) -> Option<R> {
        CACHE
            .try_with(|cell| cell.try_borrow_mut().ok().map(|mut table| f(&mut table)))
            .ok()
            .flatten()
    }

    /// The remembered count of `piece` for `encoding`, else computes it with `count` and
    /// remembers it when the piece is 2..=MAX_KEY bytes long.
    #[inline(always)]
    pub fn count(&mut self, piece: &[u8], encoding: u8, count: impl FnOnce() -> usize) -> usize {
        if !(2..=MAX_KEY).contains(&piece.len()) {
            return count();
        }
        let head = head_of(piece);
        let rest = piece.get(16..).unwrap_or_default();
        let Some(slot) = self.slots.get_mut(slot_of(piece, head, encoding)) else {
            return count();
        };
        if slot.head == head
            && usize::from(slot.len) == piece.len()
            && slot.encoding == encoding
            && (rest.is_empty() || slot.rest.get(..rest.len()) == Some(rest))
        {
            return usize::from(slot.count);
        }
        let n = count();
        // A piece of at most MAX_KEY bytes has at most that many tokens.
        if let (Ok(len), Ok(tokens), Some(dst)) = (
            u8::try_from(piece.len()),
            u8::try_from(n),
            slot.rest.get_mut(..rest.len()),
        ) {
            dst.copy_from_slice(rest);
            slot.head = head;
            slot.len = len;
            slot.count = tokens;
            slot.encoding = encoding;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in count that differs between pieces differing in any byte.
    fn fingerprint(piece: &[u8]) -> usize {
        piece
            .iter()
            .enumerate()
            .fold(7usize, |h, (i, &b)| (h * 31 + usize::from(b) * (i + 1)) % 251)
            + 1
    }

    #[test]
    fn answers_come_from_the_exact_piece_never_a_collision() {
        let mut table = PieceCache {
            slots: vec![EMPTY; SLOTS].into_boxed_slice(),
        };
        let computed = std::cell::Cell::new(0);
        let mut calls = 0;
        let mut check = |piece: &[u8], encoding: u8| {
            calls += 1;
            let want = fingerprint(piece) + usize::from(encoding);
            let got = table.count(piece, encoding, || {
                computed.set(computed.get() + 1);
                want
            });
            assert_eq!(got, want, "{piece:?} (encoding {encoding})");
        };
        check(b"hello", 0);
        check(b"hello", 0);
        assert_eq!(computed.get(), 1, "remembered");
        check(b"hello", 1);
        assert_eq!(computed.get(), 2, "another encoding is another key");
        // Pieces that differ in any one byte are different keys, at every length.
        for len in 2..=MAX_KEY {
            let base = vec![b'q'; len];
            check(&base, 0);
            for at in 0..len {
                let mut other = base.clone();
                other[at] = b'r';
                check(&other, 0);
                check(&base, 0);
            }
        }
        // Thousands of distinct pieces, each asked twice.
        for i in 0..20_000u32 {
            let piece = format!("p{i}");
            check(piece.as_bytes(), 0);
            check(piece.as_bytes(), 0);
        }
        assert!(computed.get() < calls, "some answers came from the table");
    }
}
