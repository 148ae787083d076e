//! The sentence embedder: an ONNX model run by ONNX Runtime (`ort`, loaded at run time from the
//! library `scripts/fetch-models.sh` unpacks) over the ids of a Hugging Face `tokenizer.json`.
//!
//! Any sentence model of that shape is a config change: the model takes `input_ids` and
//! `attention_mask` (and `token_type_ids` if it declares it), int64 `[batch, sequence]`, and gives
//! either a pooled `[batch, dims]` embedding or token states `[batch, sequence, dims]`, which are
//! mean-pooled over the mask. Vectors come out L2-normalised, so a dot product is the cosine.
//!
//! An `Embedder` owns one ONNX session and is used by one thread at a time (`ort` runs take
//! `&mut`); the pool gives each of its threads its own.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use tokenizers::pipeline::{EncodeOptions, Override, PipelineTokenizer};

use crate::SemanticError;

/// Where a model's files are and how much of a text it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
    /// Tokens read from a text, specials included; the rest is cut (a cached question is short).
    pub max_tokens: usize,
}

impl ModelFiles {
    /// `model.onnx` and `tokenizer.json` in `dir`, as `scripts/fetch-models.sh` lays them out.
    pub fn in_dir(dir: &Path) -> ModelFiles {
        ModelFiles {
            model: dir.join("model.onnx"),
            tokenizer: dir.join("tokenizer.json"),
            max_tokens: 128,
        }
    }
}

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` once per process. Later calls return the first outcome
/// (ONNX Runtime cannot be loaded twice), whatever path they pass.
pub fn load_runtime(library: &Path) -> Result<(), SemanticError> {
    runtime(library).map(|_| ())
}

fn runtime(library: &Path) -> Result<&'static Environment, SemanticError> {
    RUNTIME
        .get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| format!("{}: {e}", library.display()))?;
            builder.with_name("tollgate").build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| SemanticError::Runtime(e.clone()))
}

/// How the model's output becomes one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// `[batch, dims]`: already a sentence vector.
    Pooled,
    /// `[batch, sequence, dims]`: mean over the tokens the mask keeps.
    MeanOverTokens,
}

pub struct Embedder {
    session: Session,
    tokenizer: PipelineTokenizer,
    token_types: bool,
    output: String,
    pooling: Pooling,
    max_tokens: usize,
    options: EncodeOptions,
}

impl Embedder {
    /// Opens the model with `threads` intra-op threads (1 in the pool: parallelism comes from
    /// more pool threads, each batching). [`load_runtime`] must have succeeded first.
    pub fn open(files: &ModelFiles, threads: usize) -> Result<Embedder, SemanticError> {
        let env = RUNTIME
            .get()
            .and_then(|r| r.as_ref().ok())
            .ok_or_else(|| SemanticError::Runtime("load_runtime was not called or failed".to_string()))?;
        let model_err = |e: ort::Error| SemanticError::Model {
            path: files.model.display().to_string(),
            reason: e.to_string(),
        };
        let session = Session::builder(env)
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|b| b.with_intra_threads(threads.max(1)).map_err(Into::into))
            .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(&files.model))
            .map_err(model_err)?;
        let bad_model = |reason: &str| SemanticError::Model {
            path: files.model.display().to_string(),
            reason: reason.to_string(),
        };
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !names.contains(&required) {
                return Err(bad_model(&format!("has no `{required}` input (inputs: {names:?})")));
            }
        }
        if let Some(other) = names
            .iter()
            .find(|n| !matches!(**n, "input_ids" | "attention_mask" | "token_type_ids"))
        {
            return Err(bad_model(&format!(
                "takes an input `{other}` a sentence model does not need"
            )));
        }
        let token_types = names.contains(&"token_type_ids");
        let first = session.outputs().first().ok_or_else(|| bad_model("has no output"))?;
        let rank = first.dtype().tensor_shape().map(|s| s.len()).unwrap_or(0);
        let pooling = match rank {
            2 => Pooling::Pooled,
            3 => Pooling::MeanOverTokens,
            _ => {
                return Err(bad_model(
                    "its first output is neither [batch, dims] nor [batch, sequence, dims]",
                ))
            }
        };
        let output = first.name().to_string();

        let tokenizer_err = |reason: String| SemanticError::Tokenizer {
            path: files.tokenizer.display().to_string(),
            reason,
        };
        let canonical = tokenizers::canonicalize_file(&files.tokenizer).map_err(|e| tokenizer_err(e.to_string()))?;
        let tokenizer = tokenizers::from_json(&canonical).map_err(|e| tokenizer_err(e.to_string()))?;
        Ok(Embedder {
            session,
            tokenizer,
            token_types,
            output,
            pooling,
            max_tokens: files.max_tokens.max(2),
            options: EncodeOptions {
                add_special_tokens: true,
                encode_special_tokens: true,
                padding: Override::Off,
                truncation: Override::Off,
            },
        })
    }

    /// The token ids the model reads for `text`: whitespace runs collapsed and ends trimmed (as
    /// sentencepiece does), special-token text treated as text, cut to `max_tokens` keeping the
    /// closing special token.
    pub fn token_ids(&self, text: &str) -> Vec<i64> {
        let mut collapsed = String::with_capacity(text.len());
        for word in text.split_whitespace() {
            if !collapsed.is_empty() {
                collapsed.push(' ');
            }
            collapsed.push_str(word);
        }
        let mut out = Vec::new();
        if self.tokenizer.encode_into(&collapsed, &self.options, &mut out).is_err() {
            out.clear();
        }
        let mut ids: Vec<i64> = out.into_iter().map(|t| i64::from(u32::from(t))).collect();
        if ids.len() > self.max_tokens {
            let last = ids[ids.len() - 1];
            ids.truncate(self.max_tokens - 1);
            ids.push(last);
        }
        ids
    }

    /// One L2-normalised vector per text, in order, computed in one run of the model.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded: Vec<Vec<i64>> = texts.iter().map(|t| self.token_ids(t)).collect();
        let width = encoded.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let batch = encoded.len();
        let mut ids = vec![0i64; batch * width];
        let mut mask = vec![0i64; batch * width];
        for (row, e) in encoded.iter().enumerate() {
            ids[row * width..row * width + e.len()].copy_from_slice(e);
            mask[row * width..row * width + e.len()].fill(1);
        }
        let types = vec![0i64; if self.token_types { batch * width } else { 0 }];
        let shape = [batch, width];
        let run_err = |e: ort::Error| SemanticError::Run(e.to_string());
        let mut inputs: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                TensorRef::from_array_view((shape, &ids[..])).map_err(run_err)?.into(),
            ),
            (
                "attention_mask".into(),
                TensorRef::from_array_view((shape, &mask[..])).map_err(run_err)?.into(),
            ),
        ];
        if self.token_types {
            inputs.push((
                "token_type_ids".into(),
                TensorRef::from_array_view((shape, &types[..])).map_err(run_err)?.into(),
            ));
        }
        let outputs = self.session.run(inputs).map_err(run_err)?;
        let value = outputs
            .get(self.output.as_str())
            .ok_or_else(|| SemanticError::Run(format!("no output `{}`", self.output)))?;
        let (out_shape, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
        let dims = usize::try_from(out_shape[out_shape.len() - 1]).unwrap_or(0);
        let mut vectors = Vec::with_capacity(batch);
        for (row, e) in encoded.iter().enumerate() {
            let mut v = match self.pooling {
                Pooling::Pooled => data[row * dims..(row + 1) * dims].to_vec(),
                Pooling::MeanOverTokens => {
                    let mut sum = vec![0f32; dims];
                    for t in 0..e.len() {
                        let at = (row * width + t) * dims;
                        for (s, x) in sum.iter_mut().zip(&data[at..at + dims]) {
                            *s += x;
                        }
                    }
                    sum
                }
            };
            normalise(&mut v);
            vectors.push(v);
        }
        Ok(vectors)
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
