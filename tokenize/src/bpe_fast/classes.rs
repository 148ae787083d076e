//! Character classes of OpenAI's split patterns, one byte per code point.
//!
//! tiktoken's patterns test a handful of Unicode classes (`\p{L}`, `\p{N}`, `\s`, the cased-letter
//! sets of o200k). Each class is read here from `regex-syntax`, the crate whose tables the
//! reference regex engine (fancy-regex, through regex-automata) uses, so both sides agree on every
//! code point of the same Unicode version. The classes are packed into one flag byte per code point
//! in a two-level table (blocks of 256 code points, identical blocks stored once): ~44 KiB (140 distinct blocks), built
//! once per process in a few milliseconds. ASCII has its own flat table.

use regex_syntax::hir::{Class, HirKind};

/// A letter, `\p{L}`.
pub const LETTER: u8 = 1;
/// A number, `\p{N}`.
pub const NUMBER: u8 = 2;
/// White space, `\s` (Unicode `White_Space`).
pub const SPACE: u8 = 4;
/// `\r` or `\n`.
pub const NEWLINE: u8 = 8;
/// o200k's "upper" set: `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
pub const UPPER: u8 = 16;
/// o200k's "lower" set: `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
pub const LOWER: u8 = 32;
/// Past the end of the text: no class test matches it.
pub const END: u8 = 128;

const BLOCK: usize = 256;
const CODE_POINTS: usize = 0x11_0000;

/// The flag byte of every code point.
pub struct Classes {
    pub ascii: [u8; 128],
    index: Vec<u16>,
    blocks: Vec<[u8; BLOCK]>,
}

fn ranges(pattern: &str) -> Result<Vec<(u32, u32)>, String> {
    let hir = regex_syntax::parse(pattern).map_err(|e| e.to_string())?;
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => Ok(class
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect()),
        other => Err(format!("{pattern} is not a character class: {other:?}")),
    }
}

impl Classes {
    pub fn build() -> Result<Classes, String> {
        let mut dense = vec![0u8; CODE_POINTS];
        for (pattern, flag) in [
            (r"\p{L}", LETTER),
            (r"\p{N}", NUMBER),
            (r"\s", SPACE),
            (r"[\r\n]", NEWLINE),
            (r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", UPPER),
            (r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", LOWER),
        ] {
            for (start, end) in ranges(pattern)? {
                for cp in start..=end {
                    if let Some(slot) = dense.get_mut(cp as usize) {
                        *slot |= flag;
                    }
                }
            }
        }
        let mut ascii = [0u8; 128];
        ascii.copy_from_slice(&dense[..128]);
        let mut index = Vec::with_capacity(CODE_POINTS / BLOCK);
        let mut blocks: Vec<[u8; BLOCK]> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for chunk in dense.chunks_exact(BLOCK) {
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(chunk);
            let at = *seen.entry(block).or_insert_with(|| {
                blocks.push(block);
                blocks.len() - 1
            });
            index.push(u16::try_from(at).map_err(|_| "too many distinct class blocks")?);
        }
        Ok(Classes { ascii, index, blocks })
    }

    /// The flags of code point `cp` (a `char`'s value, so below 0x110000).
    #[inline]
    pub fn of(&self, cp: u32) -> u8 {
        let block = self.index.get((cp as usize) / BLOCK).copied().unwrap_or(0);
        self.blocks.get(block as usize).map_or(0, |b| b[(cp as usize) % BLOCK])
    }

    /// The flags and byte length of the character starting at `at` in `text` (valid UTF-8), or
    /// `END` past the end.
    #[inline(always)]
    pub fn at(&self, text: &[u8], at: usize) -> (u8, usize) {
        let Some(&b0) = text.get(at) else {
            return (END, 0);
        };
        if b0 < 0x80 {
            return (self.ascii[b0 as usize], 1);
        }
        let byte = |k: usize| u32::from(text.get(at + k).copied().unwrap_or(0) & 0x3F);
        let (cp, len) = if b0 < 0xE0 {
            ((u32::from(b0 & 0x1F) << 6) | byte(1), 2)
        } else if b0 < 0xF0 {
            ((u32::from(b0 & 0x0F) << 12) | (byte(1) << 6) | byte(2), 3)
        } else {
            (
                (u32::from(b0 & 0x07) << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3),
                4,
            )
        };
        (self.of(cp), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_the_unicode_categories() {
        let c = Classes::build().unwrap();
        assert_eq!(c.of('a' as u32), LETTER | LOWER);
        assert_eq!(c.of('Q' as u32), LETTER | UPPER);
        assert_eq!(c.of('好' as u32), LETTER | UPPER | LOWER, "Lo is in both cased sets");
        assert_eq!(c.of(0x301), UPPER | LOWER, "a combining mark is no letter");
        assert_eq!(c.of('7' as u32), NUMBER);
        assert_eq!(c.of('½' as u32), NUMBER);
        assert_eq!(c.of('\n' as u32), SPACE | NEWLINE);
        assert_eq!(c.of(0x3000), SPACE);
        assert_eq!(c.of(0x85), SPACE);
        assert_eq!(c.of('!' as u32), 0);
        assert_eq!(c.of('🙂' as u32), 0);
        assert_eq!(c.of(0x10FFFF), 0);
        for ch in ['a', 'é', '好', '🙂', '\u{2028}', 'ſ'] {
            let mut buf = [0u8; 4];
            let s = ch.encode_utf8(&mut buf);
            assert_eq!(c.at(s.as_bytes(), 0), (c.of(ch as u32), ch.len_utf8()), "{ch:?}");
        }
        assert_eq!(c.at(b"a", 1), (END, 0));
    }
}
