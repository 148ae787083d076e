//! How the knowledge base cuts text into terms, for documents and queries alike: lowercase
//! alphanumeric words, and for Chinese, Japanese and Korean text (written without spaces) each
//! character and each pair of neighbours, so a query matches inside a run of CJK text.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The tokenizer's name in the index.
pub const NAME: &str = "tollgate_words";

#[derive(Clone, Default)]
pub struct Words;

pub struct Terms {
    tokens: Vec<Token>,
    /// The current token's index + 1 (0: before the first).
    at: usize,
    /// What `token` shows before the first `advance` (tantivy never asks then).
    none: Token,
}

impl Tokenizer for Words {
    type TokenStream<'a> = Terms;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Terms {
        Terms {
            tokens: tokens(text),
            at: 0,
            none: Token::default(),
        }
    }
}

impl TokenStream for Terms {
    fn advance(&mut self) -> bool {
        if self.at < self.tokens.len() {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        self.at
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .unwrap_or(&self.none)
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.at.checked_sub(1) {
            Some(i) if i < self.tokens.len() => &mut self.tokens[i],
            _ => &mut self.none,
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff)
}

/// Every term of `text`, with offsets and positions.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word: Option<(usize, String)> = None;
    let mut prev_cjk: Option<(usize, char)> = None;
    let push = |out: &mut Vec<Token>, from: usize, to: usize, text: String| {
        let position = out.len();
        out.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text,
            position_length: 1,
        });
    };
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if is_cjk(c) {
            if let Some((from, w)) = word.take() {
                push(&mut out, from, i, w);
            }
            if let Some((p, pc)) = prev_cjk {
                push(&mut out, p, end, format!("{pc}{c}"));
            }
            push(&mut out, i, end, c.to_string());
            prev_cjk = Some((i, c));
        } else if c.is_alphanumeric() {
            prev_cjk = None;
            match &mut word {
                Some((_, w)) => w.extend(c.to_lowercase()),
                None => word = Some((i, c.to_lowercase().collect())),
            }
        } else {
            prev_cjk = None;
            if let Some((from, w)) = word.take() {
                push(&mut out, from, i, w);
            }
        }
    }
    if let Some((from, w)) = word.take() {
        push(&mut out, from, text.len(), w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        let mut t = Words;
        let mut s = t.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn words_are_lowercased_and_cjk_is_cut_into_characters_and_pairs() {
        assert_eq!(terms("Leave Policy, v2!"), ["leave", "policy", "v2"]);
        assert_eq!(terms("年假 OK"), ["年", "年假", "假", "ok"]);
        assert!(terms("").is_empty());
        assert!(terms(" ,.; ").is_empty());
    }
}
