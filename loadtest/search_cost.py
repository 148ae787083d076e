#!/usr/bin/env python3
"""What search adds to a request, phase by phase, with local engines.

One gateway (release build) in front of `tollgate-mock` (the model and the planner) with three
engines: SearXNG and arXiv stand-ins (`tollgate-engines`, a generated corpus whose results are
~20 KB HTML pages it also serves) and the embedded knowledge base (a generated
folder of Markdown documents). Requests go one at a time, alternating the same question with
search (`chat:online`) and without (`chat`), so both sides meet the same machine at the same
moment. The gateway's own access lines give each request's latency and the search stage's
phases: planner call, engines, page reads, ranking and fitting.

Setups: `planned` (the planner, the mock here, answers at once: its phase is the gateway's
cost of the call, not a real model's thinking), `unplanned` (the question goes to every
engine), and `planned+rerank` / `planned+rerank-minilm` (passages also ranked by meaning,
`[search.rerank]` with the default multilingual embedder or all-MiniLM-L6-v2; the embedding is
its own column). Engine answers are not cached (`cache_ttl_seconds = 0`): every request pays in
full.

Usage: python3 loadtest/search_cost.py [--requests 300] [--kb-docs 2000] [--setups planned,...] [--no-build]
"""

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, release_bins, start, start_gateway, start_mock, stop, wait_http  # noqa: E402

SYLLABLES = ["ka", "lo", "mi", "ra", "te", "zu", "no", "shi", "va", "pe", "dor", "glin"]


def word(n):
    return SYLLABLES[n % 12] + SYLLABLES[(n // 12) % 12] + SYLLABLES[(n // 144) % 12]


def knowledge_base(folder, docs):
    """`docs` Markdown documents of made-up words, about 300 words each (deterministic)."""
    os.makedirs(folder, exist_ok=True)
    x = 12345
    for i in range(docs):
        words = []
        for _ in range(300):
            x = (x * 1103515245 + 12345) % (1 << 31)
            words.append(word(x % 1728))
        with open(os.path.join(folder, f"doc-{i:05d}.md"), "w") as f:
            f.write(f"# {words[0]} {words[1]}\n\n" + " ".join(words) + ".\n")


SETUPS = ("planned", "unplanned", "planned+rerank", "planned+rerank-minilm")


def config(mock_port, engines_port, kb, setup):
    planner = 'planner = { model = "planner" }' if setup.startswith("planned") else ""
    if setup.endswith("+rerank"):
        planner += "\nrerank = { top = 16 }"
    elif setup.endswith("+rerank-minilm"):
        planner += '\nrerank = { top = 16, embedder = "all-minilm-l6-v2", wait_ms = 1000 }'
    return f"""
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[[models]]
name = "chat"
tokenizer = "o200k"
targets = [{{ provider = "mock" }}]

[[models]]
name = "planner"
targets = [{{ provider = "mock" }}]

[search]
models = ["chat"]
cache_ttl_seconds = 0
{planner}
fetch = {{ pages = 2, allow_private = true }}
engines = [
  {{ name = "web", kind = "searxng", url = "http://127.0.0.1:{engines_port}/searxng/search" }},
  {{ name = "papers", kind = "arxiv", url = "http://127.0.0.1:{engines_port}/arxiv/api/query" }},
  {{ name = "kb", kind = "local", docs = "{kb}" }},
]
"""


def post(base, model, question):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": question}]}).encode()
    req = urllib.request.Request(f"{base}/v1/chat/completions", body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return r.headers.get("x-tollgate-search")


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def access_lines(log):
    out = []
    with open(log) as f:
        for line in f:
            if '"message":"access"' in line:
                out.append(json.loads(line))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300, help="requests with search (as many without)")
    ap.add_argument("--kb-docs", type=int, default=2000)
    ap.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    bins = release_bins(args.no_build)
    work = tempfile.mkdtemp(prefix="tollgate-search-cost-")
    kb = os.path.join(work, "kb")
    knowledge_base(kb, args.kb_docs)
    procs = []
    try:
        mock, mock_port = start_mock(bins, work, chunks=8)
        procs.append(mock)
        engines_port = free_port()
        procs.append(start([os.path.join(bins, "tollgate-engines"), "--listen", f"127.0.0.1:{engines_port}"],
                           os.path.join(work, "engines.log")))
        wait_http(f"http://127.0.0.1:{engines_port}/questions")
        with urllib.request.urlopen(f"http://127.0.0.1:{engines_port}/questions") as r:
            questions = json.load(r)
        print(f"machine: {os.cpu_count()} cores; {len(questions)} questions; kb {args.kb_docs} docs; "
              f"{args.requests} requests with search and as many without, one at a time", flush=True)
        rows = []
        models = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".models")
        for setup in args.setups.split(","):
            gw, base = start_gateway(os.path.join(bins, "tollgate"), work, config(mock_port, engines_port, kb, setup),
                                     extra=("--log-format", "json", "--models-dir", models), timeout=120)
            procs.append(gw)
            for i in range(20):  # warm-up: connections, the index's first reads
                post(base, "chat:online", questions[i % len(questions)])
            time.sleep(0.5)
            log = gw.args[gw.args.index("--config") + 1] + ".log"
            skip = len(access_lines(log))
            statuses = {}
            for i in range(args.requests):
                q = questions[(i * 7) % len(questions)]
                s = post(base, "chat:online", q)
                statuses[s] = statuses.get(s, 0) + 1
                post(base, "chat", q)
            time.sleep(0.5)
            lines = access_lines(log)[skip:]
            online = [l for l in lines if "search" in l]
            plain = [l for l in lines if "search" not in l and l.get("model") == "chat"]
            phase = lambda key: [l["search"].get(key, 0.0) for l in online]  # noqa: E731
            planner = [l["search"]["planner"]["ms"] for l in online if "planner" in l["search"]]
            cols = {
                "latency without search": [l["latency_ms"] for l in plain],
                "latency with search": [l["latency_ms"] for l in online],
                "search stage": phase("ms"),
                "planner call": planner,
                "engines": phase("engines_ms"),
                "page reads": phase("pages_ms"),
                "rank + fit": phase("rank_ms"),
                "of which embedding": [l["search"]["rerank_ms"] for l in online if "rerank_ms" in l["search"]],
            }
            reranks = {}
            for l in online:
                if "rerank" in l["search"]:
                    reranks[l["search"]["rerank"]] = reranks.get(l["search"]["rerank"], 0) + 1
            print(f"\n{setup}: x-tollgate-search {statuses}; rerank {reranks}; passages p50 {pct([l['search']['passages'] for l in online], 50)}, "
                  f"tokens added p50 {pct([l['search']['tokens_added'] for l in online], 50)}")
            print("| | p50 ms | p99 ms |\n|---|---|---|")
            for name, values in cols.items():
                if values:
                    print(f"| {name} | {pct(values, 50):.2f} | {pct(values, 99):.2f} |")
            rows.append((setup, cols))
            stop([gw])
            procs.remove(gw)
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
