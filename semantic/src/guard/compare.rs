//! Comparing two questions fact by fact (see the parent module for the rules).

use super::lexicon::{EN_FLIP_PREFIXES, SOFT_GROUPS};
use super::{Block, Question, Verdict};

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
    let (flip_a, flip_b) = difference(&a.stems, &b.stems);
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
