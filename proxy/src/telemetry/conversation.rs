//! Conversation logging: the answer of a consumer with `log_answers`, kept as the client got it
//! (after the output rules) and written to its audit line as text, redacted
//! ([`redact`](crate::pipeline::safety::redact)). The prompt's side is
//! [`PromptFacts::logged_body`](crate::context::PromptFacts::logged_body).

use bytes::Bytes;

use crate::config::guardrails::ModelGuards;
use crate::pipeline::response::concat;
use crate::pipeline::safety::redact;
use crate::sse::completion::completion_text;

/// Most answer bytes kept (as sent: a stream's framing included) for one audit line.
const MAX_KEPT: usize = 1 << 20;

/// Most text an audit line shows of an answer (or of a prompt), in bytes.
pub const MAX_LOGGED_TEXT: usize = 16 * 1024;

/// An answer's body as the client got it, by reference, until the request ends.
#[derive(Debug)]
pub struct LoggedAnswer {
    sse: bool,
    pieces: Vec<Bytes>,
    len: usize,
    /// Bytes not kept past [`MAX_KEPT`].
    cut: bool,
    /// The answer's text, redacted; set when the request ends ([`LoggedAnswer::settle`]).
    pub text: Option<String>,
}

impl LoggedAnswer {
    /// For an answer that is an event stream (`sse`) or a JSON body.
    pub fn new(sse: bool) -> Self {
        LoggedAnswer {
            sse,
            pieces: Vec::new(),
            len: 0,
            cut: false,
            text: None,
        }
    }

    /// Bytes that went to the client.
    pub fn push(&mut self, data: &Bytes) {
        if self.len + data.len() <= MAX_KEPT {
            self.len += data.len();
            self.pieces.push(data.clone());
        } else {
            self.cut = true;
        }
    }

    /// The request ended: the answer's generated text, redacted by the model's rules for
    /// `consumer` and cut to [`MAX_LOGGED_TEXT`] (at a character boundary, marked with `…`).
    pub fn settle(&mut self, guards: Option<&ModelGuards>, consumer: Option<&str>) {
        let body = concat(&std::mem::take(&mut self.pieces));
        let text = redact::answer(guards, consumer, completion_text(&body, self.sse));
        self.text = Some(cut(text, self.cut));
    }
}

/// `text` within [`MAX_LOGGED_TEXT`]; `…` marks a cut (here or before).
pub fn cut(mut text: String, already_cut: bool) -> String {
    if text.len() > MAX_LOGGED_TEXT {
        let mut end = MAX_LOGGED_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    } else if already_cut {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_logged_as_its_text_and_long_answers_are_cut_at_a_character() {
        let mut a = LoggedAnswer::new(true);
        a.push(&Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        ));
        a.push(&Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"lo \\u00e9\"}}]}\n\ndata: [DONE]\n\n",
        ));
        a.settle(None, None);
        assert_eq!(a.text.as_deref(), Some("Hello é"));

        let long = "é".repeat(MAX_LOGGED_TEXT);
        let logged = cut(long, false);
        assert!(logged.len() <= MAX_LOGGED_TEXT + '…'.len_utf8());
        assert!(logged.ends_with('…'));
        assert!(logged.trim_end_matches('…').chars().all(|c| c == 'é'));
        assert_eq!(cut("short".into(), true), "short…");
    }

    #[test]
    fn a_json_answer_is_logged_as_its_message() {
        let mut a = LoggedAnswer::new(false);
        a.push(&Bytes::from_static(
            br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Mail a@b.co"}}]}"#,
        ));
        a.settle(None, None);
        assert_eq!(a.text.as_deref(), Some("Mail a@b.co"));
    }
}
