//! The problems found while validating a config file, collected so every one is reported at
//! once, each naming its line (when it has a place in the file) and its field.

use std::fmt::Display;
use std::ops::Range;

use super::raw::line_of;

/// How a config is loaded.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// For `tollgate check --offline` (CI): no DNS lookups, and a secret whose variable or file
    /// is missing is a warning, not an error. Such a snapshot is only for checking.
    pub offline: bool,
    /// `--completion-reserve`: what a rule without its own `completion_reserve` reserves.
    pub completion_reserve: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            offline: false,
            completion_reserve: 1_024,
        }
    }
}

/// Every problem found in one config text, and the warnings (what loads but cannot work as
/// the operator likely meant).
pub struct Problems<'t> {
    text: &'t str,
    /// Each with its line, if it has one: reported in the file's order.
    list: Vec<(Option<usize>, String)>,
    warnings: Vec<(Option<usize>, String)>,
    pub options: LoadOptions,
}

impl<'t> Problems<'t> {
    pub fn new(text: &'t str) -> Self {
        Self::with_options(text, LoadOptions::default())
    }

    pub fn with_options(text: &'t str, options: LoadOptions) -> Self {
        Problems {
            text,
            list: Vec::new(),
            warnings: Vec::new(),
            options,
        }
    }

    /// A warning at `span`: `line N: <what>`.
    pub fn warn(&mut self, span: Range<usize>, what: impl Display) {
        let line = line_of(self.text, span.start);
        self.warnings.push((Some(line), format!("line {line}: {what}")));
    }

    /// A secret reference resolved; offline, one that cannot be read is a warning and stands
    /// in as an empty value (the snapshot is then only for checking).
    pub fn secret(
        &mut self,
        reference: &toml::Spanned<String>,
        field: impl Display,
    ) -> Option<crate::secret::Secret<String>> {
        use crate::secret::{resolve, SecretError};
        match resolve(reference.get_ref()) {
            Ok(s) => Some(s),
            Err(e @ (SecretError::MissingEnv(_) | SecretError::File(..) | SecretError::EmptyFile(_)))
                if self.options.offline =>
            {
                self.warn(reference.span(), format_args!("{field}: {e} (offline check)"));
                Some(crate::secret::Secret::new(String::new()))
            }
            Err(e) => {
                self.at(reference.span(), format_args!("{field}: {e}"));
                None
            }
        }
    }

    pub fn into_warnings(&mut self) -> Vec<String> {
        in_file_order(std::mem::take(&mut self.warnings))
    }

    /// A problem written at `span` of the text: `line N: <what>` (`what` starts with the field).
    pub fn at(&mut self, span: Range<usize>, what: impl Display) {
        let line = line_of(self.text, span.start);
        self.list.push((Some(line), format!("line {line}: {what}")));
    }

    /// A TOML syntax or shape error, under `field` (the element it was found in) when given.
    pub fn toml(&mut self, field: &str, e: &toml::de::Error) {
        let message = e.message().trim();
        let what = if field.is_empty() {
            message.to_string()
        } else {
            format!("{field}: {message}")
        };
        match e.span() {
            Some(span) => self.at(span, what),
            None => self.note(what),
        }
    }

    /// A problem with no single place in the text: `<what>`, starting with the field.
    pub fn note(&mut self, what: impl Display) {
        self.list.push((None, what.to_string()));
    }

    /// How many so far (a section compares before and after to know whether it was clean).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        in_file_order(self.list)
    }
}

/// By line; those without one (no single place in the file) after, each group as found.
fn in_file_order(mut list: Vec<(Option<usize>, String)>) -> Vec<String> {
    list.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    list.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_line_and_come_in_the_files_order() {
        let text = "a = 1\nb = 2\nc = 3\n";
        let mut p = Problems::new(text);
        p.note("params.model: only allowed inside params.models entries");
        p.at(12..13, format_args!("c: must be {}", "text"));
        p.at(8..9, format_args!("b: must be {}", "text"));
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.into_vec(),
            [
                "line 2: b: must be text",
                "line 3: c: must be text",
                "params.model: only allowed inside params.models entries"
            ]
        );
    }
}
