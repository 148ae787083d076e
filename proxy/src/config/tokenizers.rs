//! Tokenizers at load: the built-in encodings, the `[[tokenizers]]` files (read here, once), and
//! each model's counter (tokenizer + chat template).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::problems::Problems;
use super::raw::RawConfig;
use tollgate_tokenize::{ChatTemplate, Tokenizer};

/// Built-in tokenizers and the `[[tokenizers]]` files, by name. Files are read here, at load.
pub fn compile(
    raw: &RawConfig,
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> HashMap<String, Option<Arc<Tokenizer>>> {
    // A tokenizer that cannot be read or loaded is reported once, here; models naming it are
    // not told it is unknown.
    let mut out: HashMap<String, Option<Arc<Tokenizer>>> =
        raw.unreadable.tokenizers.iter().map(|n| (n.clone(), None)).collect();
    for t in &raw.tokenizers {
        let i = t.index;
        let name = t.name.get_ref();
        if out.contains_key(name) {
            problems.at(t.name.span(), format_args!("tokenizers[{i}].name: `{name}` is taken"));
            continue;
        }
        let path = super::files::resolve(base_dir, t.file.get_ref());
        // The largest tokenizer.json files are tens of megabytes; a device or a pipe would never
        // end. (A missing file is reported by the loader below.)
        let refused = if path.exists() {
            super::files::check(&path, 512 << 20).err()
        } else {
            None
        };
        if let Some(e) = refused {
            problems.at(
                t.file.span(),
                format_args!("tokenizers[{i}].file: {}: {e}", path.display()),
            );
            out.insert(name.clone(), None);
            continue;
        }
        match Tokenizer::from_tokenizer_json(name, &path) {
            Ok(tok) => {
                out.insert(name.clone(), Some(Arc::new(tok)));
            }
            Err(e) => {
                problems.at(t.file.span(), format_args!("tokenizers[{i}].file: {e}"));
                out.insert(name.clone(), None);
            }
        }
    }
    out
}

pub fn counter(
    m: &super::raw::RawModel,
    i: usize,
    tokenizers: &HashMap<String, Option<Arc<Tokenizer>>>,
    problems: &mut Problems<'_>,
) -> Option<(Arc<Tokenizer>, ChatTemplate)> {
    let t = m.tokenizer.as_ref()?;
    // Built-in encodings are built on first use (shared by every later snapshot), so a config that
    // names none pays nothing.
    let tok = match t.get_ref().as_str() {
        "o200k" => Arc::new(Tokenizer::o200k()),
        "cl100k" => Arc::new(Tokenizer::cl100k()),
        other => match tokenizers.get(other) {
            Some(Some(tok)) => tok.clone(),
            Some(None) => return None,
            None => {
                problems.at(
                    t.span(),
                    format_args!("models[{i}].tokenizer: unknown tokenizer `{other}`"),
                );
                return None;
            }
        },
    };
    let builtin = BUILT_IN_TOKENIZERS.contains(&t.get_ref().as_str());
    let template = match &m.chat_template {
        Some(c) => match ChatTemplate::from_name(c.get_ref()) {
            Some(ct) => ct,
            None => {
                problems.at(
                    c.span(),
                    format_args!(
                        "models[{i}].chat_template: `{}` is not openai, chatml, llama3 or deepseek_v3",
                        c.get_ref()
                    ),
                );
                return None;
            }
        },
        None if builtin => ChatTemplate::OpenAi,
        None => {
            problems.at(
                t.span(),
                format_args!("models[{i}].chat_template: required with a tokenizer file"),
            );
            return None;
        }
    };
    Some((tok, template))
}

/// Tokenizer names that need no `[[tokenizers]]` entry.
const BUILT_IN_TOKENIZERS: &[&str] = &["o200k", "cl100k"];
