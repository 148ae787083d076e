//! Chat templates: the tokens a model family adds around each message and before the reply.
//!
//! OpenAI documents a fixed overhead (3 tokens a message, 1 for a `name`, 3 to prime the reply).
//! Open models render messages into text with special tokens; that text is counted with the
//! model's own tokenizer, special tokens as single tokens. Templates here follow each family's
//! published template for plain messages (no tools, no default system prompt).

use crate::Tokenizer;

/// One chat message as far as counting goes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
    pub name: Option<&'a str>,
}

/// A model family's chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// OpenAI chat models (`gpt-4o`, `gpt-4`, `gpt-3.5-turbo`).
    OpenAi,
    /// ChatML: Qwen and others (`<|im_start|>role\n...<|im_end|>\n`).
    ChatMl,
    /// Llama 3 (`<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`).
    Llama3,
    /// DeepSeek V3 / R1 (`<｜User｜>...<｜Assistant｜>`).
    DeepSeekV3,
}

impl ChatTemplate {
    pub fn from_name(name: &str) -> Option<ChatTemplate> {
        match name {
            "openai" => Some(ChatTemplate::OpenAi),
            "chatml" => Some(ChatTemplate::ChatMl),
            "llama3" => Some(ChatTemplate::Llama3),
            "deepseek_v3" => Some(ChatTemplate::DeepSeekV3),
            _ => None,
        }
    }

    /// Tokens the model sees for `messages`, including the priming of its reply.
    pub fn count(self, tokenizer: &Tokenizer, messages: &[Message<'_>]) -> usize {
        match self {
            ChatTemplate::OpenAi => {
                let per_message: usize = messages
                    .iter()
                    .map(|m| {
                        3 + tokenizer.count(m.role)
                            + tokenizer.count(m.content)
                            + m.name.map_or(0, |n| 1 + tokenizer.count(n))
                    })
                    .sum();
                per_message + 3
            }
            _ => tokenizer.count(&self.render(messages)),
        }
    }

    /// The text an open model's template renders for `messages`, with the reply primed.
    pub fn render(self, messages: &[Message<'_>]) -> String {
        let mut s = String::with_capacity(messages.iter().map(|m| m.content.len() + 32).sum::<usize>() + 32);
        match self {
            ChatTemplate::OpenAi | ChatTemplate::ChatMl => {
                for m in messages {
                    s.push_str("<|im_start|>");
                    s.push_str(m.role);
                    s.push('\n');
                    s.push_str(m.content);
                    s.push_str("<|im_end|>\n");
                }
                s.push_str("<|im_start|>assistant\n");
            }
            ChatTemplate::Llama3 => {
                s.push_str("<|begin_of_text|>");
                for m in messages {
                    s.push_str("<|start_header_id|>");
                    s.push_str(m.role);
                    s.push_str("<|end_header_id|>\n\n");
                    s.push_str(m.content.trim());
                    s.push_str("<|eot_id|>");
                }
                s.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            ChatTemplate::DeepSeekV3 => {
                s.push_str("<｜begin▁of▁sentence｜>");
                for m in messages.iter().filter(|m| m.role == "system") {
                    s.push_str(m.content);
                }
                for m in messages.iter().filter(|m| m.role != "system") {
                    if m.role == "assistant" {
                        s.push_str("<｜Assistant｜>");
                        s.push_str(m.content);
                        s.push_str("<｜end▁of▁sentence｜>");
                    } else {
                        s.push_str("<｜User｜>");
                        s.push_str(m.content);
                    }
                }
                s.push_str("<｜Assistant｜>");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_overhead_is_three_per_message_one_per_name_and_three_for_the_reply() {
        let t = Tokenizer::o200k();
        let msgs = [
            Message {
                role: "system",
                content: "You are terse.",
                name: None,
            },
            Message {
                role: "user",
                content: "Hello there",
                name: Some("bob"),
            },
        ];
        let content: usize = msgs.iter().map(|m| t.count(m.role) + t.count(m.content)).sum();
        assert_eq!(
            ChatTemplate::OpenAi.count(&t, &msgs),
            content + 3 * 2 + 1 + t.count("bob") + 3
        );
        assert_eq!(ChatTemplate::OpenAi.count(&t, &[]), 3);
    }

    #[test]
    fn templates_render_the_published_shapes() {
        let msgs = [Message {
            role: "user",
            content: "hi",
            name: None,
        }];
        assert_eq!(
            ChatTemplate::ChatMl.render(&msgs),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::Llama3.render(&msgs),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            ChatTemplate::DeepSeekV3.render(&msgs),
            "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>"
        );
    }
}
