//! Text as the matchers see it, so obfuscation does not pass: compatibility forms folded
//! (Unicode NFKD: full-width, mathematical, circled and superscript letters become plain ones),
//! accents stripped, case folded, invisible characters (zero-width space, joiners, word
//! joiner, BOM, soft hyphen, bidi controls, variation selectors) removed, and each run of
//! whitespace made one space. The result keeps, for
//! each of its bytes, where in the original text it came from, so a match found in the
//! normalised text is masked in the original.
//!
//! ASCII text with single spaces, the common case, is only lowercased (its map is the identity,
//! not stored).

use std::ops::Range;

use unicode_normalization::char::decompose_compatible;

/// Normalised text and the way back to the original.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    pub text: String,
    /// Per byte of `text`: the byte offset in the original of the character it came from;
    /// empty when the original was ASCII (the identity).
    origin: Vec<u32>,
}

/// Characters removed before matching: they render as nothing.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

/// Whether ASCII text has whitespace other than single spaces (searched with SIMD: most text
/// has none).
fn has_whitespace_run(text: &[u8]) -> bool {
    memchr::memchr3(b'\n', b'\t', b'\r', text).is_some()
        || memchr::memchr2(b'\x0b', b'\x0c', text).is_some()
        || memchr::memmem::find(text, b"  ").is_some()
}

/// Accents and other combining diacritics (dropped, so `é` written as `e` + U+0301 matches `e`
/// as `é` does). Only the diacritic blocks: marks that are letters' vowels in other scripts stay.
fn is_diacritic(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Scripts written without spaces between words: a phrase in them matches anywhere.
pub fn is_unspaced(c: char) -> bool {
    matches!(c,
        '\u{2E80}'..='\u{2FDF}' | '\u{3000}'..='\u{303F}' | '\u{3040}'..='\u{30FF}' | '\u{3100}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{1100}'..='\u{11FF}'
        | '\u{F900}'..='\u{FAFF}' | '\u{0E00}'..='\u{0E7F}' | '\u{0E80}'..='\u{0EFF}' | '\u{1000}'..='\u{109F}'
        | '\u{20000}'..='\u{3134F}')
}

/// A letter or digit of a script written with spaces: phrases end on a boundary of these.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_unspaced(c) || c == '_'
}

impl Normalized {
    pub fn new(original: &str) -> Normalized {
        if original.is_ascii() && !has_whitespace_run(original.as_bytes()) {
            return Normalized {
                text: original.to_ascii_lowercase(),
                origin: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len());
        let push = |text: &mut String, origin: &mut Vec<u32>, c: char, at: usize| {
            if c.is_whitespace() {
                if text.ends_with(' ') {
                    return;
                }
                text.push(' ');
                origin.push(at as u32);
                return;
            }
            let before = text.len();
            text.push(c);
            origin.extend(std::iter::repeat_n(at as u32, text.len() - before));
        };
        for (at, c) in original.char_indices() {
            if c.is_ascii() {
                push(&mut text, &mut origin, c.to_ascii_lowercase(), at);
                continue;
            }
            if is_invisible(c) {
                continue;
            }
            decompose_compatible(c, |d| {
                if is_diacritic(d) || is_invisible(d) {
                    return;
                }
                for l in d.to_lowercase() {
                    if !is_diacritic(l) {
                        push(&mut text, &mut origin, l, at);
                    }
                }
            });
        }
        Normalized { text, origin }
    }

    /// The original byte range a match at `range` of the normalised text came from (whole
    /// characters of `original`, the text this was built from).
    pub fn original_range(&self, original: &str, range: Range<usize>) -> Range<usize> {
        if self.origin.is_empty() {
            return range;
        }
        if range.is_empty() {
            let at = self.origin.get(range.start).map_or(original.len(), |&o| o as usize);
            return at..at;
        }
        let start = self.origin[range.start.min(self.origin.len() - 1)] as usize;
        let last = self.origin[(range.end - 1).min(self.origin.len() - 1)] as usize;
        let end = last + original[last..].chars().next().map_or(0, char::len_utf8);
        start..end
    }

    /// Whether a match at `range` stands on word boundaries where the phrase needs them: an end
    /// that is a letter of a spaced script must not touch another such letter.
    pub fn on_boundaries(&self, range: &Range<usize>) -> bool {
        let text = &self.text;
        let first = text[range.start..].chars().next();
        let last = text[..range.end].chars().next_back();
        let before = text[..range.start].chars().next_back();
        let after = text[range.end..].chars().next();
        let open = |inner: Option<char>, outer: Option<char>| {
            !(inner.is_some_and(is_word_char) && outer.is_some_and(is_word_char))
        };
        open(first, before) && open(last, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Normalized::new(s).text
    }

    #[test]
    fn obfuscated_letters_fold_to_plain_lowercase() {
        assert_eq!(norm("ＢＡＤ Ｗｏｒｄ"), "bad word", "full-width");
        assert_eq!(norm("𝐁𝐚𝐝 𝔴𝔬𝔯𝔡"), "bad word", "mathematical bold and fraktur");
        assert_eq!(norm("Ⓑⓐⓓ"), "bad", "circled");
        assert_eq!(norm("b\u{200B}a\u{200D}d\u{00AD}\u{FEFF}\u{2060}"), "bad", "invisible");
        assert_eq!(norm("Cafe\u{0301} CAFÉ"), "cafe cafe", "accents, composed or not");
        assert_eq!(norm("敏感词"), "敏感词");
        assert_eq!(norm("ＡＢＣ１２３"), "abc123");
        assert_eq!(norm("a  b\n\tc\u{3000}d"), "a b c d", "whitespace runs");
    }

    #[test]
    fn matches_map_back_to_whole_original_characters() {
        let original = "x Ｂ\u{200B}ａｄ y";
        let n = Normalized::new(original);
        let at = n.text.find("bad").unwrap();
        let back = n.original_range(original, at..at + 3);
        assert_eq!(&original[back], "Ｂ\u{200B}ａｄ");
        let ascii = "say BAD now";
        let n = Normalized::new(ascii);
        assert_eq!(n.original_range(ascii, 4..7), 4..7);
    }

    #[test]
    fn boundaries_apply_to_spaced_scripts_only() {
        let n = Normalized::new("classic bad, 坏词语");
        let find = |p: &str| {
            let s = n.text.find(p).unwrap();
            s..s + p.len()
        };
        assert!(!n.on_boundaries(&find("ass")));
        assert!(n.on_boundaries(&find("bad")));
        assert!(n.on_boundaries(&find("词")));
    }
}
