//! Prompt tokens of a request, counted with the model's tokenizer and chat template (exact), or
//! estimated when the model has none configured — and then marked as an estimate.

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

/// The prompt tokens of `view` (whose body is `body`).
pub fn count_prompt(body: &[u8], view: &RequestView, counter: Option<&(Arc<Tokenizer>, ChatTemplate)>) -> Count {
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
            count_chat(counter.map(|(tok, template)| (tok.as_ref(), *template)), &messages)
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
                            None => estimated += estimate(&text),
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
        assert_eq!(count_prompt(body, &view, Some(&counter)), Count::Exact(want));
        assert!(count_prompt(body, &view, None).is_estimate());
    }

    #[test]
    fn prompts_and_token_id_inputs() {
        let counter = (Arc::new(Tokenizer::cl100k()), ChatTemplate::OpenAi);
        let body = br#"{"model":"m","prompt":["hello world","hello"]}"#;
        assert_eq!(
            count_prompt(body, &parse(body, Endpoint::Completions).unwrap(), Some(&counter)),
            Count::Exact(3)
        );
        let body = br#"{"model":"m","input":[[1,2,3],[4]]}"#;
        assert_eq!(
            count_prompt(body, &parse(body, Endpoint::Embeddings).unwrap(), None),
            Count::Exact(4),
            "token ids are counted, not estimated"
        );
    }
}
