#!/usr/bin/env python3
"""Time to first token of streamed answers with the output guard off and on, both gateways
running at the same moment and asked in alternation (so drift hits both alike).

The mock streams `--chunks` chunks of 3 words (about 16 characters) every `--delay-ms`; the
guarded gateway has a deny list on output whose longest phrase is the hold-back. The added time
to first token should be the time the stream takes to produce the hold-back's characters (it is
the guard's only wait), and nothing else.

Usage: python3 loadtest/guard_ttft.py [--requests 40] [--delay-ms 20] [--no-build]
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import KEY, gateway_configs, release_bins, start, free_port, wait_http, start_gateway  # noqa: E402

PHRASE = "an unusually long forbidden phrase of sixty four characters total!!"[:64]
BODY = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def ttft(port):
    """Seconds from sending to the first content delta."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", BODY,
                 {"content-type": "application/json", "authorization": f"Bearer {KEY}"})
    resp = conn.getresponse()
    first = None
    buf = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
        if first is None and b'"content"' in buf:
            first = time.perf_counter() - started
    conn.close()
    return first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    bin_dir = release_bins(args.no_build)
    work = tempfile.mkdtemp(prefix="tollgate-ttft-")
    mock_port = free_port()
    mock = start([os.path.join(bin_dir, "tollgate-mock"), "--listen", f"127.0.0.1:{mock_port}", "--threads", "1",
                  "--chunks", "32", "--chunk-delay-ms", str(args.delay_ms)], os.path.join(work, "mock.log"))
    wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
    plain = gateway_configs(mock_port)["plain"]
    guarded = plain + f'\n[[guardrails]]\nname = "deny"\ndetect = "deny_list"\nphrases = ["{PHRASE}"]\non = ["output"]\naction = "block"\n'
    tollgate = os.path.join(bin_dir, "tollgate")
    gws = []
    try:
        for label, text in (("guard off", plain), ("guard on, hold-back 64 chars", guarded)):
            d = os.path.join(work, label.split(",")[0].replace(" ", "-"))
            os.makedirs(d)
            gw, url = start_gateway(tollgate, d, text)
            gws.append((label, gw, int(url.rsplit(":", 1)[1])))
        times = {label: [] for label, _, _ in gws}
        for _ in range(args.requests):
            for label, _, port in gws:
                times[label].append(ttft(port))
        chars_per_chunk = len("hello from the ")  # the mock's 3 words and a space
        chunks_held = -(-64 // chars_per_chunk)
        print(f"{args.requests} streams each, mock chunk every {args.delay_ms} ms of ~{chars_per_chunk} characters\n")
        print("| gateway | ttft p50 | ttft p90 |")
        print("|---|---|---|")
        for label, values in times.items():
            values = sorted(v for v in values if v is not None)
            p50 = statistics.median(values) * 1000
            p90 = values[int(len(values) * 0.9) - 1] * 1000
            print(f"| {label} | {p50:.1f} ms | {p90:.1f} ms |")
        print(f"\nexpected added: the hold-back's {chunks_held} chunks x {args.delay_ms} ms = {chunks_held * args.delay_ms} ms")
    finally:
        for _, gw, _ in gws:
            gw.terminate()
        mock.terminate()


if __name__ == "__main__":
    sys.exit(main())
