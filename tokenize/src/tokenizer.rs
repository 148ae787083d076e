//! One tokenizer: an OpenAI encoding or a Hugging Face `tokenizer.json`.

use std::path::Path;

use tokenizers::pipeline::PipelineTokenizer;

/// Why a tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
}

/// A tokenizer the gateway can count with.
pub enum Tokenizer {
    /// A built-in OpenAI encoding.
    OpenAi {
        name: &'static str,
        bpe: &'static bpe_openai::Tokenizer,
    },
    /// A Hugging Face `tokenizer.json`.
    HuggingFace {
        name: String,
        inner: Box<PipelineTokenizer>,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tokenizer").field(&self.name()).finish()
    }
}

impl Tokenizer {
    /// `o200k_base` (GPT-4o, GPT-4.1, o-series).
    pub fn o200k() -> Tokenizer {
        Tokenizer::OpenAi {
            name: "o200k_base",
            bpe: bpe_openai::o200k_base(),
        }
    }

    /// `cl100k_base` (GPT-4, GPT-3.5, OpenAI embeddings).
    pub fn cl100k() -> Tokenizer {
        Tokenizer::OpenAi {
            name: "cl100k_base",
            bpe: bpe_openai::cl100k_base(),
        }
    }

    /// A Hugging Face `tokenizer.json`, upgraded to the reader's canonical form on the way in.
    pub fn from_tokenizer_json(name: &str, path: &Path) -> Result<Tokenizer, TokenizerError> {
        let err = |reason: String| TokenizerError::Load {
            path: path.display().to_string(),
            reason,
        };
        let canonical = tokenizers::canonicalize_file(path).map_err(|e| err(e.to_string()))?;
        let inner = tokenizers::from_json(&canonical).map_err(|e| err(e.to_string()))?;
        Ok(Tokenizer::HuggingFace {
            name: name.to_string(),
            inner: Box::new(inner),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Tokenizer::OpenAi { name, .. } => name,
            Tokenizer::HuggingFace { name, .. } => name,
        }
    }

    /// Tokens in `text`. Special tokens written in the text (`<|im_start|>`) count as the single
    /// tokens they are, as in a rendered chat template; nothing is added around the text.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Tokenizer::OpenAi { bpe, .. } => bpe.count(text),
            Tokenizer::HuggingFace { inner, .. } => {
                let mut out = Vec::new();
                match inner.encode_into(text, &Self::options(), &mut out) {
                    Ok(()) => out.len(),
                    // The reader accepted the file, so encoding plain text does not fail; if it
                    // ever did, an estimate beats a refusal on the request path.
                    Err(_) => text.len().div_ceil(4),
                }
            }
        }
    }

    /// The token ids of `text` (for tests and tools; the gateway only counts).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::OpenAi { bpe, .. } => bpe.encode(text),
            Tokenizer::HuggingFace { inner, .. } => {
                let mut out = Vec::new();
                let _ = inner.encode_into(text, &Self::options(), &mut out);
                out.into_iter().map(u32::from).collect()
            }
        }
    }

    fn options() -> tokenizers::pipeline::EncodeOptions {
        tokenizers::pipeline::EncodeOptions {
            add_special_tokens: false,
            ..Default::default()
        }
    }
}
