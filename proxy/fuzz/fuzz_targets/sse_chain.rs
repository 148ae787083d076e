//! The response chain over arbitrary upstream bytes, cut anywhere: it never panics, a stream
//! the gateway did not ask usage for passes byte for byte, and counting never fails.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate::pipeline::response::{CountCompletion, ResponseChain};
use tollgate::pipeline::tokens::Estimator;

fuzz_target!(|input: &[u8]| {
    let (cuts, body) = input.split_at(input.len().min(4));
    for (sse, strip) in [(true, false), (true, true), (false, false)] {
        let mut chain = ResponseChain::new(sse, true, strip, CountCompletion::Estimate(Estimator::Bytes));
        let mut out = Vec::new();
        let mut at = 0;
        for c in cuts {
            let p = (*c as usize * body.len()) / 255;
            if p >= at {
                chain.push(Bytes::copy_from_slice(&body[at..p]), &mut out);
                at = p;
            }
        }
        chain.push(Bytes::copy_from_slice(&body[at..]), &mut out);
        let _ = chain.finish(&mut out);
        let forwarded = out.concat();
        if !strip {
            assert_eq!(forwarded, body, "bytes pass unchanged when nothing is stripped");
        } else {
            assert!(forwarded.len() <= body.len());
        }
    }
});
