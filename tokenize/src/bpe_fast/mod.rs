//! Tollgate's own counter for OpenAI's BPE encodings (`o200k_base`, `cl100k_base`).
//!
//! Two steps, each by hand: the split tiktoken does with a regex ([`split`], byte classes with an
//! ASCII fast path that tests eight bytes a step), then byte-pair merging of each piece
//! ([`merge`], counted in stack arrays, never a token list). Ranks come from the tables
//! bpe-openai embeds, so nothing is read or downloaded at run time. Counts equal tiktoken's
//! (`tests/differential.rs`: a corpus and random strings, split by split and count by count).

mod cache;
mod classes;
mod merge;
mod split;

use std::sync::OnceLock;

use cache::PieceCache;
use classes::Classes;
use merge::Ranks;
pub use split::Pattern;
use split::Splitter;

/// The character class table both encodings share, built at first use.
fn classes() -> Option<&'static Classes> {
    static CLASSES: OnceLock<Option<Classes>> = OnceLock::new();
    CLASSES.get_or_init(|| Classes::build().ok()).as_ref()
}

/// One OpenAI encoding: its split pattern and its ranks.
pub struct Encoding {
    splitter: Splitter<'static>,
    ranks: Ranks,
    /// Tells this encoding's entries in the per-thread piece cache from the other's.
    tag: u8,
}

static O200K: OnceLock<Option<Encoding>> = OnceLock::new();
static CL100K: OnceLock<Option<Encoding>> = OnceLock::new();

impl Encoding {
    /// `o200k_base`, built at first use from the ranks bpe-openai embeds (milliseconds); `None`
    /// if the class table could not be read from regex-syntax (callers then count with
    /// bpe-openai itself).
    pub fn o200k() -> Option<&'static Encoding> {
        O200K
            .get_or_init(|| Self::build(bpe_openai::o200k_base(), Pattern::O200k, 0))
            .as_ref()
    }

    /// `cl100k_base`.
    pub fn cl100k() -> Option<&'static Encoding> {
        CL100K
            .get_or_init(|| Self::build(bpe_openai::cl100k_base(), Pattern::Cl100k, 1))
            .as_ref()
    }

    fn build(bpe: &'static bpe_openai::Tokenizer, pattern: Pattern, tag: u8) -> Option<Encoding> {
        Some(Encoding {
            splitter: Splitter::new(classes()?, pattern),
            ranks: Ranks::new(bpe),
            tag,
        })
    }

    /// Tokens in `text`, special-token text counted as ordinary text (tiktoken's `encode_ordinary`).
    pub fn count(&self, text: &str) -> usize {
        PieceCache::with(|cache| {
            self.count_pieces(text, |piece| cache.count(piece, self.tag, || self.ranks.count(piece)))
        })
        .unwrap_or_else(|| self.count_uncached(text))
    }

    /// [`count`](Self::count) without the per-thread piece cache: every piece looked up or merged
    /// afresh (the speed on text that does not repeat; benches).
    pub fn count_uncached(&self, text: &str) -> usize {
        self.count_pieces(text, |piece| self.ranks.count(piece))
    }

    #[inline(always)]
    fn count_pieces(&self, text: &str, mut count: impl FnMut(&[u8]) -> usize) -> usize {
        let bytes = text.as_bytes();
        let mut at = 0;
        let mut tokens = 0;
        while at < bytes.len() {
            let end = self.splitter.piece_end(bytes, at);
            tokens += count(bytes.get(at..end).unwrap_or_default());
            at = end;
        }
        tokens
    }

    /// The token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4);
        for piece in self.pieces(text) {
            self.ranks.encode(piece.as_bytes(), &mut out);
        }
        out
    }

    /// The pieces the split pattern cuts `text` into.
    pub fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.splitter.pieces(text)
    }
}
