//! Ranking what the engines found against the user's own question: results are cut into
//! passages, scored with BM25 over the candidate set (plus a small prior for the engine's own
//! order, so a question in other words than its sources still keeps the engines' best), and
//! near-identical passages (the same text syndicated on several pages) are kept once.

use std::collections::HashMap;

/// A passage scoring below this share of the best passage's BM25 is dropped.
pub const MIN_RELATIVE_SCORE: f32 = 0.2;

/// Words a passage holds at most.
pub const PASSAGE_WORDS: usize = 120;

/// One passage of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Index of its source in the request's source list.
    pub source: usize,
    pub text: String,
    /// The engine's rank of the source (0 = its first result).
    pub rank: usize,
    pub score: f32,
}

/// `text` cut into passages of at most `max_words` words, at sentence ends where possible.
pub fn passages(text: &str, max_words: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for word in text.split_whitespace() {
        current.push(word);
        let sentence_end = word.ends_with(['.', '!', '?', '。', '！', '？']);
        if current.len() >= max_words || (sentence_end && current.len() >= max_words * 2 / 3) {
            out.push(current.join(" "));
            current.clear();
        }
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out
}

/// Words common enough to say nothing of a passage's topic (English).
const STOP: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "get", "got", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me",
    "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there", "they",
    "this", "to", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would",
    "you", "your",
];

/// The terms of `text`: lowercase alphanumeric words (stop words left out); each CJK character
/// and each pair of adjacent ones (a stand-in for word segmentation).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_cjk: Option<char> = None;
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() && !STOP.contains(&word.as_str()) {
            out.push(std::mem::take(word));
        }
        word.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush(&mut word, &mut out);
            out.push(c.to_string());
            if let Some(p) = prev_cjk {
                out.push(format!("{p}{c}"));
            }
            prev_cjk = Some(c);
        } else if c.is_alphanumeric() {
            prev_cjk = None;
            word.extend(c.to_lowercase());
        } else {
            prev_cjk = None;
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af | 0xf900..=0xfaff)
}

/// Score every passage against `question` (BM25, k1 1.2, b 0.75, document frequencies over
/// the passages themselves), then sort best first. The engine's order adds a prior worth at
/// most a third of the best BM25 score, so it decides between passages the words do not.
/// When some passages share words with the question, those that score below a fifth of the
/// best are dropped;
/// when none do (a question in another language than its sources), the engines' order stands.
pub fn rank(question: &str, passages: &mut Vec<Passage>) {
    let best = bm25(question, passages);
    cut(passages, best);
}

/// After [`bm25`] (best score `best`): what [`rank`] does with the scores.
pub fn cut(passages: &mut Vec<Passage>, best: f32) {
    if best > 0.0 {
        // Some passages share words with the question: those that share none, or share only
        // a word or two the question barely rests on, are what an engine returned loosely,
        // and would only take budget.
        passages.retain(|p| p.score >= best * MIN_RELATIVE_SCORE);
    }
    add_prior(passages, best);
}

/// Each passage's BM25 score against `question` (k1 1.2, b 0.75, document frequencies over the
/// passages themselves) into its `score`; the best score.
pub fn bm25(question: &str, passages: &mut [Passage]) -> f32 {
    let q: Vec<String> = {
        let mut q = terms(question);
        q.sort();
        q.dedup();
        q
    };
    let docs: Vec<Vec<String>> = passages.iter().map(|p| terms(&p.text)).collect();
    let n = docs.len() as f32;
    let avg = (docs.iter().map(Vec::len).sum::<usize>() as f32 / n.max(1.0)).max(1.0);
    let mut df: HashMap<&str, f32> = HashMap::new();
    for d in &docs {
        let mut seen: Vec<&str> = d
            .iter()
            .map(String::as_str)
            .filter(|t| q.iter().any(|x| x == t))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            *df.entry(t).or_default() += 1.0;
        }
    }
    let (k1, b) = (1.2f32, 0.75f32);
    let mut best = 0f32;
    for (p, d) in passages.iter_mut().zip(&docs) {
        let len = d.len() as f32;
        let mut s = 0f32;
        for t in &q {
            let tf = d.iter().filter(|w| *w == t).count() as f32;
            if tf == 0.0 {
                continue;
            }
            let df = df.get(t.as_str()).copied().unwrap_or(0.0);
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            s += idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / avg));
        }
        p.score = s;
        best = best.max(s);
    }
    best
}

