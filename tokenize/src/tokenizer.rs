//! One tokenizer: an OpenAI encoding or a Hugging Face `tokenizer.json`.

use std::path::Path;
use std::sync::OnceLock;

use tokenizers::pipeline::PipelineTokenizer;

use crate::{bpe_fast, openai_fast};

/// Why a tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
}

/// A tokenizer the gateway can count with.
pub enum Tokenizer {
    /// A built-in OpenAI encoding counted by Tollgate's own split and merge ([`bpe_fast`]).
    Native {
        name: &'static str,
        inner: &'static bpe_fast::Encoding,
    },
    /// A built-in OpenAI encoding counted by bpe-openai (the fallback, and a bench baseline).
    OpenAi {
        name: &'static str,
        bpe: &'static bpe_openai::Tokenizer,
    },
    /// A built-in OpenAI encoding run through the `tokenizers` pipeline ([`openai_fast`]; a
    /// bench baseline).
    Pipeline {
        name: &'static str,
        inner: &'static PipelineTokenizer,
    },
    /// A Hugging Face `tokenizer.json`.
    HuggingFace {
        name: String,
        inner: Box<PipelineTokenizer>,
    },
}

static O200K_PIPELINE: OnceLock<Option<PipelineTokenizer>> = OnceLock::new();
static CL100K_PIPELINE: OnceLock<Option<PipelineTokenizer>> = OnceLock::new();

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tokenizer").field(&self.name()).finish()
    }
}

impl Tokenizer {
    /// `o200k_base` (GPT-4o, GPT-4.1, o-series). The first call builds the rank tables from the
    /// embedded ranks (milliseconds); later calls share them.
    pub fn o200k() -> Tokenizer {
        Self::native("o200k_base", bpe_fast::Encoding::o200k(), bpe_openai::o200k_base)
    }

    /// `cl100k_base` (GPT-4, GPT-3.5, OpenAI embeddings).
    pub fn cl100k() -> Tokenizer {
        Self::native("cl100k_base", bpe_fast::Encoding::cl100k(), bpe_openai::cl100k_base)
    }

    /// `o200k_base` through the `tokenizers` 1.0 pipeline (built from the embedded ranks at first
    /// use, a fraction of a second in release builds).
    pub fn o200k_pipeline() -> Tokenizer {
        Self::pipeline(
            "o200k_base",
            &O200K_PIPELINE,
            bpe_openai::o200k_base,
            openai_fast::O200K_PATTERN,
        )
    }

    /// `cl100k_base` through the `tokenizers` 1.0 pipeline.
    pub fn cl100k_pipeline() -> Tokenizer {
        Self::pipeline(
            "cl100k_base",
            &CL100K_PIPELINE,
            bpe_openai::cl100k_base,
            openai_fast::CL100K_PATTERN,
        )
    }

    fn native(
        name: &'static str,
        native: Option<&'static bpe_fast::Encoding>,
        bpe: fn() -> &'static bpe_openai::Tokenizer,
    ) -> Tokenizer {
        match native {
            Some(inner) => Tokenizer::Native { name, inner },
            None => Tokenizer::OpenAi { name, bpe: bpe() },
        }
    }

    fn pipeline(
        name: &'static str,
        cell: &'static OnceLock<Option<PipelineTokenizer>>,
        bpe: fn() -> &'static bpe_openai::Tokenizer,
        pattern: &str,
    ) -> Tokenizer {
        match cell.get_or_init(|| openai_fast::pipeline(bpe(), pattern).ok()) {
            Some(inner) => Tokenizer::Pipeline { name, inner },
            None => Tokenizer::OpenAi { name, bpe: bpe() },
        }
    }

    /// `o200k_base` counted by bpe-openai.
    pub fn o200k_bpe_openai() -> Tokenizer {
        Tokenizer::OpenAi {
            name: "o200k_base",
            bpe: bpe_openai::o200k_base(),
        }
    }

    /// `cl100k_base` counted by bpe-openai.
    pub fn cl100k_bpe_openai() -> Tokenizer {
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
            Tokenizer::Native { name, .. } | Tokenizer::OpenAi { name, .. } | Tokenizer::Pipeline { name, .. } => name,
            Tokenizer::HuggingFace { name, .. } => name,
        }
    }

    /// Tokens in `text`. Special tokens written in the text (`<|im_start|>`) count as the single
    /// tokens they are in a tokenizer.json, as in a rendered chat template; the built-in OpenAI
    /// encodings count them as ordinary text, as OpenAI does for message content.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Tokenizer::Native { inner, .. } => inner.count(text),
            Tokenizer::OpenAi { bpe, .. } => bpe.count(text),
            Tokenizer::Pipeline { inner, .. } => pipeline_count(inner, text),
            Tokenizer::HuggingFace { inner, .. } => pipeline_count(inner, text),
        }
    }

    /// The token ids of `text` (for tests and tools; the gateway only counts).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Native { inner, .. } => inner.encode(text),
            Tokenizer::OpenAi { bpe, .. } => bpe.encode(text),
            Tokenizer::Pipeline { inner, .. } => pipeline_encode(inner, text),
            Tokenizer::HuggingFace { inner, .. } => pipeline_encode(inner, text),
        }
    }
}

fn options() -> tokenizers::pipeline::EncodeOptions {
    tokenizers::pipeline::EncodeOptions {
        add_special_tokens: false,
        ..Default::default()
    }
}

fn pipeline_count(inner: &PipelineTokenizer, text: &str) -> usize {
    let mut out = Vec::new();
    match inner.encode_into(text, &options(), &mut out) {
        Ok(()) => out.len(),
        // The reader accepted the file, so encoding plain text does not fail; if it ever did, an
        // estimate beats a refusal on the request path.
        Err(_) => text.len().div_ceil(4),
    }
}

fn pipeline_encode(inner: &PipelineTokenizer, text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let _ = inner.encode_into(text, &options(), &mut out);
    out.into_iter().map(u32::from).collect()
}
