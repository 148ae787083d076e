//! The labelled evaluation of the hit decision: pairs of (cached question, new question) that
//! should hit or must miss, scored with a real embedder, for the guarded decision and for the
//! naive threshold-only one beside it.
//!
//! The shipped set (`semantic/eval/pairs_*.tsv`) has English and Chinese pairs: paraphrases,
//! reorderings, politeness and typos that should hit; other numbers, units, dates, names,
//! negations, opposite actions, comparison direction, scope and roles that must miss. Lines are
//! `hit|miss <TAB> category <TAB> cached question <TAB> new question`.

use crate::guard::{compare, Question, Verdict};
use crate::{cosine, Embedder, HitPolicy, SemanticError};

/// One labelled pair.
#[derive(Debug, Clone)]
pub struct Pair {
    pub should_hit: bool,
    pub lang: String,
    pub category: String,
    pub cached: String,
    pub query: String,
}

/// The sets that ship with the crate.
pub fn shipped() -> Vec<Pair> {
    let mut pairs = parse("en", include_str!("../eval/pairs_en.tsv"));
    pairs.extend(parse("zh", include_str!("../eval/pairs_zh.tsv")));
    pairs
}

/// Pairs from TSV text (see the module docs); malformed lines are skipped.
pub fn parse(lang: &str, tsv: &str) -> Vec<Pair> {
    tsv.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let label = f.next()?;
            let (category, cached, query) = (f.next()?, f.next()?, f.next()?);
            let should_hit = match label {
                "hit" => true,
                "miss" => false,
                _ => return None,
            };
            Some(Pair {
                should_hit,
                lang: lang.to_string(),
                category: category.to_string(),
                cached: cached.to_string(),
                query: query.to_string(),
            })
        })
        .collect()
}

/// A pair with its similarity and the guards' verdict.
#[derive(Debug, Clone)]
pub struct Scored {
    pub pair: Pair,
    pub similarity: f32,
    pub verdict: Verdict,
}

/// Embeds both sides of every pair (in batches) and reads both questions.
pub fn score(embedder: &mut Embedder, pairs: &[Pair]) -> Result<Vec<Scored>, SemanticError> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(32) {
        let texts: Vec<&str> = chunk
            .iter()
            .flat_map(|p| [p.cached.as_str(), p.query.as_str()])
            .collect();
        let vectors = embedder.embed(&texts)?;
        for (k, p) in chunk.iter().enumerate() {
            out.push(Scored {
                pair: p.clone(),
                similarity: cosine(&vectors[2 * k], &vectors[2 * k + 1]),
                verdict: compare(&Question::read(&p.query), &Question::read(&p.cached)),
            });
        }
    }
    Ok(out)
}

/// Counts of one decision rule over a set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub true_hits: usize,
    pub false_hits: usize,
    pub should_hit: usize,
    pub must_miss: usize,
}

impl Tally {
    pub fn precision(&self) -> f64 {
        let hits = self.true_hits + self.false_hits;
        if hits == 0 {
            1.0
        } else {
            self.true_hits as f64 / hits as f64
        }
    }

    pub fn recall(&self) -> f64 {
        if self.should_hit == 0 {
            0.0
        } else {
            self.true_hits as f64 / self.should_hit as f64
        }
    }
}

/// Tallies `decide` over `scored`.
pub fn tally(scored: &[Scored], decide: impl Fn(&Scored) -> bool) -> Tally {
    let mut t = Tally::default();
    for s in scored {
        let hit = decide(s);
        if s.pair.should_hit {
            t.should_hit += 1;
            t.true_hits += usize::from(hit);
        } else {
            t.must_miss += 1;
            t.false_hits += usize::from(hit);
        }
    }
    t
}

/// The guarded decision at `policy`.
pub fn guarded(policy: &HitPolicy) -> impl Fn(&Scored) -> bool + '_ {
    move |s| policy.allows(s.similarity, s.verdict)
}

/// The threshold-only decision every anchor uses.
pub fn naive(threshold: f32) -> impl Fn(&Scored) -> bool {
    move |s| s.similarity >= threshold
}

/// The naive threshold with the best precision that still keeps `min_recall`, and its tally.
pub fn best_naive(scored: &[Scored], min_recall: f64) -> (f32, Tally) {
    let mut best: Option<(f32, Tally)> = None;
    let mut thresholds: Vec<f32> = scored.iter().map(|s| s.similarity).collect();
    thresholds.sort_by(|a, b| a.total_cmp(b));
    for t in thresholds {
        let candidate = tally(scored, naive(t));
        if candidate.recall() >= min_recall && best.is_none_or(|(_, b)| candidate.precision() > b.precision()) {
            best = Some((t, candidate));
        }
    }
    best.unwrap_or((1.0, tally(scored, naive(1.0))))
}
