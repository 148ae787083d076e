#!/usr/bin/env python3
"""The request rate at which the semantic cache starts to shed: every request a paraphrase of a
cached question, each with its own `temperature` (a sampling knob: part of the exact key, not of
the namespace; so no two share an exact key and every one is embedded and searched, and a shed
one cannot turn the rest into exact hits), offered at rising rates.

Starts the mock and one gateway with `[cache]` at its defaults (--threads 2 proxy threads, one
embedding thread, the default model), caches one question, then for each rate runs oha at that
rate for --duration seconds and reads the gateway's own counters: semantic hits, shed lookups
(the embedding queue was full or the embedding came later than --cache-embed-wait-ms), and the
latency percentiles oha saw. A shed request still gets its answer (from the upstream); it only
misses the cache.

Usage: python3 loadtest/cache_shed.py [--rates 100,200,400,800,1600] [--duration 10] [--no-build]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ROOT, free_port, gateway_configs, oha_cmd, release_bins, start_gateway, start_mock, summarize  # noqa: E402

# 20 words, as in the embedding bench; the paraphrase adds a politeness word.
QUESTION = "Could you tell me how long it takes for a refund to reach my credit card after I return the shoes?"
PARAPHRASE = "Could you please tell me how long it takes for a refund to reach my credit card after I return the shoes?"


def body(question, n=None):
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    if n is not None:
        chat["temperature"] = round(0.01 + (n % 980_000) / 1_000_000, 6)
    return json.dumps(chat)


def counters(admin):
    text = urllib.request.urlopen(admin + "/metrics", timeout=10).read().decode()
    out = {}
    for outcome in ("semantic-hit", "shed", "miss", "hit"):
        m = re.search(r'tollgate_cache_lookups_total\{outcome="' + outcome + r'"\} (\d+)', text)
        out[outcome] = int(m.group(1)) if m else 0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="100,200,400,800,1600")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--gateway-flags", default="", help="extra gateway flags, e.g. '--cache-embed-batch 8'")
    args = ap.parse_args()
    bin_dir = release_bins(args.no_build)
    work = tempfile.mkdtemp(prefix="tollgate-shed-")
    mock, mock_port = start_mock(bin_dir, work)
    admin_port = free_port()
    config = gateway_configs(mock_port)["plain"] + "\n[cache]\n"
    gw, url = start_gateway(os.path.join(bin_dir, "tollgate"), work, config, threads=2,
                            extra=("--models-dir", os.path.join(ROOT, ".models"), *args.gateway_flags.split()), timeout=60, admin_port=admin_port)
    admin = f"http://127.0.0.1:{admin_port}"
    chat = url + "/v1/chat/completions"
    try:
        req = urllib.request.Request(chat, data=body(QUESTION).encode(), headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        print(f"paraphrases of a cached question, oha -c {args.connections} at each rate for {args.duration} s, "
              f"2 proxy threads, 1 embedding thread, {os.cpu_count()} cores\n")
        print("| offered req/s | served req/s | semantic hits | shed | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|")
        lines = os.path.join(work, "bodies.txt")
        next_line = 0
        for rate in [int(r) for r in args.rates.split(",")]:
            with open(lines, "w") as f:
                for i in range(rate * args.duration * 2):
                    f.write(body(PARAPHRASE, next_line + i) + "\n")
            next_line += rate * args.duration * 2
            before = counters(admin)
            cmd = oha_cmd(chat, "", args.duration, args.connections, rate)
            at = cmd.index("-d")
            cmd[at:at + 2] = ["-Z", lines]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"oha failed: {out.stderr}")
            raw = json.loads(out.stdout)
            s = summarize(raw)
            after = counters(admin)
            lookups = sum(after[k] - before[k] for k in after) or 1
            hits = after["semantic-hit"] - before["semantic-hit"]
            shed = after["shed"] - before["shed"]
            lat = raw.get("latencyPercentiles", {})
            print(f"| {rate} | {s['total'] / args.duration:.0f} | {hits / lookups * 100:.1f}% | {shed / lookups * 100:.1f}% "
                  f"| {lat.get('p50', 0) * 1000:.2f} | {lat.get('p99', 0) * 1000:.2f} |", flush=True)
    finally:
        gw.terminate()
        gw.wait(timeout=10)
        mock.terminate()
        mock.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
