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

mod lexicon;

use std::collections::HashMap;
use std::sync::OnceLock;

use lexicon::*;

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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
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

struct Lexicon {
    en: HashMap<&'static str, Kind>,
    zh: HashMap<&'static str, Kind>,
    zh_longest: usize,
}

fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let mut en = HashMap::new();
        // Later lists win where a word is in two: a pole or a number says more than "function word".
        for w in EN_STOP {
            en.insert(*w, Kind::Stop);
        }
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
        for w in EN_DATES {
            en.insert(*w, Kind::Date);
        }
        for w in EN_UNITS {
            en.insert(*w, Kind::Unit);
        }
        for (w, g, p) in EN_POLAR {
            en.insert(*w, Kind::Polar(*g, *p));
        }
        for (w, v) in EN_NUMBERS {
            en.insert(*w, Kind::Number(*v));
        }
        for w in EN_NEGATORS {
            en.insert(*w, Kind::Negator);
        }
        for w in EN_STOP_PAIRS {
            en.insert(*w, Kind::Stop);
        }
        let mut zh = HashMap::new();
        for w in ZH_STOP {
            zh.insert(*w, Kind::Stop);
        }
        for w in ZH_LEXICAL {
            zh.insert(*w, Kind::Lexical);
        }
        for w in ZH_DATES {
            zh.insert(*w, Kind::Date);
        }
        for w in ZH_UNITS {
            zh.insert(*w, Kind::Unit);
        }
        for (w, g, p) in ZH_POLAR {
            zh.insert(*w, Kind::Polar(*g, *p));
        }
        for w in ZH_NEGATORS {
            zh.insert(*w, Kind::Negator);
        }
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

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// Full-width ASCII to ASCII, ideographic space to space; everything else as it is.
fn narrow(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        '\u{2019}' | '\u{2018}' => '\'',
        _ => c,
    }
}

/// A raw token of the text before the word lists are applied.
enum Raw {
    /// An ASCII word, lowercased, with whether it looked like a name.
    Word {
        lower: String,
        name: bool,
    },
    Symbol(&'static str),
    Cjk(String),
}

fn scan(text: &str) -> (Vec<Raw>, bool) {
    let chars: Vec<char> = text.chars().map(narrow).collect();
    let has_cjk = chars.iter().any(|c| is_cjk(*c));
    let mut out = Vec::new();
    let mut sentence_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphanumeric() {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                let joins = |j: usize| j + 1 < chars.len() && j > start;
                if d.is_ascii_alphanumeric()
                    || (d == '\'' && joins(i) && chars[i + 1].is_ascii_alphabetic())
                    || ((d == '.' || d == ',')
                        && joins(i)
                        && chars[i - 1].is_ascii_digit()
                        && chars[i + 1].is_ascii_digit())
                {
                    i += 1;
                } else {
                    break;
                }
            }
            let word: String = chars[start..i].iter().collect();
            let first_upper = word.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            let letters = word.chars().filter(|c| c.is_ascii_alphabetic()).count();
            let all_caps = letters >= 2 && word.chars().all(|c| !c.is_ascii_lowercase());
            let name = letters > 0 && word != "I" && (has_cjk || all_caps || (first_upper && !sentence_start));
            out.push(Raw::Word {
                lower: word.to_ascii_lowercase(),
                name,
            });
            sentence_start = false;
            continue;
        }
        if is_cjk(c) {
            let start = i;
            while i < chars.len() && is_cjk(chars[i]) {
                i += 1;
            }
            out.push(Raw::Cjk(chars[start..i].iter().collect()));
            sentence_start = false;
            continue;
        }
        match c {
            '°' if i + 1 < chars.len() && matches!(chars[i + 1], 'C' | 'c' | 'F' | 'f') => {
                out.push(Raw::Symbol(if matches!(chars[i + 1], 'C' | 'c') {
                    "°c"
                } else {
                    "°f"
                }));
                i += 1;
            }
            '%' => out.push(Raw::Symbol("%")),
            '$' => out.push(Raw::Symbol("$")),
            '€' => out.push(Raw::Symbol("€")),
            '£' => out.push(Raw::Symbol("£")),
            '¥' | '￥' => out.push(Raw::Symbol("¥")),
            '.' | '?' | '!' | '。' | '？' | '！' | ':' | '：' => sentence_start = true,
            _ => {}
        }
        i += 1;
    }
    (out, has_cjk)
}

