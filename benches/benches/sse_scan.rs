//! Throughput of the response chain (SSE usage stage) on realistic provider streams cut at random boundaries,
//! beside the naive approach (buffer, split events, parse every payload with serde_json).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::pipeline::response::{CountCompletion, ResponseChain};
use tollgate_benches::{openai_stream, split_events, split_random};

fn tap_all(chunks: &[Bytes]) -> Option<u64> {
    let mut chain = ResponseChain::new(true, true, true, CountCompletion::No);
    let mut out = Vec::with_capacity(4);
    for c in chunks {
        chain.push(c.clone(), &mut out);
        out.clear();
    }
    chain.finish(&mut out).usage.map(|u| u.total)
}

/// What a typical gateway does: append to a buffer, split events, parse each payload.
fn naive_all(chunks: &[Bytes]) -> Option<u64> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = None;
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            if let Some(payload) = event.strip_prefix(b"data: ") {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload.trim_ascii_end()) {
                    if let Some(t) = v
                        .get("usage")
                        .and_then(|u| u.get("total_tokens"))
                        .and_then(|t| t.as_u64())
                    {
                        total = Some(t);
                    }
                }
            }
        }
    }
    total
}

fn bench(c: &mut Criterion) {
    let stream = openai_stream(2000, 7);
    let cases = [
        ("one_event_per_chunk", split_events(&stream, 1)),
        ("four_events_per_chunk", split_events(&stream, 4)),
        ("random_cuts_16_512", split_random(&stream, 1, 16, 512)),
        ("random_cuts_1k_16k", split_random(&stream, 2, 1024, 16 * 1024)),
    ];
    let mut g = c.benchmark_group("sse_usage_tap");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for (name, chunks) in &cases {
        assert_eq!(tap_all(chunks), Some(2015));
        g.bench_with_input(BenchmarkId::new("tollgate", name), chunks, |b, chunks| {
            b.iter(|| black_box(tap_all(chunks)))
        });
    }
    for (name, chunks) in &cases[..1] {
        assert_eq!(naive_all(chunks), Some(2015));
        g.bench_with_input(BenchmarkId::new("naive_serde_json", name), chunks, |b, chunks| {
            b.iter(|| black_box(naive_all(chunks)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
