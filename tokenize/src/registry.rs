//! Which tokenizer and chat template a model uses, and an honest estimate when nobody said.

use std::sync::Arc;

use crate::chat::{ChatTemplate, Message};
use crate::Tokenizer;

/// A token count, and whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Counted with the model's own tokenizer.
    Exact(usize),
    /// No tokenizer is configured for the model: about 4 bytes a token, 4 tokens a message.
    Estimated(usize),
}

impl Count {
    pub fn tokens(self) -> usize {
        match self {
            Count::Exact(n) | Count::Estimated(n) => n,
        }
    }

    pub fn is_estimate(self) -> bool {
        matches!(self, Count::Estimated(_))
    }
}

/// Model name → tokenizer and template.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    models: std::collections::HashMap<String, (Arc<Tokenizer>, ChatTemplate)>,
}

/// The estimate for text no tokenizer is configured for.
pub fn estimate(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// Tokens of `messages` with `counter` (a tokenizer and its chat template), or the marked
/// estimate when there is none: about 4 bytes a token, 4 tokens a message, 3 for the reply.
pub fn count_chat(counter: Option<(&Tokenizer, ChatTemplate)>, messages: &[Message<'_>]) -> Count {
    match counter {
        Some((t, template)) => Count::Exact(template.count(t, messages)),
        None => Count::Estimated(messages.iter().map(|m| 4 + estimate(m.content)).sum::<usize>() + 3),
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, model: &str, tokenizer: Arc<Tokenizer>, template: ChatTemplate) {
        self.models.insert(model.to_string(), (tokenizer, template));
    }

    pub fn get(&self, model: &str) -> Option<&(Arc<Tokenizer>, ChatTemplate)> {
        self.models.get(model)
    }

    /// Tokens in `text` for `model`.
    pub fn count(&self, model: &str, text: &str) -> Count {
        match self.models.get(model) {
            Some((t, _)) => Count::Exact(t.count(text)),
            None => Count::Estimated(estimate(text)),
        }
    }

    /// Tokens `model` sees for `messages`, template included.
    pub fn count_chat(&self, model: &str, messages: &[Message<'_>]) -> Count {
        count_chat(
            self.models.get(model).map(|(t, template)| (t.as_ref(), *template)),
            messages,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_models_count_exactly_and_others_are_marked_estimates() {
        let mut r = Registry::new();
        r.insert("gpt-4o", Arc::new(Tokenizer::o200k()), ChatTemplate::OpenAi);
        assert_eq!(r.count("gpt-4o", "hello world"), Count::Exact(2));
        let est = r.count("mystery", "hello world");
        assert!(est.is_estimate());
        assert_eq!(est.tokens(), 3);
        let msgs = [Message {
            role: "user",
            content: "hello world",
            name: None,
        }];
        assert_eq!(r.count_chat("gpt-4o", &msgs), Count::Exact(3 + 1 + 2 + 3));
    }
}
