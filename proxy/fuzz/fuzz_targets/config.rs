//! The config loader over arbitrary text: a config is loaded or refused with a message, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = tollgate::config::load_str(text, "fuzz.toml", None, 1) {
        assert!(!e.to_string().is_empty());
    }
});
