//! The text a model generated, read back from a finished response, for counting completion
//! tokens when the provider reported no usage. Runs once per response, only in that case.

use crate::json_spans::{for_each_element, for_each_member, text_of};

use super::scanner::{event_data, events};

/// The generated text of a streamed (`sse`) or JSON response body.
pub fn completion_text(body: &[u8], sse: bool) -> String {
    let mut out = String::new();
    if sse {
        for range in events(body) {
            let data = event_data(&body[range]);
            if data.first() == Some(&b'{') {
                choice_texts(&data, &["delta", "content"], &mut out);
                choice_texts(&data, &["text"], &mut out);
            }
        }
    } else {
        choice_texts(body, &["message", "content"], &mut out);
        choice_texts(body, &["text"], &mut out);
    }
    out
}

/// Append the string at `path` inside each element of the top-level `choices`.
fn choice_texts(json: &[u8], path: &[&str], out: &mut String) {
    let _ = for_each_member(json, |k, m| {
        if k == b"choices" {
            let base = m.value.start;
            let _ = for_each_element(&json[m.value.clone()], |el| {
                let el = base + el.start..base + el.end;
                if let Some(text) = string_at(json, el, path) {
                    out.push_str(&text);
                }
            });
            return false;
        }
        true
    });
}

fn string_at(json: &[u8], value: std::ops::Range<usize>, path: &[&str]) -> Option<String> {
    let Some((first, rest)) = path.split_first() else {
        let v = &json[value.clone()];
        return (v.first() == Some(&b'"') && v.len() >= 2)
            .then(|| text_of(json, &(value.start + 1..value.end - 1)).into_owned());
    };
    let mut found = None;
    let base = value.start;
    let _ = for_each_member(&json[value], |k, m| {
        if k == first.as_bytes() {
            found = Some(base + m.value.start..base + m.value.end);
            return false;
        }
        true
    });
    string_at(json, found?, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_texts_and_messages_are_read_back() {
        let sse = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo \\\"you\\\"\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(completion_text(sse, true), "Hello \"you\"");
        let cmpl = b"data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n";
        assert_eq!(completion_text(cmpl, true), "ab");
        let json = br#"{"id":"x","choices":[{"message":{"role":"assistant","content":"Hi there"}}]}"#;
        assert_eq!(completion_text(json, false), "Hi there");
        assert_eq!(completion_text(b"not json", false), "");
    }
}
