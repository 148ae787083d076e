//! Request bodies: parsing, the shape check and the rewrite never panic; an accepted body's
//! rewrite is still JSON the parser accepts, with the new model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::api::Endpoint;
use tollgate::pipeline::body;
use tollgate::pipeline::tokens::{count_prompt, Estimator};

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings] {
        let Ok(view) = body::parse(data, endpoint) else {
            continue;
        };
        let _ = count_prompt(data, &view, None, &Estimator::Bytes);
        let force = body::needs_forced_usage(&view);
        let out = body::rewrite(data, &view, br#""fuzz-target""#, force, &[]);
        let again = body::parse(&out, endpoint).expect("a rewritten body parses");
        assert_eq!(again.model, "fuzz-target");
        assert_eq!(again.stream, view.stream);
        if force {
            assert!(again.include_usage);
        }
    }
});
