//! The semantic cache's index at scale: search latency percentiles, recall against an exact scan,
//! build time and memory per entry for one namespace of 10k, 100k and 1M entries, on vectors of
//! the real embedding model.
//!
//! `cargo run --release -p tollgate-benches --example index_scale [-- SIZES]` (default
//! `10000,100000,1000000`; needs `scripts/setup.sh`). Questions are generated from templates
//! (English and Chinese help-desk questions: actions × objects × contexts × forms) and embedded
//! with the default model once (kept in `target/index-scale/`); past the distinct questions, entries
//! are jittered copies of them (each a unit vector at cosine ~0.95 to its source, as paraphrases
//! are). Queries: half are paraphrase-like neighbours of stored entries, half are held-out
//! questions. Latency is one thread's `Index::nearest(query, 8)`; memory is the process's
//! resident growth over the build.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tollgate_semantic::index::{Index, IndexTuning};
use tollgate_semantic::{cosine, load_runtime, normalise, Embedder, ModelFiles};

const MODEL: &str = "use-multilingual-v3";
const DISTINCT: usize = 100_000;
const HELD_OUT: usize = 2_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `n` distinct questions, deterministic.
fn questions(n: usize) -> Vec<String> {
    let verbs = [
        "reset", "change", "cancel", "update", "delete", "export", "download", "find", "enable", "disable", "recover",
        "verify", "share", "transfer", "merge", "rename", "lock", "unlock", "renew", "pause", "restore", "upload",
        "print", "sync", "report",
    ];
    let objects = [
        "password",
        "email address",
        "subscription",
        "order",
        "invoice",
        "profile photo",
        "two-factor authentication",
        "shipping address",
        "payment method",
        "account",
        "username",
        "phone number",
        "billing plan",
        "gift card",
        "return label",
        "API key",
        "team workspace",
        "calendar",
        "contacts",
        "backup",
        "license",
        "delivery slot",
        "refund request",
        "loyalty points",
        "notification settings",
        "data export",
        "family plan",
        "device list",
        "security questions",
        "saved cards",
    ];
    let contexts = [
        "on my iPhone",
        "on Android",
        "on the website",
        "in the desktop app",
        "for my team",
        "for a company account",
        "without logging in",
        "after moving abroad",
        "while travelling",
        "on a shared computer",
        "from the admin console",
        "before the end of the month",
        "after a failed payment",
        "with a new SIM card",
        "in another language",
        "for my child",
        "using the API",
        "on a smart TV",
        "from my smartwatch",
        "in offline mode",
    ];
    let forms = [
        "How do I {v} my {o} {c}?",
        "Can I {v} my {o} {c}?",
        "What happens if I {v} my {o} {c}?",
        "Why can't I {v} my {o} {c}?",
        "Is it possible to {v} the {o} {c}?",
        "Who can {v} the {o} {c}?",
        "Where do I go to {v} my {o} {c}?",
        "How long does it take to {v} my {o} {c}?",
    ];
    let zh_verbs = [
        "重置", "修改", "取消", "更新", "删除", "导出", "下载", "查找", "开启", "关闭", "恢复", "验证",
    ];
    let zh_objects = [
        "密码",
        "邮箱地址",
        "订阅",
        "订单",
        "发票",
        "头像",
        "双重认证",
        "收货地址",
        "支付方式",
        "账号",
        "用户名",
        "手机号",
        "会员套餐",
        "礼品卡",
        "退货标签",
        "API 密钥",
    ];
    let zh_contexts = [
        "在手机上",
        "在网页上",
        "在电脑客户端",
        "给我的团队",
        "用企业账号",
        "不登录的情况下",
        "出国以后",
        "在平板上",
    ];
    let zh_forms = [
        "我怎么{c}{v}{o}？",
        "可以{c}{v}{o}吗？",
        "为什么我不能{c}{v}{o}？",
        "{c}{v}{o}会怎么样？",
    ];
    let mut out = Vec::with_capacity(n);
    for v in zh_verbs {
        for o in zh_objects {
            for c in zh_contexts {
                for f in zh_forms {
                    out.push(f.replace("{v}", v).replace("{o}", o).replace("{c}", c));
                }
            }
        }
    }
    'en: for v in verbs {
        for o in objects {
            for c in contexts {
                for f in forms {
                    if out.len() >= n {
                        break 'en;
                    }
                    out.push(f.replace("{v}", v).replace("{o}", o).replace("{c}", c));
                }
            }
        }
    }
    out.truncate(n);
    let mut rng = SmallRng::seed_from_u64(11);
    for i in (1..out.len()).rev() {
        out.swap(i, rng.gen_range(0..=i));
    }
    out
}