/// A crude stem, the same for both questions: enough that "updates", "updated" and "updating"
/// meet, and lookups find "miles" under "mile".
fn stem(w: &str) -> String {
    let n = w.len();
    let s = if n > 5 && w.ends_with("ies") {
        format!("{}y", &w[..n - 3])
    } else if n > 5 && w.ends_with("ing") {
        w[..n - 3].to_string()
    } else if n > 4
        && (w.ends_with("ed")
            || w.ends_with("ches")
            || w.ends_with("shes")
            || w.ends_with("xes")
            || w.ends_with("sses"))
    {
        w[..n - 2].to_string()
    } else if n > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w[..n - 1].to_string()
    } else {
        w.to_string()
    };
    match s.strip_suffix('e') {
        Some(t) if t.len() >= 3 => t.to_string(),
        _ => s,
    }
}

fn lookup_en(w: &str) -> Option<Kind> {
    let en = &lexicon().en;
    if let Some(k) = en.get(w) {
        return Some(*k);
    }
    let n = w.len();
    let mut candidates: Vec<String> = Vec::new();
    for suffix in ["s", "es", "d", "ed", "ing", "'s"] {
        if n > suffix.len() + 2 {
            if let Some(base) = w.strip_suffix(suffix) {
                candidates.push(base.to_string());
                if suffix == "ing" || suffix == "ed" {
                    candidates.push(format!("{base}e"));
                    // "stopped", "logging": a doubled final consonant.
                    let b = base.as_bytes();
                    if b.len() >= 2 && b[b.len() - 1] == b[b.len() - 2] {
                        candidates.push(base[..base.len() - 1].to_string());
                    }
                }
            }
        }
    }
    if let Some(base) = w.strip_suffix("ies") {
        candidates.push(format!("{base}y"));
    }
    candidates.iter().find_map(|c| en.get(c.as_str()).copied())
}

fn zh_number(chars: &[char]) -> Option<(u64, usize)> {
    let digit = |c: char| ZH_DIGITS.iter().find(|(d, _)| *d == c).map(|(_, v)| *v);
    let mult = |c: char| ZH_MULTIPLIERS.iter().find(|(d, _)| *d == c).map(|(_, v)| *v);
    let mut i = 0;
    let (mut total, mut section, mut current) = (0u64, 0u64, 0u64);
    let mut any = false;
    while i < chars.len() {
        if let Some(v) = digit(chars[i]) {
            current = v;
        } else if let Some(m) = mult(chars[i]) {
            if m >= 10_000 {
                section = (section + current).max(1) * m;
                total = total.saturating_add(section);
                section = 0;
            } else {
                section += current.max(1) * m;
            }
            current = 0;
        } else {
            break;
        }
        any = true;
        i += 1;
    }
    any.then(|| (total.saturating_add(section).saturating_add(current), i))
}

