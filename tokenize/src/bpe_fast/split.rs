//! o200k_base's and cl100k_base's split (pre-tokenization), written out by hand.
//!
//! tiktoken splits text with a backtracking regex before running BPE on each piece. The same
//! pieces come out of a few scans over byte classes here: each alternative of the pattern is one
//! function, tried in the pattern's order, and where the regex would backtrack (a greedy run
//! giving characters back, a look-ahead) the function computes the position it would settle on
//! directly, so every character is looked at a bounded number of times. ASCII letters are scanned
//! eight bytes a step (a word-wide test of "a run of lower/upper case ASCII"); other characters go
//! through the class table. The patterns, for reference (`openai_fast.rs` holds them verbatim):
//!
//! o200k: `P?U*W+C? | P?U+W*C? | N{1,3} | ␠?O+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+`
//! cl100k: `C | P?L+ | N{1,3} | ␠?O+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+`
//!
//! where P is one character that is not a newline, letter or number; U and W o200k's upper and
//! lower cased sets ([`classes`](super::classes)); C a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`,
//! `'ll`, `'d`, case-insensitive); O a character that is not space, letter or number.

use super::classes::{Classes, END, LETTER, LOWER, NEWLINE, NUMBER, SPACE, UPPER};

/// Which encoding's pattern to split by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    O200k,
    Cl100k,
}

/// Lanes of a word holding bytes in `lo..=hi` (both below 0x80): the high bit set in each.
#[inline(always)]
fn ascii_lanes_in(word: u64, lo: u8, hi: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Lanes below 0x80 only; for those, adding (0x80 - x) sets the high bit iff lane >= x, and
    // no lane carries into the next (lane + 0x80 - x <= 0xFF for x >= 1).
    let low7 = word & !HIGH;
    let ge_lo = low7 + ONES * (0x80 - u64::from(lo));
    let gt_hi = low7 + ONES * (0x80 - u64::from(hi) - 1);
    ge_lo & !gt_hi & !word & HIGH
}

/// Lanes of a word holding ASCII lower-case letters.
#[inline(always)]
fn ascii_lower_lanes(word: u64) -> u64 {
    ascii_lanes_in(word, b'a', b'z')
}

/// Lanes of a word holding ASCII upper-case letters.
#[inline(always)]
fn ascii_upper_lanes(word: u64) -> u64 {
    ascii_lanes_in(word, b'A', b'Z')
}

/// Bytes from `at` in a run of the lanes `lanes` selects, eight at a time while a full word fits.
#[inline(always)]
fn ascii_run(text: &[u8], mut at: usize, lanes: fn(u64) -> u64) -> usize {
    while let Some(chunk) = text.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let hits = lanes(u64::from_le_bytes(word));
        // The run ends at the first lane without a hit.
        let stop = (!hits & 0x8080_8080_8080_8080).trailing_zeros() / 8;
        at += stop as usize;
        if stop < 8 {
            return at;
        }
    }
    at
}

/// The end of a contraction starting at `at`, or `at` when there is none. Case-insensitive in
/// Unicode's sense, as the regex is: `ſ` (U+017F) folds to `s`.
#[inline]
fn contraction(text: &[u8], at: usize) -> usize {
    if text.get(at) != Some(&b'\'') {
        return at;
    }
    let byte = |k: usize| text.get(at + k).copied().unwrap_or(0);
    match byte(1) | 0x20 {
        b's' | b't' | b'm' | b'd' => at + 2,
        b'r' | b'v' if byte(2) | 0x20 == b'e' => at + 3,
        b'l' if byte(2) | 0x20 == b'l' => at + 3,
        _ if byte(1) == 0xC5 && byte(2) == 0xBF => at + 3,
        _ => at,
    }
}

/// Splits text into the pieces tiktoken's regex finds.
pub struct Splitter<'c> {
    classes: &'c Classes,
    pattern: Pattern,
}

impl<'c> Splitter<'c> {
    pub fn new(classes: &'c Classes, pattern: Pattern) -> Self {
        Splitter { classes, pattern }
    }

