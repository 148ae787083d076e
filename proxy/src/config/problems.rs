//! The problems found while validating a config file, collected so every one is reported at
//! once, each naming its line (when it has a place in the file) and its field.

use std::fmt::Display;
use std::ops::Range;

use super::raw::line_of;

/// Every problem found in one config text.
pub struct Problems<'t> {
    text: &'t str,
    list: Vec<String>,
}

impl<'t> Problems<'t> {
    pub fn new(text: &'t str) -> Self {
        Problems { text, list: Vec::new() }
    }

    /// A problem written at `span` of the text: `line N: <what>` (`what` starts with the field).
    pub fn at(&mut self, span: Range<usize>, what: impl Display) {
        self.list
            .push(format!("line {}: {what}", line_of(self.text, span.start)));
    }

    /// A problem with no single place in the text: `<what>`, starting with the field.
    pub fn note(&mut self, what: impl Display) {
        self.list.push(what.to_string());
    }

    /// How many so far (a section compares before and after to know whether it was clean).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_line_when_they_have_one() {
        let text = "a = 1\nb = 2\nc = 3\n";
        let mut p = Problems::new(text);
        p.at(8..9, format_args!("b: must be {}", "text"));
        p.note("params.model: only allowed inside params.models entries");
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.into_vec(),
            [
                "line 2: b: must be text",
                "params.model: only allowed inside params.models entries"
            ]
        );
    }
}
