//! Reading a question into its facts: the text cut into words (ASCII words, Chinese runs matched
//! longest first against the lists, numerals), each word looked up once.

use super::lexicon::*;
use super::Question;

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
pub(super) fn stem(w: &str) -> String {
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
        q.stems = sorted_stems(&q.words);
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

/// The ASCII words stemmed and sorted, for pairing prefix flips and typos.
fn sorted_stems(words: &[String]) -> Vec<String> {
    let mut v: Vec<String> = words.iter().filter(|w| w.is_ascii()).map(|w| stem(w)).collect();
    v.sort();
    v
}