/// The embeddings of `texts`, read from the file of an earlier run when it matches.
fn embeddings(texts: &[String]) -> Result<(usize, Vec<f32>), Box<dyn std::error::Error>> {
    let dir = root().join("target/index-scale");
    let file = dir.join(format!("{MODEL}-{}.f32", texts.len()));
    if let Ok(mut f) = std::fs::File::open(&file) {
        let mut raw = Vec::new();
        if f.read_to_end(&mut raw).is_ok() && raw.len() % (4 * texts.len()) == 0 && !raw.is_empty() {
            let dims = raw.len() / 4 / texts.len();
            let v = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return Ok((dims, v));
        }
    }
    let models = root().join(".models");
    load_runtime(&models.join("onnxruntime/libonnxruntime.so"))?;
    let mut e = Embedder::open(&ModelFiles::in_dir(&models.join("embedders").join(MODEL)), 2)?;
    let started = Instant::now();
    let mut out = Vec::new();
    let mut dims = 0;
    for chunk in texts.chunks(32) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for v in e.embed(&refs)? {
            dims = v.len();
            out.extend_from_slice(&v);
        }
    }
    eprintln!(
        "embedded {} questions in {:.0} s",
        texts.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::File::create(&file) {
        let bytes: Vec<u8> = out.iter().flat_map(|x| x.to_le_bytes()).collect();
        let _ = f.write_all(&bytes);
    }
    Ok((dims, out))
}

/// `v` moved to a random unit vector at cosine about `target` from it.
fn jitter(v: &[f32], target: f32, rng: &mut SmallRng) -> Vec<f32> {
    let mut noise: Vec<f32> = v.iter().map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let along: f32 = noise.iter().zip(v).map(|(n, x)| n * x).sum();
    for (n, x) in noise.iter_mut().zip(v) {
        *n -= along * x;
    }
    normalise(&mut noise);
    let side = (1.0 - target * target).sqrt();
    let mut out: Vec<f32> = v.iter().zip(&noise).map(|(x, n)| target * x + side * n).collect();
    normalise(&mut out);
    out
}

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10000,100000,1000000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let texts = questions(DISTINCT + HELD_OUT);
    let (dims, all) = embeddings(&texts)?;
    let vector = |i: usize| &all[i * dims..(i + 1) * dims];
    let mut rng = SmallRng::seed_from_u64(5);
    println!("{MODEL}, {dims} dims, one namespace; {DISTINCT} distinct questions, jittered copies past them\n");
    println!("| entries | build s | resident bytes/entry | search p50 µs | p99 µs | max µs | recall@1 vs scan |");
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut data: Vec<f32> = Vec::with_capacity(n * dims);
        for i in 0..n {
            if i < DISTINCT {
                data.extend_from_slice(vector(i));
            } else {
                data.extend(jitter(vector(i % DISTINCT), 0.95, &mut rng));
            }
        }
        let stored = |i: usize| &data[i * dims..(i + 1) * dims];
        let queries: Vec<Vec<f32>> = (0..1_000)
            .map(|q| {
                if q % 2 == 0 {
                    jitter(stored(rng.gen_range(0..n)), 0.93, &mut rng)
                } else {
                    vector(DISTINCT + q % HELD_OUT).to_vec()
                }
            })
            .collect();
        let before = resident_bytes();
        let started = Instant::now();
        let mut index = Index::new(dims, IndexTuning::default());
        for i in 0..n {
            index.insert(i as u64, stored(i));
        }
        let build = started.elapsed().as_secs_f64();
        let per_entry = resident_bytes().saturating_sub(before) / n;
        let mut micros: Vec<f64> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                std::hint::black_box(index.nearest(q, 8));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        micros.sort_by(f64::total_cmp);
        let checked = if n > 100_000 { 100 } else { 200 };
        let mut agree = 0;
        for q in queries.iter().take(checked) {
            let best = (0..n)
                .map(|i| (i, cosine(q, stored(i))))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i as u64);
            agree += usize::from(index.nearest(q, 1).first().map(|x| x.0) == best);
        }
        println!(
            "| {n} | {build:.1} | {per_entry} | {:.0} | {:.0} | {:.0} | {agree}/{checked} |",
            percentile(&micros, 0.5),
            percentile(&micros, 0.99),
            percentile(&micros, 1.0),
        );
    }
    Ok(())
}
