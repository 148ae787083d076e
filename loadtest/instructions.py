#!/usr/bin/env python3
"""User-space instructions per request, counted by valgrind's callgrind: a figure that does not
move with whatever else the machine is doing, for comparing two builds or two configurations.

Starts the mock, then for each variant (plain gateway, a consumer with key check + parameter
rules + a per-user quota in memory, a token + request limit in memory) runs Tollgate under
callgrind with instrumentation off, warms it up, counts the instructions of --requests JSON
chat requests (oha, 4 connections) and prints instructions per request, with the difference to
the plain gateway. Kernel work (the syscalls themselves) is not counted: the load test's CPU
µs/req covers that.

To compare two builds, run it once per binary (`--tollgate PATH`, e.g. a copy of an earlier
build): the counts are repeatable, so two runs compare directly.

With --cache it compares the answer cache instead (the embedding threads are counted too): the
plain gateway with the cache off; with `[cache]` at its defaults answering (a) exact hits (the
same request again), (b) semantic hits (a paraphrase of a cached question: one embedding, one
search), (c) misses (`Cache-Control: no-cache`: the question is embedded, forwarded and its
answer stored). An embedding costs millions of instructions: use --requests 500.

With --guard it compares content safety: the plain gateway and the same with guardrails on
(deny list from examples/deny-list.txt blocking in and out, every kind of sensitive data masked
in and out, injection rules), both sent the same 1 KB prompt that trips none of them.

With --trace it compares OpenTelemetry tracing: off, and exporting to a local OTLP/HTTP
receiver (a thread of this script answering 200) with sampling 0.01 and 1.0; the exporter's
thread is counted, and the count waits for its last batch to be posted.

Usage: python3 loadtest/instructions.py [--requests 5000] [--no-build] [--tollgate PATH] [--cache | --guard | --trace] [--only LABEL]
Needs valgrind (callgrind_control, callgrind_annotate) and oha.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import KEY, gateway_configs, release_bins, start_gateway, start_mock  # noqa: E402


def configs(mock_port):
    c = gateway_configs(mock_port)
    return [("tollgate", c["plain"]), ("+ auth + quotas (memory)", c["auth"]), ("+ token limits (memory)", c["limits"]),
            ("+ concurrency limit (memory)", c["concurrent"])]


QUESTION = "How do I reset my password?"
PARAPHRASE = "How can I reset my password?"
MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".models")


def body_of(question):
    return ('{"model":"gpt-4o-mini","user":"user-42","messages":[{"role":"user","content":"'
            + question + '"}]}')


def cache_configs(mock_port):
    plain = gateway_configs(mock_port)["plain"]
    cached = plain + "\n[cache]\n"
    # (label, config, question asked once before counting, question counted, extra headers)
    return [("tollgate, cache off", plain, None, QUESTION, []),
            ("cache on: exact hits", cached, QUESTION, QUESTION, []),
            ("cache on: semantic hits", cached, QUESTION, PARAPHRASE, []),
            ("cache on: misses (no-cache: embed, forward, store)", cached, None, QUESTION,
             ["-H", "cache-control: no-cache"])]


GUARD_PROMPT = ("Hi team, following up on yesterday's call about the Q3 migration. We moved the billing service "
                "to the new cluster on Tuesday and latency dropped from 180 ms to 95 ms at the 99th percentile. "
                "Two things are still open: the retry policy for the payment provider, which sometimes answers 503 "
                "during their maintenance window, and the dashboard for per-tenant usage. Could you draft a short "
                "plan for both, with owners and dates? Please keep it under two hundred words and write it as a "
                "bulleted list. If anything is unclear, reply here. ") * 2
DENY_LIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "deny-list.txt")


def guard_configs(mock_port):
    plain = gateway_configs(mock_port)["plain"]
    guarded = plain + f"""
[[guardrails]]
name = "pii"
detect = "pii"
action = "mask"
on = ["input", "output"]

[[guardrails]]
name = "deny"
detect = "deny_list"
file = "{DENY_LIST}"
on = ["input", "output"]
action = "block"