impl Question {
    /// Reads `text`: the lookup's last user turn, or a cached question.
    pub fn read(text: &str) -> Question {
        let (raw, _) = scan(text);
        let mut q = Question::default();
        let mut pending_number: Option<(u64, u64)> = None; // (total, current) of English number words
        let flush = |q: &mut Question, pending: &mut Option<(u64, u64)>| {
            if let Some((total, current)) = pending.take() {
                let v = total + current;
                q.numbers.push(v.to_string());
                q.order.push(format!("#{v}"));
            }
        };
        let mut words: Vec<(String, bool)> = Vec::new();
        for r in &raw {
            match r {
                Raw::Word { lower, name } => {
                    // Contractions: "don't" is "do not", "what's" is "what".
                    if let Some(base) = lower.strip_suffix("n't") {
                        let base = match base {
                            "ca" => "can",
                            "wo" => "will",
                            "sha" => "shall",
                            b => b,
                        };
                        words.push((base.to_string(), false));
                        words.push(("not".to_string(), false));
                    } else if let Some((base, _)) = lower.split_once('\'') {
                        words.push((base.to_string(), *name));
                    } else {
                        words.push((lower.clone(), *name));
                    }
                }
                Raw::Symbol(s) => words.push(((*s).to_string(), false)),
                Raw::Cjk(run) => {
                    flush(&mut q, &mut pending_number);
                    q.read_en(&std::mem::take(&mut words), &mut pending_number);
                    flush(&mut q, &mut pending_number);
                    q.read_zh(run);
                }
            }
        }
        q.read_en(&words, &mut pending_number);
        flush(&mut q, &mut pending_number);
        q.numbers.sort();
        q.polar.sort_unstable();
        q.polar.dedup();
        q.dates.sort();
        q.dates.dedup();
        q.units.sort();
        q.units.dedup();
        q.entities.sort();
        q.entities.dedup();
        q.content.sort();
        q.asks.sort();
        q.asks.dedup();
        q
    }

    fn read_en(&mut self, words: &[(String, bool)], pending: &mut Option<(u64, u64)>) {
        let mut i = 0;
        while i < words.len() {
            let (w, name) = (&words[i].0, words[i].1);
            self.words.push(w.clone());
            if name {
                self.entities.push(w.clone());
            }
            // Two-word entries first ("turn off", "log in", "light year").
            if i + 1 < words.len() {
                let pair = format!("{w} {}", words[i + 1].0);
                if let Some(kind) = lookup_en(&pair) {
                    self.words.push(words[i + 1].0.clone());
                    self.take(kind, &pair, pending);
                    i += 2;
                    continue;
                }
            }
            if w.bytes().any(|b| b.is_ascii_digit()) {
                let mut flushed = pending.take();
                if let Some((t, c)) = flushed.take() {
                    self.numbers.push((t + c).to_string());
                }
                for part in w
                    .split(|c: char| !c.is_ascii_digit() && c != '.' && c != ',')
                    .filter(|p| !p.is_empty())
                {
                    let digits: String = part.chars().filter(|c| *c != ',').collect();
                    let digits = digits.trim_matches('.');
                    let canonical = match digits.split_once('.') {
                        Some((int, frac)) => {
                            let frac = frac.trim_end_matches('0');
                            let int = int.trim_start_matches('0');
                            if frac.is_empty() {
                                int.to_string()
                            } else {
                                format!("{int}.{frac}")
                            }
                        }
                        None => digits.trim_start_matches('0').to_string(),
                    };
                    let canonical = if canonical.is_empty() || canonical.starts_with('.') {
                        format!("0{canonical}")
                    } else {
                        canonical
                    };
                    self.order.push(format!("#{canonical}"));
                    self.numbers.push(canonical);
                }
                let letters: String = w.chars().filter(|c| c.is_ascii_alphabetic()).collect();
                if !letters.is_empty() {
                    if let Some(Kind::Unit) = lookup_en(&letters) {
                        self.units.push(stem(&letters));
                    }
                }
                i += 1;
                continue;
            }
            match lookup_en(w) {
                Some(kind) => self.take(kind, w, pending),
                None => {
                    if let Some((t, c)) = pending.take() {
                        let v = t + c;
                        self.numbers.push(v.to_string());
                        self.order.push(format!("#{v}"));
                    }
                    let s = stem(w);
                    self.order.push(s.clone());
                    self.content.push(s);
                }
            }
            i += 1;
        }
    }

    fn take(&mut self, kind: Kind, w: &str, pending: &mut Option<(u64, u64)>) {
        if let Kind::Number(v) = kind {
            let (total, current) = pending.get_or_insert((0, 0));
            if v >= 1_000 {
                *total += (*current).max(1) * v;
                *current = 0;
            } else if v == 100 {
                *current = (*current).max(1) * 100;
            } else {
                *current += v;
            }
            return;
        }
        if let Some((t, c)) = pending.take() {
            let v = t + c;
            self.numbers.push(v.to_string());
            self.order.push(format!("#{v}"));
        }
        self.take_kind(kind, w);
    }

