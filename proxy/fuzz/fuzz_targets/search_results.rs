//! What search engines, result pages and the planner send back, over arbitrary bytes: every
//! engine's answer parser, the HTML text extractor and the plan reader never panic, and keep
//! to their bounds (at most the results and queries asked for).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::search::{Domain, EngineKind};
use tollgate::html;
use tollgate::search::{engines, planner};

fuzz_target!(|data: &[u8]| {
    for kind in [
        EngineKind::Searxng,
        EngineKind::Bing,
        EngineKind::Google,
        EngineKind::Arxiv,
        EngineKind::Elasticsearch,
    ] {
        let Some(protocol) = engines::protocol(kind) else { continue };
        if let Ok(hits) = protocol.parse(data, 7) {
            assert!(hits.len() <= 7);
        }
    }
    let page = String::from_utf8_lossy(data);
    let (text, title) = html::text(&page);
    assert!(text.len() <= page.len() * 4 + 16 && title.len() <= page.len() * 4 + 16);
    if let Ok(plan) = planner::read_plan(data, &[Domain::Web, Domain::Private], 3) {
        assert!(plan.queries.len() <= 3);
        assert!(plan.search || plan.queries.is_empty());
    }
});
