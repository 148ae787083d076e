//! The JSON span walker over arbitrary bytes: never panics, and every span it reports lies
//! inside the input, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::json_spans::{for_each_element, for_each_member, nests_deeper_than, text_of};

fuzz_target!(|data: &[u8]| {
    let _ = nests_deeper_than(data, 16);
    let mut last = 0;
    let _ = for_each_member(data, |_key, m| {
        assert!(m.key.start <= m.key.end && m.key.end <= m.value.start && m.value.end <= data.len());
        assert!(m.key.start >= last);
        last = m.value.end;
        if data.get(m.value.start) == Some(&b'"') && m.value.len() >= 2 {
            let _ = text_of(data, &(m.value.start + 1..m.value.end - 1));
        }
        true
    });
    let _ = for_each_element(data, |r| assert!(r.start <= r.end && r.end <= data.len()));
});