    fn take_kind(&mut self, kind: Kind, w: &str) {
        match kind {
            Kind::Stop => {
                if !w.is_empty() {
                    self.order.push(w.to_string());
                }
                if EN_QUESTION.contains(&w) || ZH_QUESTION.contains(&w) {
                    self.asks.push(w.to_string());
                }
            }
            Kind::Pronoun(p) => self.order.push(format!("@{p}")),
            Kind::Negator => {
                self.negations += 1;
                self.order.push("!".to_string());
            }
            Kind::Number(v) => {
                self.numbers.push(v.to_string());
                self.order.push(format!("#{v}"));
            }
            Kind::Date => {
                self.dates.push(stem(w));
                self.order.push(stem(w));
            }
            Kind::Unit => {
                self.units.push(stem(w));
                self.order.push(stem(w));
            }
            Kind::Polar(g, p) => {
                self.polar.push((g, p));
                self.order.push(format!("^{g}.{p}"));
            }
            Kind::Lexical => {
                self.order.push(w.to_string());
                self.content.push(w.to_string());
            }
        }
    }

    fn read_zh(&mut self, run: &str) {
        let lex = lexicon();
        let mut chars: Vec<char> = run.chars().collect();
        // 妹妹, 看看, 谢谢: a doubled character is the word once.
        chars.dedup();
        let mut i = 0;
        while i < chars.len() {
            // A-not-A questions (能不能, 是不是, 有没有) ask; they do not negate.
            if i + 2 < chars.len() && matches!(chars[i + 1], '不' | '没') && chars[i] == chars[i + 2] {
                i += 3;
                continue;
            }
            let longest = lex.zh_longest.min(chars.len() - i);
            let mut matched = None;
            for len in (1..=longest).rev() {
                let word: String = chars[i..i + len].iter().collect();
                if let Some(kind) = lex.zh.get(word.as_str()) {
                    matched = Some((word, *kind, len));
                    break;
                }
            }
            let number = zh_number(&chars[i..]);
            match (matched, number) {
                // A numeral longer than any word there reads as a number (三十 before 十).
                (Some((_, _, len)), Some((v, n))) if n > len || (n == len && len == 1) => {
                    self.take_kind(Kind::Number(v), "");
                    i += n;
                }
                (Some((word, kind, len)), _) => {
                    self.take_kind(kind, &word);
                    i += len;
                }
                (None, Some((v, n))) => {
                    self.take_kind(Kind::Number(v), "");
                    i += n;
                }
                (None, None) => {
                    let c = chars[i].to_string();
                    self.words.push(c.clone());
                    self.order.push(c.clone());
                    self.content.push(c);
                    i += 1;
                }
            }
        }
    }
}

