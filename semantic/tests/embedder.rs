//! The real models that `scripts/fetch-models.sh` puts in `.models/`, run through ONNX Runtime.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests fail loudly on setup errors"
)]

use std::path::PathBuf;

use tollgate_semantic::{cosine, load_runtime, EmbedPool, Embedder, ModelFiles, PoolSize, Shed};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.models")
}

fn open(name: &str) -> Embedder {
    load_runtime(&models().join("onnxruntime/libonnxruntime.so")).expect("run scripts/setup.sh first");
    Embedder::open(&ModelFiles::in_dir(&models().join("embedders").join(name)), 1).expect("model opens")
}

#[test]
fn paraphrases_are_closer_than_different_questions_in_both_models() {
    for name in ["use-multilingual-v3", "all-minilm-l6-v2"] {
        let mut e = open(name);
        let v = e
            .embed(&[
                "How do I reset my password?",
                "What's the way to reset my password?",
                "How do I change my username?",
            ])
            .unwrap();
        assert!(
            (cosine(&v[0], &v[0]) - 1.0).abs() < 1e-4,
            "{name}: vectors are unit length"
        );
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2, "{name}");
    }
}

#[test]
fn a_batch_gives_the_vectors_of_its_texts_one_by_one() {
    let mut e = open("use-multilingual-v3");
    let texts = [
        "如何重置我的密码？",
        "a much longer question with many more words in it than the first",
        "x",
    ];
    let batch = e.embed(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        let one = e.embed(&[t]).unwrap();
        assert!(cosine(&one[0], b) > 0.9999, "{t}: padding in a batch changes nothing");
    }
}

#[test]
fn the_multilingual_model_matches_chinese_paraphrases() {
    let mut e = open("use-multilingual-v3");
    let v = e
        .embed(&["退款需要多久到账", "退款多长时间能到账", "退货需要多久"])
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > 0.9, "{}", cosine(&v[0], &v[1]));
    assert!(cosine(&v[0], &v[2]) < 0.8, "{}", cosine(&v[0], &v[2]));
}

#[test]
fn the_pool_embeds_like_the_model_and_sheds_when_its_queue_is_full() {
    open("use-multilingual-v3");
    let files = ModelFiles::in_dir(&models().join("embedders/use-multilingual-v3"));
    let pool = EmbedPool::start(
        &files,
        PoolSize {
            threads: 1,
            queue: 1,
            max_batch: 8,
        },
    )
    .unwrap();
    assert_eq!(pool.dims(), 512);
    let direct = open("use-multilingual-v3")
        .embed(&["How do I reset my password?"])
        .unwrap();
    let pooled = pool.embed_blocking("How do I reset my password?").unwrap();
    assert!(cosine(&direct[0], &pooled) > 0.9999);

    let mut waiting = Vec::new();
    let mut shed = 0;
    for n in 0..200 {
        match pool.submit(format!("question number {n} about refunds")) {
            Ok(rx) => waiting.push(rx),
            Err(Shed) => shed += 1,
        }
    }
    assert!(shed > 0, "a full queue refuses instead of queueing");
    assert_eq!(pool.stats().shed.load(std::sync::atomic::Ordering::Relaxed), shed);
    for rx in waiting {
        assert_eq!(
            rx.blocking_recv().unwrap().unwrap().len(),
            512,
            "every accepted text is embedded"
        );
    }
}

#[test]
fn the_pool_sheds_a_question_that_would_wait_longer_than_its_budget() {
    let files = ModelFiles::in_dir(&models().join("embedders/use-multilingual-v3"));
    open("use-multilingual-v3");
    let pool = EmbedPool::start(
        &files,
        PoolSize {
            threads: 1,
            queue: 256,
            max_batch: 4,
        },
    )
    .unwrap();
    pool.embed_blocking("How do I reset my password?").unwrap();
    assert_eq!(pool.expected_wait(), std::time::Duration::ZERO, "nothing waits");
    let budget = std::time::Duration::from_millis(5);
    let mut accepted = Vec::new();
    let mut shed = 0;
    for n in 0..200 {
        match pool.submit_within(format!("question number {n} about refunds"), budget) {
            Ok(rx) => accepted.push(rx),
            Err(Shed) => shed += 1,
        }
    }
    assert!(shed > 100, "the queue stops growing near the budget ({shed} shed)");
    assert!(
        accepted.len() < 50,
        "only what fits in about 5 ms of embedding is queued ({} queued)",
        accepted.len()
    );
    for rx in accepted {
        assert_eq!(rx.blocking_recv().unwrap().unwrap().len(), 512);
    }
    assert_eq!(pool.expected_wait(), std::time::Duration::ZERO, "the queue drained");
}
