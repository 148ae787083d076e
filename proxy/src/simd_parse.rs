//! simd-json parses with per-thread reused buffers.
//!
//! simd-json needs a mutable copy of its input and, per parse, an aligned padded input buffer,
//! a string buffer and the structural index: four allocations that, on the small bodies a
//! gateway sees most (a chat request, a response's `usage` object), cost more than the parse
//! itself. Each I/O thread keeps one set and reuses it; inputs above [`REUSE_LIMIT`] get their
//! own, so one huge body does not leave a thread holding its size.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use simd_json::Buffers;

/// Largest input parsed in the thread's reused buffers.
const REUSE_LIMIT: usize = 64 * 1024;

struct Scratch {
    text: Vec<u8>,
    buffers: Buffers,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Deserialize `text` with simd-json (validating it whole), reusing this thread's buffers.
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> simd_json::Result<T> {
    let own = || simd_json::serde::from_slice(&mut text.to_vec());
    if text.len() > REUSE_LIMIT {
        return own();
    }
    SCRATCH.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return own();
        };
        let s = slot.get_or_insert_with(|| Scratch {
            text: Vec::with_capacity(4096),
            buffers: Buffers::new(4096),
        });
        s.text.clear();
        s.text.extend_from_slice(text);
        simd_json::serde::from_slice_with_buffers(&mut s.text, &mut s.buffers)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Doc {
        a: u64,
        s: String,
    }

    #[test]
    fn reused_buffers_give_each_parse_its_own_answer() {
        let long = format!("{{\"a\":2,\"s\":\"{}\"}}", "x".repeat(REUSE_LIMIT + 10));
        // Small, large (own buffers), then small again after a longer one on the same thread.
        let inputs = [
            r#"{"a":1,"s":"one, somewhat longer than the next"}"#.to_string(),
            long,
            r#"{"a":3,"s":"\u00e9"}"#.to_string(),
        ];
        let got: Vec<Doc> = inputs.iter().map(|t| from_slice(t.as_bytes()).unwrap()).collect();
        assert_eq!(got[0].a, 1);
        assert_eq!(got[1].s.len(), REUSE_LIMIT + 10);
        assert_eq!(got[2], Doc { a: 3, s: "é".into() });
        assert!(from_slice::<Doc>(br#"{"a":1,"s":"x""#).is_err());
        assert!(
            from_slice::<Doc>(br#"{"a":1,"s":"ok"}"#).is_ok(),
            "an error leaves the buffers usable"
        );
    }
}
