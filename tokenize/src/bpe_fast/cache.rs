//! A small per-thread memory of recent pieces and their token counts.
//!
//! Text repeats at the word level (Zipf's law; and a gateway sees the same system prompts over and
//! over), so most pieces were counted moments ago. A direct-mapped table of 4096 slots (128 KiB,
//! it stays in the core's L2 cache) answers those with one load and a compare of the piece's own
//! bytes, instead of a probe into the ~4 MB rank table or a merge. Keys are the exact bytes, so
//! an answer is never a guess; a collision only evicts.

use std::cell::RefCell;

/// The longest piece remembered.
pub const MAX_KEY: usize = 29;
const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    key: [u8; MAX_KEY],
    /// 0: empty.
    len: u8,
    count: u8,
    /// Which encoding counted it (both share the thread's table).
    encoding: u8,
}

const EMPTY: Slot = Slot {
    key: [0; MAX_KEY],
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

/// A hash of a short piece from two (possibly overlapping) loads of its ends.
#[inline(always)]
fn slot_of(piece: &[u8], encoding: u8) -> usize {
    let len = piece.len();
    let load = |at: usize, n: usize| {
        let mut word = [0u8; 8];
        if let Some(src) = piece.get(at..at + n) {
            word[..n].copy_from_slice(src);
        }
        u64::from_le_bytes(word)
    };
    let (a, b) = if len >= 8 {
        (load(0, 8), load(len - 8, 8))
    } else if len >= 4 {
        (load(0, 4), load(len - 4, 4))
    } else {
        (load(0, len), 0)
    };
    let h = (a ^ b.rotate_left(29) ^ ((len as u64) << 56) ^ u64::from(encoding))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 52) as usize % SLOTS
}

impl PieceCache {
    /// Runs `f` with this thread's table, or with `None` if the table is in use further up the
    /// stack or the thread is shutting down.
    pub fn with<R>(f: impl FnOnce(Option<&mut PieceCache>) -> R) -> R {
        let mut f = Some(f);
        let ran = CACHE.try_with(|cell| {
            let mut table = cell.try_borrow_mut().ok()?;
            f.take().map(|f| f(Some(&mut table)))
        });
        match (ran, f) {
            (Ok(Some(out)), _) => out,
            (_, Some(f)) => f(None),
            (_, None) => unreachable!("the closure ran and returned"),
        }
    }

    /// The remembered count of `piece` (2..=MAX_KEY bytes) for `encoding`, else computes it
    /// with `count` and remembers it.
    #[inline(always)]
    pub fn count(&mut self, piece: &[u8], encoding: u8, count: impl FnOnce() -> usize) -> usize {
        let at = slot_of(piece, encoding);
        let Some(slot) = self.slots.get_mut(at) else {
            return count();
        };
        if usize::from(slot.len) == piece.len()
            && slot.encoding == encoding
            && slot.key.get(..piece.len()) == Some(piece)
        {
            return usize::from(slot.count);
        }
        let n = count();
        // A piece of at most 29 bytes has at most 29 tokens.
        if let (Ok(len), Ok(tokens)) = (u8::try_from(piece.len()), u8::try_from(n)) {
            if let Some(key) = slot.key.get_mut(..piece.len()) {
                key.copy_from_slice(piece);
                slot.len = len;
                slot.count = tokens;
                slot.encoding = encoding;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_from_the_exact_piece_never_a_collision() {
        let mut table = PieceCache {
            slots: vec![EMPTY; SLOTS].into_boxed_slice(),
        };
        let computed = std::cell::Cell::new(0);
        let mut count = |piece: &[u8], encoding: u8, n: usize| {
            table.count(piece, encoding, || {
                computed.set(computed.get() + 1);
                n
            })
        };
        assert_eq!(count(b"hello", 0, 1), 1);
        assert_eq!(count(b"hello", 0, 99), 1, "remembered");
        assert_eq!(count(b"hello", 1, 2), 2, "another encoding is another key");
        assert_eq!(count(b"hellp", 0, 3), 3);
        let long = [b'x'; MAX_KEY];
        assert_eq!(count(&long, 0, 5), 5);
        assert_eq!(count(&long, 0, 6), 5);
        assert_eq!(computed.get(), 4);
        // Thousands of distinct pieces: every answer is the one computed for that piece.
        for i in 0..20_000u32 {
            let piece = format!("p{i}");
            let n = (i % 7) as usize + 1;
            assert_eq!(count(piece.as_bytes(), 0, n), n);
            assert_eq!(count(piece.as_bytes(), 0, 100), n);
        }
    }
}
