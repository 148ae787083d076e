//! Reading the text into its raw form as far as it can be read, so one run reports every problem:
//! each syntax error the parser recovers from, and each section element of the wrong shape (an
//! unknown field, a missing one, a wrong type), is a problem with its line; the elements that could
//! be read go on to be validated as usual, and the names of those that could not are kept so a
//! reference to one is not reported a second time as dangling.

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::problems::Problems;
use super::raw::{Element, RawConfig};

/// Syntax errors reported before the rest are summed up: past a few, a file is not TOML at all.
const MAX_SYNTAX_ERRORS: usize = 20;

const SECTIONS: &str = "admin, providers, models, tokenizers, consumers, limits, network, cache, guardrails, search";

/// The raw config, with what could not be read reported to `problems`.
pub fn read(text: &str, problems: &mut Problems<'_>) -> RawConfig {
    let (root, errors) = DeTable::parse_recoverable(text);
    for e in errors.iter().take(MAX_SYNTAX_ERRORS) {
        problems.toml("", e);
    }
    if errors.len() > MAX_SYNTAX_ERRORS {
        problems.note(format_args!(
            "{} more syntax errors not shown",
            errors.len() - MAX_SYNTAX_ERRORS
        ));
    }
    let mut raw = RawConfig::default();
    for (key, value) in root.into_inner() {
        let u = &mut raw.unreadable;
        match key.get_ref().as_ref() {
            "admin" => raw.admin = one(value, "admin", problems).unwrap_or_default(),
            "network" => raw.network = one(value, "network", problems).unwrap_or_default(),
            "cache" => raw.cache = one(value, "cache", problems),
            "search" => raw.search = one(value, "search", problems),
            "providers" => raw.providers = many(value, "providers", problems, &mut u.providers),
            "models" => raw.models = many(value, "models", problems, &mut u.models),
            "consumers" => raw.consumers = many(value, "consumers", problems, &mut u.consumers),
            "tokenizers" => raw.tokenizers = many(value, "tokenizers", problems, &mut u.tokenizers),
            "limits" => raw.limits = many(value, "limits", problems, &mut u.limits),
            "guardrails" => raw.guardrails = many(value, "guardrails", problems, &mut u.guardrails),
            // What the parser made of a line it could not read: already reported.
            "" if !errors.is_empty() => {}
            other => problems.at(
                key.span(),
                format_args!("unknown section `{other}`, expected one of {SECTIONS}"),
            ),
        }
    }
    raw
}

/// A table section (`[admin]`).
fn one<'i, T: Deserialize<'i>>(value: Spanned<DeValue<'i>>, field: &str, problems: &mut Problems<'_>) -> Option<T> {
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|e| problems.toml(field, &e))
        .ok()
}

/// An array section (`[[providers]]`): each element read on its own.
fn many<'i, T: Deserialize<'i> + Element>(
    value: Spanned<DeValue<'i>>,
    field: &str,
    problems: &mut Problems<'_>,
    unreadable: &mut Vec<String>,
) -> Vec<T> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        problems.at(
            span,
            format_args!("{field}: must be an array of tables (`[[{field}]]`)"),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let name = name_of(item.get_ref());
        match T::deserialize(ValueDeserializer::from(item)) {
            Ok(mut element) => {
                element.set_index(i);
                out.push(element);
            }
            Err(e) => {
                problems.toml(&format!("{field}[{i}]"), &e);
                unreadable.extend(name);
            }
        }
    }
    out
}

/// The `name` of an element, if it has a string one.
fn name_of(value: &DeValue<'_>) -> Option<String> {
    let table = value.as_table()?;
    let (_, name) = table.iter().find(|(k, _)| k.get_ref().as_ref() == "name")?;
    name.get_ref().as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> (RawConfig, Vec<String>) {
        let mut problems = Problems::new(text);
        let raw = read(text, &mut problems);
        (raw, problems.into_vec())
    }

    #[test]
    fn a_broken_element_is_reported_and_the_others_are_read_with_their_positions() {
        let text = "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n\n\
                    [[providers]]\nname = \"b\"\nkind = \"grpc\"\nbase_url = \"http://y/v1\"\n\n\
                    [[providers]]\nname = \"c\"\nkind = \"openai\"\nbase_url = \"http://z/v1\"\ncolour = 1\n\n\
                    [[providers]]\nname = \"d\"\nkind = \"openai\"\nbase_url = \"http://w/v1\"\n";
        let (raw, problems) = read_all(text);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("line 8: providers[1]: unknown variant `grpc`"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("line 15: providers[2]: unknown field `colour`"),
            "{problems:?}"
        );
        let read: Vec<(usize, &str)> = raw
            .providers
            .iter()
            .map(|p| (p.index, p.name.get_ref().as_str()))
            .collect();
        assert_eq!(read, [(0, "a"), (3, "d")]);
        assert_eq!(raw.unreadable.providers, ["b", "c"]);
    }

    #[test]
    fn syntax_errors_do_not_hide_the_rest() {
        let text = "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n\
                    api_key = \n\n[[models]\nname = \"m\"\n\n[colours]\nred = 1\n";
        let (_, problems) = read_all(text);
        assert!(problems.iter().any(|p| p.starts_with("line 5: ")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("line 7: ")), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("unknown section `colours`")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_section_of_the_wrong_kind_is_named() {
        let (_, problems) = read_all("providers = 3\nadmin = \"x\"\n");
        assert!(
            problems[0].starts_with("line 1: providers: must be an array of tables"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("line 2: admin: "), "{problems:?}");
    }

    #[test]
    fn garbage_is_summed_up_not_listed_line_by_line() {
        let text = "= = =\n".repeat(200);
        let (_, problems) = read_all(&text);
        assert!(problems.len() <= MAX_SYNTAX_ERRORS + 1, "{problems:#?}");
        assert!(problems
            .last()
            .is_some_and(|p| p.ends_with("more syntax errors not shown")));
    }
}
