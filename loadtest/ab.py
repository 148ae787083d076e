#!/usr/bin/env python3
"""Side-by-side A/B: the plain gateway and a gateway with a feature, loaded at the same time.

On a shared or virtual machine the speed drifts by tens of percent within minutes, so two rows
measured one after the other differ by as much as the feature costs. Here both gateways take the
same load at the same moment (one oha each, same connections, same requests), so whatever the
machine does, both see it; each round gives the feature's CPU per request over the plain
gateway's, and the figure is the median over rounds. Rounds alternate which oha starts first.

Variants: a second plain gateway (the A/A check: what the method reads for no difference), a
consumer with key check, parameter rules and a per-user quota in memory; a token and
request limit per user in memory; a concurrency limit per user in memory; the token and the
concurrency limits shared through Redis (`sync` mode), when Redis answers on 127.0.0.1:6379. All
high enough never to refuse. And the answer cache at its defaults answering every request as an
exact hit (the same request again: no upstream).

With --against-nginx: the A/A check, then the plain gateway against nginx (1 worker, as in
run.py), Tollgate's CPU per request over nginx's.

Usage: python3 loadtest/ab.py [--rounds 10] [--duration 5] [--connections 16] [--stream] [--against-nginx] [--only LABEL] [--no-build]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (ROOT, cpu_seconds, gateway_configs, oha_cmd, redis_answers, release_bins, start_gateway,  # noqa: E402
                 start_mock, start_nginx, stop, summarize)


def gateway(tollgate, work, text, extra=()):
    """A gateway as `together` takes it: (process, chat URL, its pids)."""
    p, url = start_gateway(tollgate, work, text, extra=extra)
    return p, url + "/v1/chat/completions", lambda: [p.pid]


def together(a, b, body, args, a_first):
    """Load both proxies (process, URL, pids) at once; CPU µs per request of each."""
    order = [(0, a), (1, b)] if a_first else [(1, b), (0, a)]
    before = {i: cpu_seconds(pids()) for i, (_, _, pids) in order}
    runs = [(i, subprocess.Popen(oha_cmd(url, body, args.duration, args.connections), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)) for i, (_, url, _) in order]
    per_req = [0.0, 0.0]
    for i, run in runs:
        out, err = run.communicate()
        if run.returncode != 0:
            raise SystemExit(f"oha failed: {err}")
        s = summarize(json.loads(out))
        if s["ok"] != s["total"] or not s["total"]:
            raise SystemExit(f"{s['total'] - s['ok']} of {s['total']} requests failed")
        pids = (a, b)[i][2]
        per_req[i] = (cpu_seconds(pids()) - before[i]) / s["total"] * 1e6
    return per_req[0], per_req[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16, help="per gateway")
    ap.add_argument("--stream", action="store_true", help="SSE answers (16 events) instead of JSON")
    ap.add_argument("--against-nginx", action="store_true",
                    help="after the A/A check, the plain gateway against nginx (1 worker) instead of the feature variants")
    ap.add_argument("--only", default="", help="only the variants whose label contains this (the A/A check always runs)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    bin_dir = release_bins(args.no_build)
    work = tempfile.mkdtemp(prefix="tollgate-ab-")
    procs = []
    try:
        mock, mock_port = start_mock(bin_dir, work)
        procs.append(mock)
        configs = gateway_configs(mock_port)
        base, limits = configs["plain"], configs["limits"]
        # First a second plain gateway: what the method reads when there is no difference.
        variants = [("tollgate again (A/A check)", base, ()), ("+ auth + quotas (memory)", configs["auth"], ()),
                    ("+ token limits (memory)", limits, ()), ("+ concurrency limit (memory)", configs["concurrent"], ())]
        if redis_answers():
            ns = f"ab-{os.getpid()}"
            redis = ("--redis-url", "redis://127.0.0.1:6379", "--redis-namespace", ns)
            variants.append(("+ token limits (redis sync)", limits, redis))
            variants.append(("+ concurrency limit (redis sync)", configs["concurrent"], redis))
        models = os.path.join(ROOT, ".models")
        variants.append(("+ answer cache, exact hits", base + "\n[cache]\n", ("--models-dir", models)))
        if args.against_nginx:
            variants = variants[:1]
        elif args.only:
            variants = variants[:1] + [v for v in variants[1:] if args.only in v[0]]
        tollgate = os.path.join(bin_dir, "tollgate")
        plain = gateway(tollgate, work, base)
        procs.append(plain[0])
        chat = {"model": "gpt-4o-mini", "user": "user-42", "messages": [{"role": "user", "content": "Say hello in three words."}]}
        if args.stream:
            chat["stream"] = True
        body = json.dumps(chat)
        print(f"{'SSE' if args.stream else 'JSON'}, {args.rounds} rounds of {args.duration} s, oha -c {args.connections} "
              f"against each gateway at once, 1 proxy thread each, {os.cpu_count()} cores\n")
        print("| gateway | plain CPU µs/req | with the feature | feature over plain, median of rounds | range |")
        print("|---|---|---|---|---|")
        for label, text, extra in variants:
            feature = gateway(tollgate, work, text, extra)
            procs.append(feature[0])
            together(plain, feature, body, argparse.Namespace(duration=2, connections=args.connections), True)  # warm-up
            pairs = [together(plain, feature, body, args, r % 2 == 0) for r in range(args.rounds)]
            ratios = [f / p - 1 for p, f in pairs]
            print(f"| {label} | {statistics.median(p for p, _ in pairs):.1f} | {statistics.median(f for _, f in pairs):.1f} "
                  f"| **{statistics.median(ratios) * 100:+.1f}%** | {min(ratios) * 100:+.0f}…{max(ratios) * 100:+.0f}% |",
                  flush=True)
            feature[0].terminate()
            feature[0].wait(timeout=10)
        ng = start_nginx(work, mock_port, 1) if args.against_nginx else None
        if ng:
            procs.append(ng[0])
            ng = (ng[0], ng[1] + "/v1/chat/completions", ng[2])
            together(ng, plain, body, argparse.Namespace(duration=2, connections=args.connections), True)  # warm-up
            pairs = [together(ng, plain, body, args, r % 2 == 0) for r in range(args.rounds)]
            ratios = [t / n for n, t in pairs]
            print(f"\n| nginx CPU µs/req | Tollgate CPU µs/req | Tollgate over nginx, median of rounds | range |\n"
                  f"|---|---|---|---|\n| {statistics.median(n for n, _ in pairs):.1f} | "
                  f"{statistics.median(t for _, t in pairs):.1f} | **{statistics.median(ratios):.2f}×** | "
                  f"{min(ratios):.2f}…{max(ratios):.2f}× |")
    finally:
        stop(procs)


if __name__ == "__main__":
    sys.exit(main())
