//! The config loader over arbitrary text: a config is loaded or refused with a message, never
//! a panic. Offline, as `tollgate check --offline` loads: no DNS lookup for a provider's host,
//! so the target measures the parser and the checks, not the resolver.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::LoadOptions;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = LoadOptions { offline: true, ..LoadOptions::default() };
    if let Err(e) = tollgate::config::load_str_with(text, "fuzz.toml", None, 1, options) {
        assert!(!e.to_string().is_empty());
    }
});
