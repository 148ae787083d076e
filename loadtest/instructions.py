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

Usage: python3 loadtest/instructions.py [--requests 5000] [--no-build] [--tollgate PATH]
Needs valgrind (callgrind_control, callgrind_annotate) and oha.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import KEY, free_port, release_bins, start, start_mock, wait_http  # noqa: E402


def configs(mock_port):
    base = (f'[[providers]]\nname = "mock"\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
            f'api_key = "env:LOAD_PROVIDER_KEY"\n\n[[models]]\nname = "gpt-4o-mini"\n'
            f'targets = [{{ provider = "mock", model = "mock-model" }}]\n')
    key_hash = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
    auth = base + f"""
[[consumers]]
name = "load"
keys = [{{ id = "load-1", hash = "{key_hash}" }}]
models = ["gpt-4o*"]
[consumers.params]
defaults = {{ temperature = 0.7 }}
bounds = {{ max_tokens = [1, 4096] }}
[[consumers.quotas]]
name = "daily-per-user"
limit = 1000000000
per = "day"
by = "user"
"""
    limits = base + """
[[limits]]
name = "tpm-per-user"
by = ["user"]
tokens = 1000000000000
requests = 1000000000
per = "minute"
"""
    return [("tollgate", base), ("+ auth + quotas (memory)", auth), ("+ token limits (memory)", limits)]


def drive(port, n):
    body = '{"model":"gpt-4o-mini","user":"user-42","messages":[{"role":"user","content":"Say hello in three words."}]}'
    # Every variant gets the same requests, with the key (see run.KEY).
    cmd = ["oha", "--no-tui", "-n", str(n), "-c", "4", "-m", "POST", "-H", "content-type: application/json",
           "-H", f"authorization: Bearer {KEY}", "-d", body]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/v1/chat/completions"], capture_output=True, text=True)
    if "[200]" not in out.stdout:
        raise SystemExit(f"requests failed: {out.stdout[-500:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--tollgate", help="the gateway binary to count (default: this tree's release build)")
    args = ap.parse_args()
    bin_dir = release_bins(args.no_build)
    tollgate = args.tollgate or os.path.join(bin_dir, "tollgate")
    work = tempfile.mkdtemp(prefix="tollgate-instr-")
    mock, mock_port = start_mock(bin_dir, work)
    results = []
    try:
        for label, text in configs(mock_port):
            cfg = os.path.join(work, f"{len(results)}.toml")
            with open(cfg, "w") as f:
                f.write(text)
            port, aport = free_port(), free_port()
            out_file = os.path.join(work, f"callgrind.{len(results)}")
            env = dict(os.environ, LOAD_PROVIDER_KEY="sk-load")
            gw = start(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}",
                        tollgate, "--config", cfg, "--listen", f"127.0.0.1:{port}",
                        "--admin-listen", f"127.0.0.1:{aport}", "--threads", "1", "--config-poll-ms", "0", "--shutdown-grace-secs", "1",
                        "--key-store-file", os.path.join(work, f"keys-{port}.json")],
                       os.path.join(work, f"gw-{port}.log"), env)
            try:
                wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120)
                drive(port, 500)  # warm-up, not counted
                subprocess.run(["callgrind_control", "-i", "on", str(gw.pid)], capture_output=True, check=True)
                drive(port, args.requests)
                subprocess.run(["callgrind_control", "-i", "off", str(gw.pid)], capture_output=True, check=True)
                subprocess.run(["callgrind_control", "-d", str(gw.pid)], capture_output=True, check=True)
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
    print(f"callgrind, {args.requests} JSON chat requests, oha -c 4, 1 proxy thread\n")
    print("| gateway | instructions / request | vs plain |")
    print("|---|---|---|")
    plain = results[0][1]
    for label, per in results:
        print(f"| {label} | {per / 1000:.1f} k | {(per / plain - 1) * 100:+.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
