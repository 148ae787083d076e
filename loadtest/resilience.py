#!/usr/bin/env python3
"""Model auto-switch under load: what clients see when one of a model's two targets fails.

Each scenario runs two gateways at the same moment, each loaded by its own oha at the same fixed
rate: the *faulty* one, whose model has a healthy target and a faulty one (both `tollgate-mock`s),
and a *control* whose two targets are both healthy. Side by side, the difference in p50/p99 is the
cost of the retries, whatever else the machine does. For the faulty gateway it also reads, from
its /metrics, the attempts each target had: every request has one first attempt, so the retries
are `attempts - requests`, checked against the model's retry budget over the run: `budget_ratio`
× requests + `budget_min_per_sec` × (the run's seconds + one 10 s window, as the sliding window
lets the floor of the window before the run's first one count too).

Faults, each with the default health policy (the faulty target gets ejected for a while after
5 failures in a row or a 50% error rate) and with ejection off (every request may meet the
fault; only the retry budgets hold the retries):
  errors-30    the faulty target answers 503 to 30% of requests;
  timeouts-30  it stalls 30% of requests past `timeouts.first_byte_ms` (200 ms);
  down-100     it answers 503 to every request.

Usage: python3 loadtest/resilience.py [--duration 20] [--rate 300] [--connections 32] [--stream] [--only NAME] [--no-build]
Needs oha.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, oha_cmd, release_bins, start_gateway, start_mock, stop, summarize  # noqa: E402

# Events per streamed answer (the mock's default, as in the recorded runs).
CHUNKS = 8
FAULTS = {
    "errors-30": ("503 to 30% of requests", ["--error-status", "503", "--error-rate", "0.3"]),
    "timeouts-30": ("30% stall 2 s before the header", ["--stall-ms", "2000", "--stall-rate", "0.3"]),
    "down-100": ("503 to every request", ["--error-status", "503", "--error-rate", "1"]),
}
HEALTH = {"": ("default health", ""), "-no-ejection": ("ejection off", "health = { failures = 0, error_rate = 1.0 }\n")}
SCENARIOS = {f"{fault}{suffix}": (f"{what}, {health}", fault_args, extra)
             for fault, (what, fault_args) in FAULTS.items() for suffix, (health, extra) in HEALTH.items()}


def config(ports, names, model_extra):
    text = ""
    for name, port in zip(names, ports):
        text += (f'[[providers]]\nname = "{name}"\nkind = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
                 f'api_key = "env:LOAD_PROVIDER_KEY"\n\n')
    targets = ", ".join(f'{{ provider = "{n}", model = "mock-model" }}' for n in names)
    return (text + f'[[models]]\nname = "gpt-4o-mini"\ntargets = [{targets}]\n'
            f'timeouts = {{ first_byte_ms = 200 }}\n' + model_extra)


def attempts(admin_port):
    """{(provider, outcome): count} of tollgate_upstream_attempts_total, and budget refusals."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    out = {}
    for m in re.finditer(r'^tollgate_upstream_attempts_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[(labels.get("provider"), labels.get("outcome"))] = float(m.group(2))
    spent = sum(float(v) for v in re.findall(r'^tollgate_retry_budget_exhausted_total\{[^}]*\} (\S+)$', text, re.M))
    return out, spent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--rate", type=int, default=300, help="requests per second to each gateway")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--stream", action="store_true", help="SSE answers instead of JSON")
    ap.add_argument("--only", default="", help="only the scenarios whose name contains this")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not shutil.which("oha"):
        raise SystemExit("oha not found: cargo install oha --locked")
    bin_dir = release_bins(args.no_build)
    tollgate = os.path.join(bin_dir, "tollgate")
    work = tempfile.mkdtemp(prefix="tollgate-resilience-")
    chat = {"model": "gpt-4o-mini", "user": "user-42", "messages": [{"role": "user", "content": "Say hello in three words."}]}
    if args.stream:
        chat["stream"] = True
    body = json.dumps(chat)
    print(f"{'SSE' if args.stream else 'JSON'}, {args.duration} s at {args.rate} req/s (oha -q, -c {args.connections}) "
          f"to each gateway at once, 1 proxy thread each, {os.cpu_count()} cores; retry budget: "
          f"0.2 × requests + 10/s × (run + 10 s)\n")
    print("| scenario | faulty: success | p50 | p99 | control: p50 | p99 | retries (% of requests) | "
          "retry budget | refused by the budget | attempts on the faulty target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (what, faulty_args, model_extra) in SCENARIOS.items():
        if args.only and args.only not in name:
            continue
        procs = []
        try:
            good, gp = start_mock(bin_dir, work, CHUNKS, "healthy")
            bad, bp = start_mock(bin_dir, work, CHUNKS, "faulty", faulty_args)
            c1, cp1 = start_mock(bin_dir, work, CHUNKS, "control-a")
            c2, cp2 = start_mock(bin_dir, work, CHUNKS, "control-b")
            procs += [good, bad, c1, c2]
            admin = free_port()
            faulty = start_gateway(tollgate, work, config([gp, bp], ["healthy", "faulty"], model_extra), admin_port=admin)
            control = start_gateway(tollgate, work, config([cp1, cp2], ["control-a", "control-b"], model_extra))
            procs += [faulty[0], control[0]]
            before, spent_before = attempts(admin)
            runs = [subprocess.Popen(oha_cmd(url + "/v1/chat/completions", body, args.duration, args.connections, args.rate),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _, url in (faulty, control)]
            outs = []
            for run in runs:
                out, err = run.communicate()
                if run.returncode != 0:
                    raise SystemExit(f"oha failed: {err}")
                outs.append(summarize(json.loads(out)))
            time.sleep(0.5)
            after, spent_after = attempts(admin)
            f, c = outs
            made = sum(after.values()) - sum(before.values())
            on_faulty = sum(v - before.get(k, 0) for k, v in after.items() if k[0] == "faulty")
            retries = made - f["total"]
            budget = 0.2 * f["total"] + 10 * (args.duration + 10)
            print(f"| {name}: {what} | **{f['ok'] / f['total'] * 100:.2f}%** ({f['total'] - f['ok']} of {f['total']} failed) "
                  f"| {f['p50_ms']:.1f} ms | {f['p99_ms']:.1f} ms | {c['p50_ms']:.1f} ms | {c['p99_ms']:.1f} ms "
                  f"| {retries:.0f} ({retries / f['total'] * 100:.1f}%) | {budget:.0f} | {spent_after - spent_before:.0f} "
                  f"| {on_faulty:.0f} |", flush=True)
        finally:
            stop(procs)


if __name__ == "__main__":
    sys.exit(main())
