//! What an answer's JSON holds for the output guard: the spans of its texts (each choice's
//! content, each tool call's arguments), of its choices and of the fields a closing chunk
//! repeats; found by walking the JSON once, without building a value tree. And the splice that
//! writes edits back into the bytes.

use std::ops::Range;

use bytes::Bytes;

use crate::json_spans::{for_each_element, for_each_member};

/// Which text of the answer a window follows: a choice's content (slot 0) or its tool call
/// number `slot - 1`'s arguments.
pub(super) type Key = (u64, u64);

/// A text found in an answer: its key and the span of its string contents.
#[derive(Debug, Clone)]
pub(super) struct TextSpan {
    pub(super) key: Key,
    pub(super) span: Range<usize>,
}

/// What an answer's JSON (a whole answer, or one stream event's data) holds for the guard.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) texts: Vec<TextSpan>,
    pub(super) choices: Vec<ChoiceSpans>,
    /// Raw `id`, `created` and `model` values, for the closing chunk of a blocked stream.
    pub(super) id: Option<Range<usize>>,
    pub(super) created: Option<Range<usize>>,
    pub(super) model: Option<Range<usize>>,
}

/// One choice: its index, the span of its `finish_reason` value, and of its `message` (or
/// `delta`, or `text`) value.
#[derive(Debug)]
pub(super) struct ChoiceSpans {
    pub(super) index: u64,
    pub(super) finish: Option<Range<usize>>,
    pub(super) body: Option<Range<usize>>,
}

/// Find the texts of `json` (offsets relative to `json`); `delta`: a stream chunk.
pub(super) fn find(json: &[u8], delta: bool) -> Found {
    let mut found = Found::default();
    let _ = for_each_member(json, |k, m| {
        match k {
            b"id" => found.id = Some(m.value),
            b"created" => found.created = Some(m.value),
            b"model" => found.model = Some(m.value),
            b"choices" => {
                let base = m.value.start;
                let _ = for_each_element(&json[m.value.clone()], |el| {
                    let el = base + el.start..base + el.end;
                    choice(json, el, delta, &mut found);
                });
            }
            _ => {}
        }
        true
    });
    found
}

pub(super) fn choice(json: &[u8], el: Range<usize>, delta: bool, found: &mut Found) {
    let mut index = 0;
    let mut finish = None;
    let mut body = None;
    let mut texts = Vec::new();
    let base = el.start;
    let _ = for_each_member(&json[el.clone()], |k, m| {
        let v = base + m.value.start..base + m.value.end;
        match k {
            b"index" => index = crate::pipeline::body::number(&json[v]).unwrap_or(0),
            b"finish_reason" => finish = Some(v),
            b"text" => {
                texts.push((0, contents(json, &v)));
                body = Some(v);
            }
            b"delta" | b"message" if (k == b"delta") == delta => {
                message(json, &v, &mut texts);
                body = Some(v);
            }
            _ => {}
        }
        true
    });
    found.texts.extend(texts.into_iter().filter_map(|(slot, span)| {
        Some(TextSpan {
            key: (index, slot),
            span: span?,
        })
    }));
    found.choices.push(ChoiceSpans { index, finish, body });
}

/// A message's (or delta's) `content` and tool calls' `arguments`.
pub(super) fn message(json: &[u8], v: &Range<usize>, texts: &mut Vec<(u64, Option<Range<usize>>)>) {
    let base = v.start;
    let _ = for_each_member(&json[v.clone()], |k, m| {
        let mv = base + m.value.start..base + m.value.end;
        match k {
            b"content" => texts.push((0, contents(json, &mv))),
            b"tool_calls" => {
                let mut position = 0;
                let _ = for_each_element(&json[mv.clone()], |call| {
                    let call = mv.start + call.start..mv.start + call.end;
                    let mut index = position;
                    let mut args = None;
                    let cb = call.start;
                    let _ = for_each_member(&json[call.clone()], |ck, cm| {
                        let cv = cb + cm.value.start..cb + cm.value.end;
                        match ck {
                            b"index" => index = crate::pipeline::body::number(&json[cv]).unwrap_or(position),
                            b"function" => {
                                let fb = cv.start;
                                let _ = for_each_member(&json[cv.clone()], |fk, fm| {
                                    if fk == b"arguments" {
                                        args = contents(json, &(fb + fm.value.start..fb + fm.value.end));
                                    }
                                    true
                                });
                            }
                            _ => {}
                        }
                        true
                    });
                    texts.push((index + 1, args));
                    position += 1;
                });
            }
            _ => {}
        }
        true
    });
}

/// The contents span of a string value (`None` for anything else).
pub(super) fn contents(json: &[u8], v: &Range<usize>) -> Option<Range<usize>> {
    (v.len() >= 2 && json[v.start] == b'"').then(|| v.start + 1..v.end - 1)
}

/// `bytes` with each range replaced.
pub(super) fn splice(bytes: &[u8], edits: &[(Range<usize>, Bytes)]) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut at = 0;
    for (r, with) in edits {
        if r.start < at {
            continue;
        }
        out.extend_from_slice(&bytes[at..r.start]);
        out.extend_from_slice(with);
        at = r.end;
    }
    out.extend_from_slice(&bytes[at..]);
    Bytes::from(out)
}

/// Where an event's `data:` value starts (a single-line `data` field).
pub(super) fn data_start(event: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(event, b"data:")?;
    if at > 0 && event[at - 1] != b'\n' {
        return None;
    }
    let mut i = at + 5;
    if event.get(i) == Some(&b' ') {
        i += 1;
    }
    Some(i)
}
