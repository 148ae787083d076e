//! False-hit guards: what a similarity threshold cannot see.
//!
//! Sentence embeddings put "turn on dark mode" and "turn off dark mode", or "refund for order
//! 1123" and "order 1132", closer than many true paraphrases, so no threshold separates them.
//! Each question is read once into [`Question`] (its numbers, negations, opposition words, dates,
//! units, names, content words and their order), and two questions are compared fact by fact:
//!
//! - **blocked** when a fact differs: another number or numeral (digits, English number words,
//!   Chinese numerals); another count of negations (`not`, `n't`, `without`, 不, 没有 …, with
//!   Chinese A-not-A questions like 能不能 read as questions); opposite words of one group in both
//!   (on/off, buy/sell, 最高/最低, or one stem under two prefixes: lock/unlock, import/export);
//!   other dates or units when both name one; a name (a capitalised or Latin word) in one that the
//!   other lacks; the same words in an order no single move explains (who does what to whom:
//!   "the landlord evicts the tenant" vs "the tenant evicts the landlord");
//! - **content changed** when a content word is added, dropped or replaced (after typo matching):
//!   a hit then needs the stricter similarity;
//! - **same** otherwise: a hit needs the ordinary threshold.

mod compare;
mod lexicon;
mod read;

pub use compare::compare;

/// A question as the guards read it. Built once per cached question and once per lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Question {
    numbers: Vec<String>,
    negations: u32,
    polar: Vec<(u16, u8)>,
    dates: Vec<String>,
    units: Vec<String>,
    entities: Vec<String>,
    /// Every word, lowercased, for finding a name of the other question.
    words: Vec<String>,
    /// The ASCII words stemmed and sorted (prefix flips), computed once when read.
    stems: Vec<String>,
    /// Content words (stems), sorted.
    content: Vec<String>,
    /// Question words (what, why, 什么, 为什么 …), sorted.
    asks: Vec<String>,
    /// Every token in order (pronouns by person, so "I" and "me" are one; numbers by value; poles
    /// by group), for telling a moved phrase from swapped roles.
    order: Vec<String>,
}

/// What [`compare`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Only function words, word order by one move, or typos differ.
    Same,
    /// Content words differ: a hit needs the stricter similarity.
    ContentChanged,
    /// Different questions, whatever the similarity.
    Blocked(Block),
}

/// Why two questions are different questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Block {
    Number,
    Negation,
    Opposite,
    Date,
    Unit,
    Name,
    Order,
}

impl Block {
    pub fn as_str(self) -> &'static str {
        match self {
            Block::Number => "number",
            Block::Negation => "negation",
            Block::Opposite => "opposite",
            Block::Date => "date",
            Block::Unit => "unit",
            Block::Name => "name",
            Block::Order => "order",
        }
    }
}

/// The similarities a hit needs: `threshold` when only function words, order or typos differ,
/// `strict` when content words differ; never when a guard blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HitPolicy {
    pub threshold: f32,
    pub strict: f32,
}

impl HitPolicy {
    pub fn allows(&self, similarity: f32, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Same => similarity >= self.threshold,
            Verdict::ContentChanged => similarity >= self.strict,
            Verdict::Blocked(_) => false,
        }
    }

    /// The policy with a caller's minimum similarity: it can raise both bars, never lower them.
    pub fn tightened(self, minimum: f32) -> HitPolicy {
        HitPolicy {
            threshold: self.threshold.max(minimum),
            strict: self.strict.max(minimum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(a: &str, b: &str) -> Verdict {
        compare(&Question::read(a), &Question::read(b))
    }

    #[test]
    fn numbers_in_digits_words_and_chinese_numerals_compare_by_value() {
        assert_eq!(Question::read("book two tickets").numbers, vec!["2"]);
        assert_eq!(Question::read("twenty five items").numbers, vec!["25"]);
        assert_eq!(Question::read("订三百二十张票").numbers, vec!["320"]);
        assert_eq!(Question::read("1,000 dollars").numbers, vec!["1000"]);
        assert_eq!(
            verdict("Book a table for 2 people", "book a table for two people"),
            Verdict::Same
        );
        assert_eq!(
            verdict("订单1123的退款", "订单1132的退款"),
            Verdict::Blocked(Block::Number)
        );
        assert_eq!(
            verdict("请问一下怎么退款", "怎么退款"),
            Verdict::Same,
            "一下 is not a number"
        );
    }

    #[test]
    fn negation_opposites_and_prefix_flips_block() {
        assert_eq!(
            verdict("Which foods contain gluten?", "Which foods don't contain gluten?"),
            Verdict::Blocked(Block::Negation)
        );
        assert_eq!(
            verdict("能退款吗", "能不能退款"),
            Verdict::Same,
            "A-not-A asks, it does not negate"
        );
        assert_eq!(
            verdict("How do I turn on dark mode?", "How do I turn off dark mode?"),
            Verdict::Blocked(Block::Opposite)
        );
        assert_eq!(
            verdict("How do I turn on dark mode?", "How do I enable dark mode?"),
            Verdict::Same
        );
        assert_eq!(
            verdict("How do I lock the screen?", "How do I unlock the screen?"),
            Verdict::Blocked(Block::Opposite)
        );
        assert_eq!(
            verdict("怎么打开深色模式", "怎么关闭深色模式"),
            Verdict::Blocked(Block::Opposite)
        );
        assert_eq!(
            verdict("Move money to my savings", "Move money from my savings"),
            Verdict::Blocked(Block::Opposite)
        );
        assert_eq!(
            verdict("How to reset my password", "How do I reset my password"),
            Verdict::Same
        );
    }

    #[test]
    fn names_and_roles_block_but_a_moved_phrase_does_not() {
        assert_eq!(
            verdict("What is the capital of France?", "What is the capital of Germany?"),
            Verdict::Blocked(Block::Name)
        );
        assert_eq!(
            verdict(
                "Can the landlord evict the tenant?",
                "Can the tenant evict the landlord?"
            ),
            Verdict::Blocked(Block::Order)
        );
        assert_eq!(
            verdict(
                "In Python, how do I read a file line by line?",
                "How do I read a file line by line in Python?"
            ),
            Verdict::Same
        );
    }

    #[test]
    fn typos_match_and_other_words_change_the_content() {
        assert_eq!(
            verdict("How do I reset my password?", "How do I rest my pasword?"),
            Verdict::Same
        );
        assert_eq!(
            verdict("What are the symptoms of flu?", "What are the symptoms of measles?"),
            Verdict::ContentChanged
        );
    }
}
