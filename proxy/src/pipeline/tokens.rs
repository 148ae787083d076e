//! Prompt tokens of a request, counted with the model's tokenizer and chat template (exact), or
//! estimated when the model has none configured — and then marked as an estimate.
//!
//! The estimate is the [`Estimator`] the operator chose (`--estimate-tokenizer`): by default
//! the o200k encoding with OpenAI's chat framing, which is within a few percent of most modern
//! BPE tokenizers on English text; `bytes` is the cheap rule of about 4 bytes a token.

use std::borrow::Cow;
use std::sync::Arc;

use tollgate_tokenize::registry::{count_chat, estimate};
use tollgate_tokenize::{ChatTemplate, Count, Message, Tokenizer};

use super::body::{text_of, Piece, Prompt, RequestView};

/// Role, content and name of a message, borrowed from the body where it had no escapes.
type OwnedMessage<'a> = (Cow<'a, str>, Cow<'a, str>, Option<Cow<'a, str>>);

fn piece_text<'a>(body: &'a [u8], pieces: &[Piece]) -> Cow<'a, str> {
    let texts: Vec<Cow<'a, str>> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(r) => Some(text_of(body, r)),
            Piece::Tokens(_) => None,
        })
        .collect();
    match texts.len() {
        0 => Cow::Borrowed(""),
        1 => texts.into_iter().next().unwrap_or_default(),
        _ => Cow::Owned(texts.join("\n")),
    }
}

/// How tokens are estimated for a model without a tokenizer of its own.
#[derive(Clone)]
pub enum Estimator {
    /// A stand-in tokenizer, counted with OpenAI's chat framing.
    Tokenizer(Arc<Tokenizer>),
    /// About 4 bytes a token, 4 tokens of framing a message.
    Bytes,
}

impl Estimator {
    /// The estimated tokens of `text`.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Estimator::Tokenizer(tok) => tok.count(text),
            Estimator::Bytes => estimate(text),
        }
    }

    fn count_chat(&self, messages: &[Message<'_>]) -> usize {
        match self {
            Estimator::Tokenizer(tok) => ChatTemplate::OpenAi.count(tok, messages),
            Estimator::Bytes => count_chat(None, messages).tokens(),
        }
    }
}

/// The prompt tokens of `view` (whose body is `body`): exact with the model's `counter`, else
/// estimated with `estimator`.
pub fn count_prompt(
    body: &[u8],
    view: &RequestView,
    counter: Option<&(Arc<Tokenizer>, ChatTemplate)>,
    estimator: &Estimator,
) -> Count {
    match &view.prompt {
        Prompt::Chat(msgs) => {
            let owned: Vec<OwnedMessage<'_>> = msgs
                .iter()
                .map(|m| {
                    let role = m.role.as_ref().map_or(Cow::Borrowed("user"), |r| text_of(body, r));
                    let name = m.name.as_ref().map(|n| text_of(body, n));
                    (role, piece_text(body, &m.content), name)
                })
                .collect();
            let messages: Vec<Message<'_>> = owned
                .iter()
                .map(|(role, content, name)| Message {
                    role,
                    content,
                    name: name.as_deref(),
                })
                .collect();
            match counter {
                Some((tok, template)) => Count::Exact(template.count(tok, &messages)),
                None => Count::Estimated(estimator.count_chat(&messages)),
            }
        }
        Prompt::Texts(pieces) => {
            let mut exact = 0;
            let mut estimated = 0;
            for p in pieces {
                match p {
                    Piece::Tokens(n) => exact += n,
                    Piece::Text(r) => {
                        let text = text_of(body, r);
                        match counter {
                            Some((tok, _)) => exact += tok.count(&text),
                            None => estimated += estimator.count(&text),
                        }
                    }
                }
            }
            if counter.is_some() || estimated == 0 {
                Count::Exact(exact + estimated)
            } else {
                Count::Estimated(exact + estimated)
            }
        }
        Prompt::None => Count::Estimated(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::pipeline::body::parse;

    #[test]
    fn chat_prompts_count_with_the_template_and_estimates_say_so() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":[{"type":"text","text":"Hello there"}],"name":"bob"}]}"#;
        let view = parse(body, Endpoint::ChatCompletions).unwrap();
        let counter = (Arc::new(Tokenizer::o200k()), ChatTemplate::OpenAi);
        let t = &counter.0;
        let want = 3
            + t.count("system")
            + t.count("You are terse.")
            + 3
            + t.count("user")
            + t.count("Hello there")
            + 1
            + t.count("bob")
            + 3;
        assert_eq!(
            count_prompt(body, &view, Some(&counter), &Estimator::Bytes),
            Count::Exact(want)
        );
        let bytes = count_prompt(body, &view, None, &Estimator::Bytes);
        assert!(bytes.is_estimate());
        let o200k = Estimator::Tokenizer(counter.0.clone());
        assert_eq!(
            count_prompt(body, &view, None, &o200k),
            Count::Estimated(want),
            "the stand-in tokenizer counts as the model's own would, marked as an estimate"
        );
    }

    #[test]
    fn prompts_and_token_id_inputs() {
        let counter = (Arc::new(Tokenizer::cl100k()), ChatTemplate::OpenAi);
        let body = br#"{"model":"m","prompt":["hello world","hello"]}"#;
        assert_eq!(
            count_prompt(
                body,
                &parse(body, Endpoint::Completions).unwrap(),
                Some(&counter),
                &Estimator::Bytes
            ),
            Count::Exact(3)
        );
        let body = br#"{"model":"m","input":[[1,2,3],[4]]}"#;
        assert_eq!(
            count_prompt(
                body,
                &parse(body, Endpoint::Embeddings).unwrap(),
                None,
                &Estimator::Bytes
            ),
            Count::Exact(4),
            "token ids are counted, not estimated"
        );
    }
}
