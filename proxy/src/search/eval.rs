//! How well passages are ranked against the user's question, on a labelled set
//! (`docs/eval/search-rank.jsonl`: one JSON object per line, `{"question", "passages": [{"text",
//! "relevant"}], "lang", "note"}`; a passage's place in its list is the engine's rank). Each case
//! is ranked by BM25 alone ([`rank::rank`]) and by the blend with the embedder's similarity
//! ([`rank::blend`]); a ranking is scored by where its first relevant passage lands, how many
//! relevant passages it keeps, and how many irrelevant ones it lets through (they take budget).
//! `cargo run --release -p tollgate --example rank_eval` prints the table.

use serde::Deserialize;

use super::rank::{self, Passage};

/// One labelled question.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub question: String,
    pub passages: Vec<Labelled>,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    pub text: String,
    pub relevant: bool,
}

/// Cases from JSONL text; a line that does not parse is an error naming it.
pub fn parse_cases(jsonl: &str) -> Result<Vec<Case>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

/// What one ranking did with one case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// 1-based place of the first relevant passage among those kept (`None`: all dropped).
    pub first_relevant: Option<usize>,
    /// Relevant passages kept, of `relevant`.
    pub kept: usize,
    pub relevant: usize,
    /// Irrelevant passages kept.
    pub noise: usize,
}

/// Totals over a set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub cases: usize,
    /// Cases whose first passage is relevant.
    pub top1: usize,
    /// Sum of 1 / place of the first relevant passage (0 when none is kept).
    pub reciprocal: f64,
    pub kept: usize,
    pub relevant: usize,
    pub noise: usize,
}

impl Score {
    pub fn add(&mut self, o: &Outcome) {
        self.cases += 1;
        self.top1 += usize::from(o.first_relevant == Some(1));
        self.reciprocal += o.first_relevant.map_or(0.0, |r| 1.0 / r as f64);
        self.kept += o.kept;
        self.relevant += o.relevant;
        self.noise += o.noise;
    }

    pub fn hit_at_1(&self) -> f64 {
        self.top1 as f64 / self.cases.max(1) as f64
    }

    pub fn mrr(&self) -> f64 {
        self.reciprocal / self.cases.max(1) as f64
    }

    pub fn recall(&self) -> f64 {
        self.kept as f64 / self.relevant.max(1) as f64
    }
}

fn passages(case: &Case) -> Vec<Passage> {
    case.passages
        .iter()
        .enumerate()
        .map(|(i, p)| Passage {
            source: i,
            text: p.text.clone(),
            rank: i,
            score: 0.0,
        })
        .collect()
}

fn outcome(case: &Case, ranked: &[Passage]) -> Outcome {
    let relevant = |p: &Passage| case.passages.get(p.source).is_some_and(|l| l.relevant);
    Outcome {
        first_relevant: ranked.iter().position(relevant).map(|i| i + 1),
        kept: ranked.iter().filter(|p| relevant(p)).count(),
        relevant: case.passages.iter().filter(|l| l.relevant).count(),
        noise: ranked.iter().filter(|p| !relevant(p)).count(),
    }
}

/// `case` ranked by BM25 alone.
pub fn lexical(case: &Case) -> Outcome {
    let mut ps = passages(case);
    rank::rank(&case.question, &mut ps);
    outcome(case, &ps)
}

/// `case` ranked by the blend, the embedder reading the `top` best candidates;
/// `similarity(question, passage)` is the embedder's cosine.
pub fn blended(case: &Case, weight: f32, top: usize, similarity: &mut dyn FnMut(usize) -> f32) -> Outcome {
    let mut ps = passages(case);
    let best = rank::bm25(&case.question, &mut ps);
    let mut sims = vec![None; ps.len()];
    for i in rank::candidates(&ps, best, top) {
        sims[i] = Some(similarity(ps[i].source));
    }
    rank::blend(&mut ps, best, &sims, weight);
    outcome(case, &ps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = include_str!("../../../docs/eval/search-rank.jsonl");

    #[test]
    fn the_shipped_set_parses_and_every_case_has_a_relevant_and_an_irrelevant_passage() {
        let cases = parse_cases(SET).unwrap();
        assert!(cases.len() >= 40);
        for c in &cases {
            assert!(c.passages.iter().any(|p| p.relevant), "{}", c.question);
            assert!(c.passages.iter().any(|p| !p.relevant), "{}", c.question);
        }
        assert!(parse_cases("{\"question\": 1}").unwrap_err().starts_with("line 1"));
    }

    #[test]
    fn a_perfect_similarity_ranks_the_relevant_passage_first_where_words_mislead() {
        // Where BM25 puts a distractor first, an embedder that knows the answer (1.0 for the
        // relevant passages, 0.1 for the others) puts a relevant passage first.
        let cases = parse_cases(SET).unwrap();
        let misled: Vec<&Case> = cases.iter().filter(|c| lexical(c).first_relevant != Some(1)).collect();
        assert!(!misled.is_empty());
        for case in misled {
            let mut oracle = |i: usize| if case.passages[i].relevant { 1.0 } else { 0.1 };
            let o = blended(case, 0.7, 16, &mut oracle);
            assert_eq!(o.first_relevant, Some(1), "{}", case.question);
            assert_eq!(o.kept, o.relevant, "{}", case.question);
        }
    }
}