/// The engines' order as a prior (worth at most a third of `best`, or the whole score when
/// nothing scored), then best first.
fn add_prior(passages: &mut [Passage], best: f32) {
    let prior = if best > 0.0 { best / 3.0 } else { 1.0 };
    for p in passages.iter_mut() {
        p.score += prior / (1.0 + p.rank as f32);
    }
    passages.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// The `top` passages the embedder should read, after [`bm25`] scored them: the best by BM25
/// and the engines' order, as [`rank`] would order them before its cut (indices, best first).
pub fn candidates(passages: &[Passage], best: f32, top: usize) -> Vec<usize> {
    let prior = if best > 0.0 { best / 3.0 } else { 1.0 };
    let key = |p: &Passage| p.score + prior / (1.0 + p.rank as f32);
    let mut order: Vec<usize> = (0..passages.len()).collect();
    order.sort_by(|&a, &b| key(&passages[b]).total_cmp(&key(&passages[a])));
    order.truncate(top);
    order
}

/// Hybrid ranking, after [`bm25`] (best score `best`): each passage's score becomes
/// `(1 - weight)` × its BM25 relative to the best plus `weight` × its similarity to the question
/// scaled between the least and the most similar passage read (`similarity[i]`, the cosine of
/// passage `i`; `None` for a passage the embedder did not read, which counts as the least).
/// Both scales run from 0 to 1 (as in relative score fusion): a sentence embedder's cosines
/// sit in a narrow band, and scaled only by the best they would barely separate passages.
/// The passages read stay (at most `top` of them, in this order: the budget decides how many
/// go in); of the others, those under a fifth of the best BM25 are dropped as in [`rank`]. The
/// engines' order is added as in [`rank`], best first. A question in another language than its
/// sources ranks by meaning alone.
pub fn blend(passages: &mut Vec<Passage>, best: f32, similarity: &[Option<f32>], weight: f32) {
    let weight = weight.clamp(0.0, 1.0);
    let read = || similarity.iter().flatten().copied();
    let (low, high) = (
        read().fold(f32::INFINITY, f32::min),
        read().fold(f32::NEG_INFINITY, f32::max),
    );
    let mut top = 0f32;
    let mut keep = Vec::with_capacity(passages.len());
    for (i, p) in passages.iter_mut().enumerate() {
        let lexical = if best > 0.0 { p.score / best } else { 0.0 };
        let meaning = match similarity.get(i).copied().flatten() {
            Some(s) if high > low => Some((s - low) / (high - low)),
            Some(_) => Some(1.0),
            None => None,
        };
        keep.push(meaning.is_some() || best == 0.0 || lexical >= MIN_RELATIVE_SCORE);
        p.score = (1.0 - weight) * lexical + weight * meaning.unwrap_or(0.0);
        top = top.max(p.score);
    }
    let mut keep = keep.into_iter();
    passages.retain(|_| keep.next().unwrap_or(true));
    add_prior(passages, top);
}

/// Drop passages that repeat a better-ranked one (word trigram overlap of 80% or more).
pub fn dedupe(passages: &mut Vec<Passage>) {
    let shingles: Vec<Vec<u64>> = passages.iter().map(|p| trigrams(&p.text)).collect();
    let mut keep = vec![true; passages.len()];
    for i in 0..passages.len() {
        if !keep[i] {
            continue;
        }
        for j in i + 1..passages.len() {
            if keep[j] && similar(&shingles[i], &shingles[j]) {
                keep[j] = false;
            }
        }
    }
    let mut k = keep.into_iter();
    passages.retain(|_| k.next().unwrap_or(true));
}

fn trigrams(text: &str) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let mut out: Vec<u64> = words
        .windows(3.min(words.len().max(1)))
        .map(|w| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            h.finish()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Overlap (Jaccard) of two sorted sets is at least 0.8.
fn similar(a: &[u64], b: &[u64]) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    both * 5 >= union * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(source: usize, rank: usize, text: &str) -> Passage {
        Passage {
            source,
            text: text.into(),
            rank,
            score: 0.0,
        }
    }

    #[test]
    fn passages_matching_the_question_rank_first_whatever_the_engine_order() {
        let mut ps = vec![
            p(0, 0, "Tickets for the football final went on sale today."),
            p(
                1,
                1,
                "The Rust 1.85 release stabilised async closures and the 2024 edition.",
            ),
            p(2, 2, "Release notes of an unrelated product."),
        ];
        rank("What did Rust 1.85 stabilise? Which edition?", &mut ps);
        assert_eq!(ps[0].source, 1);
        assert_eq!(ps.len(), 1, "passages that share no word with the question are dropped");
        // A question in other words than every passage keeps the engines' order.
        let mut ps = vec![p(0, 1, "alpha"), p(1, 0, "beta")];
        rank("gamma?", &mut ps);
        assert_eq!(ps.iter().map(|p| p.source).collect::<Vec<_>>(), [1, 0]);
    }

    #[test]
    fn blending_ranks_by_meaning_keeps_what_was_read_and_cuts_the_rest_by_words() {
        let question = "How many vacation days do new staff get?";
        let mut ps = vec![
            p(0, 0, "New staff get a laptop on their first days."),
            p(1, 1, "Employees receive 25 days of paid annual leave."),
            p(2, 2, "The cafeteria opens at seven."),
            p(3, 3, "Parking is free."),
        ];
        let best = bm25(question, &mut ps);
        assert!(best > 0.0);
        // The embedder read the two best candidates; the answer is the closer in meaning.
        let read = candidates(&ps, best, 2);
        assert_eq!(read.len(), 2);
        let mut similarity = vec![None; ps.len()];
        for &i in &read {
            similarity[i] = Some(if ps[i].source == 1 { 0.6 } else { 0.2 });
        }
        let mut blended = ps.clone();
        blend(&mut blended, best, &similarity, 0.7);
        assert_eq!(blended[0].source, 1, "{blended:?}");
        // Both read passages stay; of the others, those sharing no word with the question go.
        for &i in &read {
            assert!(blended.iter().any(|b| b.source == ps[i].source));
        }
        assert!(blended.iter().all(|b| b.source != 3));
        // By words alone the answer is not first.
        let mut lexical = ps.clone();
        cut(&mut lexical, best);
        assert_ne!(lexical.first().map(|p| p.source), Some(1));
        // A question in another language than its passages ranks by meaning alone.
        let mut ps = vec![p(0, 0, "alpha"), p(1, 1, "beta")];
        let best = bm25("gamma?", &mut ps);
        blend(&mut ps, best, &[Some(0.1), Some(0.5)], 0.7);
        assert_eq!(ps.iter().map(|p| p.source).collect::<Vec<_>>(), [1, 0]);
    }

    #[test]
    fn cjk_questions_match_cjk_passages() {
        let mut ps = vec![p(0, 0, "今天天气很好。"), p(1, 1, "年假政策：员工每年有二十五天年假。")];
        rank("员工有多少天年假？", &mut ps);
        assert_eq!(ps[0].source, 1);
    }

    #[test]
    fn near_copies_are_kept_once_and_long_texts_are_cut() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let mut ps = vec![
            p(0, 0, text),
            p(1, 1, &format!("{text} thirteen")),
            p(2, 2, "something else entirely, with other words here"),
        ];
        dedupe(&mut ps);
        assert_eq!(ps.iter().map(|p| p.source).collect::<Vec<_>>(), [0, 2]);
        let long = "word. ".repeat(500);
        let cut = passages(&long, PASSAGE_WORDS);
        assert!(cut.len() >= 500 / PASSAGE_WORDS);
        assert!(cut.iter().all(|c| c.split_whitespace().count() <= PASSAGE_WORDS));
        assert_eq!(cut.iter().map(|c| c.split_whitespace().count()).sum::<usize>(), 500);
    }
}
