//! Deny lists: words and phrases matched with Aho-Corasick over normalised text (see
//! [`normalize`](super::normalize)), so full-width, mathematical or circled letters and
//! zero-width characters do not hide a phrase. Phrases in scripts written without spaces
//! (Chinese, Japanese, Thai) match anywhere; an end of a phrase that is a letter of a spaced
//! script must be on a word boundary (`ass` does not match inside `class`).

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::normalize::Normalized;

/// A compiled deny list.
#[derive(Debug, Clone)]
pub struct DenyList {
    matcher: AhoCorasick,
    /// The longest phrase, in characters of normalised text (the stream hold-back).
    longest_chars: usize,
}

/// A deny list that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DenyError {
    #[error("the list has no phrase")]
    Empty,
    #[error("phrase {0} is empty once normalised (only spaces or invisible characters)")]
    Blank(usize),
    #[error("the phrases could not be compiled: {0}")]
    Build(String),
}

impl DenyList {
    /// Compile `phrases` (each normalised like the text it is matched against; runs of
    /// whitespace in a phrase match a single space).
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Result<DenyList, DenyError> {
        if phrases.is_empty() {
            return Err(DenyError::Empty);
        }
        let mut normalised = Vec::with_capacity(phrases.len());
        for (i, p) in phrases.iter().enumerate() {
            let n = Normalized::new(p.as_ref()).text;
            let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
            if n.is_empty() {
                return Err(DenyError::Blank(i));
            }
            normalised.push(n);
        }
        let longest_chars = normalised.iter().map(|p| p.chars().count()).max().unwrap_or(0);
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(aho_corasick::StartKind::Both)
            .build(&normalised)
            .map_err(|e| DenyError::Build(e.to_string()))?;
        Ok(DenyList { matcher, longest_chars })
    }

    /// Phrases from a file's text: one per line; blank lines and lines starting with `#` skipped.
    pub fn parse_file(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    /// The longest phrase in normalised characters.
    pub fn longest_chars(&self) -> usize {
        self.longest_chars
    }

    /// The matches in `text` (ranges of the normalised text), longest first at each position,
    /// in order. A longest match that is not on word boundaries gives way to a shorter phrase at
    /// the same place that is (`bad` in `bad wordsmith` when `bad words` is also listed), then
    /// the search goes on from the next character.
    pub fn find(&self, text: &Normalized, out: &mut Vec<Range<usize>>) {
        let haystack = text.text.as_str();
        let mut at = 0;
        while at < haystack.len() {
            let input = aho_corasick::Input::new(haystack).span(at..haystack.len());
            let Some(m) = self.matcher.find(input) else { break };
            let r = m.range();
            if text.on_boundaries(&r) {
                out.push(r.clone());
                at = r.end;
                continue;
            }
            // A shorter phrase starting here, on boundaries?
            let shorter = (r.start + 1..r.end)
                .rev()
                .filter(|&end| haystack.is_char_boundary(end))
                .find(|&end| {
                    let anchored = aho_corasick::Input::new(&haystack[..end])
                        .span(r.start..end)
                        .anchored(aho_corasick::Anchored::Yes);
                    self.matcher.find(anchored).is_some_and(|s| s.end() == end) && text.on_boundaries(&(r.start..end))
                });
            if let Some(end) = shorter {
                out.push(r.start..end);
                at = end;
                continue;
            }
            at = r.start + haystack[r.start..].chars().next().map_or(1, char::len_utf8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(list: &DenyList, text: &str) -> Vec<String> {
        let n = Normalized::new(text);
        let mut out = Vec::new();
        list.find(&n, &mut out);
        out.into_iter()
            .map(|r| text[n.original_range(text, r)].to_string())
            .collect()
    }

    #[test]
    fn phrases_match_whole_words_through_obfuscation() {
        let list = DenyList::new(&["ass", "Bad  Word", "敏感词", "secret plan"]).unwrap();
        assert!(hits(&list, "a classic passage").is_empty());
        assert_eq!(hits(&list, "you ass!"), ["ass"]);
        assert_eq!(hits(&list, "a ＢＡＤ ｗｏｒｄ here"), ["ＢＡＤ ｗｏｒｄ"]);
        assert_eq!(hits(&list, "b\u{200B}ad wo\u{00AD}rd"), ["b\u{200B}ad wo\u{00AD}rd"]);
        assert_eq!(hits(&list, "这是敏感词吧"), ["敏感词"]);
        assert_eq!(hits(&list, "这是敏\u{200B}感词吧"), ["敏\u{200B}感词"]);
        assert_eq!(hits(&list, "𝐬𝐞𝐜𝐫𝐞𝐭 𝐩𝐥𝐚𝐧"), ["𝐬𝐞𝐜𝐫𝐞𝐭 𝐩𝐥𝐚𝐧"]);
        assert!(hits(&list, "bad words").is_empty(), "a longer word is not the phrase");
        assert!(hits(&list, "secretplan").is_empty());
    }

    #[test]
    fn overlapping_phrases_are_each_found() {
        let list = DenyList::new(&["bad", "bad words"]).unwrap();
        assert_eq!(hits(&list, "bad wordsmith"), ["bad"]);
        assert_eq!(list.longest_chars(), 9);
    }

    #[test]
    fn empty_lists_and_blank_phrases_are_refused() {
        assert!(matches!(DenyList::new::<&str>(&[]), Err(DenyError::Empty)));
        assert!(matches!(DenyList::new(&["ok", " \u{200B} "]), Err(DenyError::Blank(1))));
        assert_eq!(DenyList::parse_file("# c\n\n a \nb\n"), ["a", "b"]);
    }
}