    /// The end of the piece that starts at `at` (< `text.len()`, on a character boundary).
    #[inline(always)]
    pub fn piece_end(&self, text: &[u8], at: usize) -> usize {
        let end = match self.pattern {
            Pattern::O200k => self.o200k(text, at),
            Pattern::Cl100k => self.cl100k(text, at),
        };
        // Every character matches some alternative; this only guards against an endless loop.
        if end > at {
            end
        } else {
            at + self.classes.at(text, at).1.max(1)
        }
    }

    /// Every piece of `text`, in order (for tests and tools; counting walks `piece_end`).
    pub fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = self.piece_end(bytes, at);
            out.push(text.get(at..end).unwrap_or_default());
            at = end;
        }
        out
    }

    /// Characters from `at` while their flags meet `mask`.
    #[inline(always)]
    fn run(&self, text: &[u8], mut at: usize, mask: u8) -> usize {
        loop {
            let (class, len) = self.classes.at(text, at);
            if class & mask == 0 {
                return at;
            }
            at += len;
        }
    }

    /// Letters from `at`: `\p{L}*`, ASCII a word at a time.
    #[inline(always)]
    fn letters(&self, text: &[u8], at: usize) -> usize {
        let end = ascii_run(text, at, |w| ascii_lower_lanes(w) | ascii_upper_lanes(w));
        self.run(text, end, LETTER)
    }

    /// Characters from `at` that are not space, letter or number: `[^\s\p{L}\p{N}]+` (maybe empty).
    #[inline(always)]
    fn other_run(&self, text: &[u8], mut at: usize) -> usize {
        loop {
            let (class, len) = self.classes.at(text, at);
            if class & (SPACE | LETTER | NUMBER | END) != 0 {
                return at;
            }
            at += len;
        }
    }

    /// `\p{N}{1,3}` at `at`, whose character is a number.
    #[inline]
    fn numbers(&self, text: &[u8], mut at: usize) -> usize {
        for _ in 0..3 {
            let (class, len) = self.classes.at(text, at);
            if class & NUMBER == 0 {
                break;
            }
            at += len;
        }
        at
    }

    /// `\s*[\r\n]+ | \s+(?!\S) | \s+` at `at`, whose character is white space.
    fn spaces(&self, text: &[u8], at: usize) -> usize {
        let mut end = at;
        let mut last_start = at;
        let mut after_newline = None;
        loop {
            let (class, len) = self.classes.at(text, end);
            if class & SPACE == 0 {
                break;
            }
            last_start = end;
            end += len;
            if class & NEWLINE != 0 {
                after_newline = Some(end);
            }
        }
        // `\s*[\r\n]+`: the run gives back characters until it ends on its last newline.
        if let Some(end) = after_newline {
            return end;
        }
        // `\s+(?!\S)`: the whole run at the end of the text, else all but its last character.
        if end >= text.len() {
            return end;
        }
        if last_start > at {
            return last_start;
        }
        end
    }

    /// `␠?O+` then the trailing newlines (and, for o200k, slashes), if it matches at `at`.
    #[inline]
    fn punctuation(&self, text: &[u8], at: usize) -> Option<usize> {
        let start = if text.get(at) == Some(&b' ') { at + 1 } else { at };
        let end = self.other_run(text, start);
        if end == start {
            return None;
        }
        let trailing: &[u8] = match self.pattern {
            Pattern::O200k => b"\r\n/",
            Pattern::Cl100k => b"\r\n",
        };
        let more = text
            .get(end..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| trailing.contains(b))
            .count();
        Some(end + more)
    }

    /// o200k's first alternative without its prefix: `U*W+C?` at `at`.
    #[inline(always)]
    fn upper_then_lower(&self, text: &[u8], at: usize) -> Option<usize> {
        let mut end = ascii_run(text, at, ascii_upper_lanes);
        // The end of the last character of the U run that is also in W (Lm, Lo, M): where W+
        // lands if the run must give characters back.
        let mut last_lower_end = None;
        loop {
            let (class, len) = self.classes.at(text, end);
            if class & UPPER == 0 {
                if class & LOWER != 0 {
                    let rest = ascii_run(text, end + len, ascii_lower_lanes);
                    return Some(contraction(text, self.run(text, rest, LOWER)));
                }
                return last_lower_end.map(|end| contraction(text, end));
            }
            end += len;
            if class & LOWER != 0 {
                last_lower_end = Some(end);
            }
        }
    }

    /// o200k's second alternative without its prefix: `U+W*C?` at `at`.
    #[inline(always)]
    fn upper_run(&self, text: &[u8], at: usize) -> Option<usize> {
        let end = self.run(text, at, UPPER);
        if end == at {
            return None;
        }
        Some(contraction(text, self.run(text, end, LOWER)))
    }

    /// The alternatives both patterns end with: `\p{N}{1,3} | ␠?O+… | \s…`; `first` is the
    /// class of the character at `at`.
    #[inline(always)]
    fn numbers_punctuation_spaces(&self, text: &[u8], at: usize, first: u8) -> usize {
        if first & NUMBER != 0 {
            return self.numbers(text, at);
        }
        if let Some(end) = self.punctuation(text, at) {
            return end;
        }
        self.spaces(text, at)
    }

    #[inline(always)]
    fn o200k(&self, text: &[u8], at: usize) -> usize {
        let (first, first_len) = self.classes.at(text, at);
        let has_prefix = first & (NEWLINE | LETTER | NUMBER | END) == 0;
        let cased = |class: u8| class & (UPPER | LOWER) != 0;
        let after_prefix = at + first_len;
        let prefixed = has_prefix && cased(self.classes.at(text, after_prefix).0);
        if prefixed || cased(first) {
            if prefixed {
                if let Some(end) = self.upper_then_lower(text, after_prefix) {
                    return end;
                }
            }
            if cased(first) {
                if let Some(end) = self.upper_then_lower(text, at) {
                    return end;
                }
            }
            if prefixed {
                if let Some(end) = self.upper_run(text, after_prefix) {
                    return end;
                }
            }
            if let Some(end) = self.upper_run(text, at) {
                return end;
            }
        }
        self.numbers_punctuation_spaces(text, at, first)
    }

    #[inline(always)]
    fn cl100k(&self, text: &[u8], at: usize) -> usize {
        let end = contraction(text, at);
        if end > at {
            return end;
        }
        let (first, first_len) = self.classes.at(text, at);
        if first & LETTER != 0 {
            return self.letters(text, at + first_len);
        }
        if first & (NEWLINE | NUMBER | END) == 0 {
            let (second, second_len) = self.classes.at(text, at + first_len);
            if second & LETTER != 0 {
                return self.letters(text, at + first_len + second_len);
            }
        }
        self.numbers_punctuation_spaces(text, at, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_lanes_find_ascii_letters_only() {
        let word = u64::from_le_bytes(*b"aZz@[`{\xC3");
        assert_eq!(ascii_lower_lanes(word), 0x80 | 0x80 << 16);
        assert_eq!(ascii_upper_lanes(word), 0x80 << 8);
        for b in 0..=255u8 {
            let lanes = ascii_lower_lanes(u64::from(b));
            assert_eq!(lanes != 0, b.is_ascii_lowercase(), "{b:#x}");
            assert_eq!(ascii_upper_lanes(u64::from(b)) != 0, b.is_ascii_uppercase(), "{b:#x}");
        }
    }

    #[test]
    fn contractions_fold_case_as_the_regex_does() {
        for (text, end) in [
            ("'s", 2),
            ("'S", 2),
            ("'RE", 3),
            ("'rE", 3),
            ("'ll", 3),
            ("'lL", 3),
            ("'ſ", 3),
            ("'l", 0),
            ("'x", 0),
            ("'", 0),
        ] {
            assert_eq!(contraction(text.as_bytes(), 0), end, "{text:?}");
        }
    }
}