/// Compares a lookup's question with a cached one.
pub fn compare(a: &Question, b: &Question) -> Verdict {
    if a.numbers != b.numbers {
        return Verdict::Blocked(Block::Number);
    }
    if a.negations != b.negations {
        return Verdict::Blocked(Block::Negation);
    }
    let mut changed = false;
    let groups = |q: &Question| q.polar.iter().map(|(g, _)| *g).collect::<Vec<_>>();
    let (ga, gb) = (groups(a), groups(b));
    for g in ga.iter().filter(|g| gb.contains(g)) {
        let poles = |q: &Question| {
            q.polar
                .iter()
                .filter(|(h, _)| h == g)
                .map(|(_, p)| *p)
                .collect::<Vec<_>>()
        };
        if poles(a) != poles(b) {
            return Verdict::Blocked(Block::Opposite);
        }
    }
    let one_sided = |x: &[u16], y: &[u16]| x.iter().any(|g| *g < SOFT_GROUPS && !y.contains(g));
    if one_sided(&ga, &gb) || one_sided(&gb, &ga) {
        changed = true;
    }
    let (words_a, words_b) = (sorted_stems(&a.words), sorted_stems(&b.words));
    let (flip_a, flip_b) = difference(&words_a, &words_b);
    for x in &flip_a {
        if flip_b.iter().any(|y| flipped(x, y)) {
            return Verdict::Blocked(Block::Opposite);
        }
    }
    let (only_a, only_b) = difference(&a.content, &b.content);
    if a.dates != b.dates {
        return Verdict::Blocked(Block::Date);
    }
    if !a.units.is_empty() && !b.units.is_empty() && a.units != b.units {
        return Verdict::Blocked(Block::Unit);
    }
    if a.units != b.units || a.asks != b.asks {
        changed = true;
    }
    let named_in = |e: &String, q: &Question| q.words.iter().any(|w| w == e || typo(e, w));
    if a.entities.iter().any(|e| !named_in(e, b)) || b.entities.iter().any(|e| !named_in(e, a)) {
        return Verdict::Blocked(Block::Name);
    }
    if !one_move_apart(&a.order, &b.order) {
        return Verdict::Blocked(Block::Order);
    }
    let mut unmatched_b = only_b.clone();
    for x in &only_a {
        match unmatched_b.iter().position(|y| typo(x, y)) {
            Some(at) => {
                unmatched_b.swap_remove(at);
            }
            None => changed = true,
        }
    }
    if changed || !unmatched_b.is_empty() {
        Verdict::ContentChanged
    } else {
        Verdict::Same
    }
}

fn sorted_stems(words: &[String]) -> Vec<String> {
    let mut v: Vec<String> = words.iter().filter(|w| w.is_ascii()).map(|w| stem(w)).collect();
    v.sort();
    v
}

/// The multiset differences a − b and b − a of two sorted lists.
fn difference(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.clone());
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(x.clone());
                i += 1;
            }
            (None, Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

/// One stem under two different prefixes of [`EN_FLIP_PREFIXES`]: lock/unlock, import/export.
fn flipped(x: &str, y: &str) -> bool {
    EN_FLIP_PREFIXES.iter().any(|p| {
        x.strip_prefix(p).is_some_and(|stem_x| {
            stem_x.len() >= 3
                && EN_FLIP_PREFIXES
                    .iter()
                    .any(|q| q != p && y.strip_prefix(q).is_some_and(|stem_y| stem_y == stem_x))
        })
    })
}

/// A misspelling of one ASCII word for another: one edit (two for long words), transpositions
/// counting as one.
fn typo(x: &str, y: &str) -> bool {
    if !x.is_ascii() || !y.is_ascii() || x.len().min(y.len()) < 4 {
        return false;
    }
    let limit = if x.len().max(y.len()) >= 8 { 2 } else { 1 };
    if x.len().abs_diff(y.len()) > limit {
        return false;
    }
    osa_distance(x.as_bytes(), y.as_bytes()) <= limit
}

fn osa_distance(a: &[u8], b: &[u8]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// Whether the tokens both questions share once each stand in the same order, or in an order one
/// move of a contiguous run explains ("In Python, how do I …" / "How do I … in Python").
fn one_move_apart(a: &[String], b: &[String]) -> bool {
    let once = |q: &[String], t: &String| q.iter().filter(|u| *u == t).count() == 1;
    let shared: Vec<&String> = a.iter().filter(|t| once(a, t) && once(b, t)).collect();
    let s: Vec<&String> = shared.clone();
    let t: Vec<&String> = b.iter().filter(|x| shared.contains(x)).collect();
    if s == t {
        return true;
    }
    let n = s.len();
    let prefix = s.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let suffix = s.iter().rev().zip(t.iter().rev()).take_while(|(x, y)| x == y).count();
    let (sm, tm) = (
        &s[prefix..n - suffix.min(n - prefix)],
        &t[prefix..n - suffix.min(n - prefix)],
    );
    (1..sm.len()).any(|k| sm[k..].iter().chain(&sm[..k]).eq(tm.iter()))
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
