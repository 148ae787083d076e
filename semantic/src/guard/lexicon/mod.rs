//! The word lists the guards read, English and Chinese. Each list names a kind of word whose
//! change turns a question into another question (numbers, negators, dates, units, the two poles
//! of an opposition) or whose change does not (function and politeness words).
//!
//! Opposition groups: every word has a group and a pole; two questions whose words of a group
//! differ ("turn on" vs "turn off", "buy" vs "sell", "最高" vs "最低") are different questions.
//! Words of one pole are interchangeable ("enable" = "turn on" = "开启"), so a paraphrase that
//! swaps them still hits.
//!
//! [`en`] holds the English lists, [`zh`] the Chinese ones; the group numbers are shared, so an
//! English and a Chinese word of one pole are the same fact.

pub mod en;
pub mod zh;

pub use en::*;
pub use zh::*;

use std::collections::HashMap;
use std::sync::OnceLock;

/// What a listed word is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Stop,
    Pronoun(&'static str),
    Negator,
    Number(u64),
    Date,
    Unit,
    Polar(u16, u8),
    /// A Chinese word kept whole as content (it contains a negator or pole character).
    Lexical,
}

/// The lists as lookup tables, built once.
pub struct Lexicon {
    pub en: HashMap<&'static str, Kind>,
    pub zh: HashMap<&'static str, Kind>,
    pub zh_longest: usize,
}

pub fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let mut en = HashMap::new();
        // Later lists win where a word is in two: a pole or a number says more than "function word".
        add(&mut en, EN_STOP, Kind::Stop);
        add(&mut en, EN_QUESTION, Kind::Stop);
        for (w, p) in [
            ("i", "i"),
            ("me", "i"),
            ("myself", "i"),
            ("we", "we"),
            ("us", "we"),
            ("you", "you"),
            ("he", "he"),
            ("him", "he"),
            ("she", "she"),
            ("they", "they"),
            ("them", "they"),
        ] {
            en.insert(w, Kind::Pronoun(p));
        }
        add(&mut en, EN_DATES, Kind::Date);
        add(&mut en, EN_UNITS, Kind::Unit);
        for (w, g, p) in EN_POLAR {
            en.insert(*w, Kind::Polar(*g, *p));
        }
        for (w, v) in EN_NUMBERS {
            en.insert(*w, Kind::Number(*v));
        }
        add(&mut en, EN_NEGATORS, Kind::Negator);
        add(&mut en, EN_STOP_PAIRS, Kind::Stop);
        let mut zh = HashMap::new();
        add(&mut zh, ZH_STOP, Kind::Stop);
        add(&mut zh, ZH_QUESTION, Kind::Stop);
        add(&mut zh, ZH_LEXICAL, Kind::Lexical);
        add(&mut zh, ZH_DATES, Kind::Date);
        add(&mut zh, ZH_UNITS, Kind::Unit);
        for (w, g, p) in ZH_POLAR {
            zh.insert(*w, Kind::Polar(*g, *p));
        }
        add(&mut zh, ZH_NEGATORS, Kind::Negator);
        for (w, p) in [
            ("我", "i"),
            ("我们", "we"),
            ("你", "you"),
            ("您", "you"),
            ("他", "he"),
            ("她", "she"),
            ("他们", "they"),
        ] {
            zh.insert(w, Kind::Pronoun(p));
        }
        let zh_longest = zh.keys().map(|k| k.chars().count()).max().unwrap_or(1);
        Lexicon { en, zh, zh_longest }
    })
}

fn add(map: &mut HashMap<&'static str, Kind>, words: &[&'static str], kind: Kind) {
    for w in words {
        map.insert(*w, kind);
    }
}