[[guardrails]]
name = "injection"
detect = "injection"
action = "block"
"""
    return [("tollgate, guardrails off (1 KB prompt)", plain, None, GUARD_PROMPT, []),
            ("guardrails on: pii mask + deny list + injection, in and out", guarded, None, GUARD_PROMPT, [])]


def trace_configs(mock_port, collector_port):
    plain = gateway_configs(mock_port)["plain"]
    endpoint = f"http://127.0.0.1:{collector_port}"
    on = lambda sample: ("--otlp-endpoint", endpoint, "--trace-sample", sample)  # noqa: E731
    return [("tollgate, tracing off", plain, None, "Say hello in three words.", [], ()),
            ("tracing on, sampling 0.01", plain, None, "Say hello in three words.", [], on("0.01")),
            ("tracing on, sampling 1.0", plain, None, "Say hello in three words.", [], on("1.0"))]


def start_collector():
    """An OTLP/HTTP receiver on a free port (a thread): answers 200 to every POST; the spans it
    received, by count."""
    import http.server
    import json
    import threading
    received = {"spans": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            for rs in json.loads(body).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    received["spans"] += len(ss.get("spans", []))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], received


EXPECTED = {"tollgate, cache off": None, "cache on: exact hits": "hit", "cache on: semantic hits": "semantic-hit",
            "cache on: misses (no-cache: embed, forward, store)": "miss"}


def cache_header(url, question, headers):
    """The x-tollgate-cache header of one more request like the counted ones."""
    import urllib.request
    req = urllib.request.Request(url + "/v1/chat/completions", data=body_of(question).encode(), method="POST")
    req.add_header("content-type", "application/json")
    req.add_header("authorization", f"Bearer {KEY}")
    for i in range(1, len(headers), 2):
        name, value = headers[i].split(": ", 1)
        req.add_header(name, value)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.headers.get("x-tollgate-cache")


def drive(url, n, question="Say hello in three words.", headers=()):
    body = body_of(question)
    # Every variant gets the same requests, with the key (see run.KEY).
    cmd = ["oha", "--no-tui", "-n", str(n), "-c", "4", "-m", "POST", "-H", "content-type: application/json",
           "-H", f"authorization: Bearer {KEY}", *headers, "-d", body]
    out = subprocess.run(cmd + [url + "/v1/chat/completions"], capture_output=True, text=True)
    if "[200]" not in out.stdout:
        raise SystemExit(f"requests failed: {out.stdout[-500:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--tollgate", help="the gateway binary to count (default: this tree's release build)")
    ap.add_argument("--cache", action="store_true", help="compare the answer cache's paths (see above)")
    ap.add_argument("--guard", action="store_true", help="compare guardrails on and off (see above)")
    ap.add_argument("--trace", action="store_true", help="compare tracing off and on (see above)")
    ap.add_argument("--only", default="", help="only the variants whose label contains this (the first always runs)")
    args = ap.parse_args()
    bin_dir = release_bins(args.no_build)
    tollgate = args.tollgate or os.path.join(bin_dir, "tollgate")
    work = tempfile.mkdtemp(prefix="tollgate-instr-")
    mock, mock_port = start_mock(bin_dir, work)
    results = []
    try:
        received = None
        if args.cache:
            variants = [v + ((),) for v in cache_configs(mock_port)]
        elif args.guard:
            variants = [v + ((),) for v in guard_configs(mock_port)]
        elif args.trace:
            collector_port, received = start_collector()
            variants = trace_configs(mock_port, collector_port)
        else:
            variants = [(label, text, None, "Say hello in three words.", [], ()) for label, text in configs(mock_port)]
        variants = variants[:1] + [v for v in variants[1:] if args.only in v[0]]
        for label, text, first, question, headers, flags in variants:
            out_file = os.path.join(work, f"callgrind.{len(results)}")
            valgrind = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}")
            # Under valgrind an embedding takes ~50 times longer: wait for it rather than shed.
            extra = ("--models-dir", MODELS_DIR, "--cache-embed-wait-ms", "600000") if args.cache else flags
            gw, url = start_gateway(tollgate, work, text, wrapper=valgrind, timeout=300, extra=extra)
            try:
                if first:
                    drive(url, 1, first)
                drive(url, min(500, args.requests), question, headers)  # warm-up, not counted
                subprocess.run(["callgrind_control", "-i", "on", str(gw.pid)], capture_output=True, check=True)
                spans_before = received["spans"] if received else 0
                drive(url, args.requests, question, headers)
                if flags:
                    time.sleep(3)  # the exporter posts its last batch (a second after its first span)
                subprocess.run(["callgrind_control", "-i", "off", str(gw.pid)], capture_output=True, check=True)
                if received is not None and flags:
                    print(f"{label}: {received['spans'] - spans_before} spans received", flush=True)
                subprocess.run(["callgrind_control", "-d", str(gw.pid)], capture_output=True, check=True)
                seen = cache_header(url, question, headers) if args.cache else None
                if args.cache and seen != EXPECTED[label]:
                    raise SystemExit(f"{label}: the requests were {seen}, not {EXPECTED[label]}")
                time.sleep(1)
            finally:
                gw.terminate()
                gw.wait(timeout=60)
            dumps = sorted(p for p in os.listdir(work) if p.startswith(f"callgrind.{len(results)}."))
            annotated = subprocess.run(["callgrind_annotate", os.path.join(work, dumps[-1])],
                                       capture_output=True, text=True).stdout
            total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", annotated).group(1).replace(",", ""))
            results.append((label, total / args.requests))
    finally:
        mock.terminate()
        mock.wait(timeout=10)
    what = "1 proxy thread" + (", 1 embedding thread" if args.cache else "") + (", the exporter" if args.trace else "")
    print(f"callgrind, {args.requests} JSON chat requests, oha -c 4, {what}\n")
    print("| gateway | instructions / request | vs plain |")
    print("|---|---|---|")
    plain = results[0][1]
    for label, per in results:
        print(f"| {label} | {per / 1000:.1f} k | {(per / plain - 1) * 100:+.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
