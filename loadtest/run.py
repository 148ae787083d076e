#!/usr/bin/env python3
"""Load-test runner: direct-to-mock vs through Tollgate vs through nginx, in one sitting.

Builds release binaries, starts the mock upstream, Tollgate and (when installed) nginx on free
ports, drives each with oha, and prints one table per scenario:

  - JSON and SSE (a burst stream of --chunks events) at full load: requests/s, p50, p99, and the
    CPU time the proxy process spent per request (utime+stime from /proc; the figure that stays
    stable on a shared machine);
  - JSON at a fixed rate (default 1000 req/s): p50 and p99, and the latency each proxy adds over
    going direct.

With --repeat N, every full-load measurement is taken N times, the targets interleaved (all
targets once, then all again…), and each cell is the median, the CPU column with its range:
between two runs on a shared 2-core machine one row moves by up to ~10%. Each feature row also
gets the median over rounds of its CPU relative to the plain gateway's in the same round.

Usage: python3 loadtest/run.py [--duration 10] [--connections 32] [--rate 1000] [--threads 1] [--repeat 1]
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Every target gets the same requests, with the key an OpenAI client always sends: the gateway
# with consumers checks it, the others replace it with the provider's (nginx, plain Tollgate) or
# ignore it (the mock). A row's difference to another is then the proxy's work only.
KEY = "tg-loadtest-key-0000000000000000000000000001"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers():
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_http(url, timeout=20, any_status=False):
    """Wait until `url` answers 2xx (any status with `any_status`: a mock injecting errors)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            if any_status:
                return
            time.sleep(0.1)
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"not answering: {url}")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def nginx_pids(master):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return [master] + [int(p) for p in out.split()]


def oha_cmd(url, body, duration, connections, rate=None):
    cmd = [
        "oha", "--no-tui", "--output-format", "json", "-z", f"{duration}s", "-c", str(connections),
        "-m", "POST", "-H", "content-type: application/json", "-H", f"authorization: Bearer {KEY}", "-d", body,
    ]
    if rate:
        cmd += ["-q", str(rate)]
    return cmd + [url]


def oha(url, body, duration, connections, rate=None):
    out = subprocess.run(oha_cmd(url, body, duration, connections, rate), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"oha failed: {out.stderr}")
    return json.loads(out.stdout)


def summarize(report):
    summary = report["summary"]
    pct = report.get("latencyPercentiles", {})
    statuses = report.get("statusCodeDistribution", {})
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    total = sum(statuses.values())
    return {
        "rps": summary["requestsPerSec"],
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "ok": ok,
        "total": total,
    }


def start(cmd, log_path, env=None):
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=os.setsid)


def gateway_configs(mock_port):
    """The gateways compared, as config text: `plain` (one model on the mock); `auth`, the same
    with a consumer (key check, model allow-list, parameter rules, a per-user daily quota high
    enough never to refuse); `limits`, the same with a token limit and a request limit per user
    (high enough never to refuse: prompt counted, prompt + completion reserved, reconciled with
    the usage); `concurrent`, the same with a concurrency limit per user (a slot taken at
    admission and given back at the end; high enough never to refuse)."""
    plain = (f'[[providers]]\nname = "mock"\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
             f'api_key = "env:LOAD_PROVIDER_KEY"\n\n[[models]]\nname = "gpt-4o-mini"\n'
             f'targets = [{{ provider = "mock", model = "mock-model" }}]\n')
    key_hash = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
    auth = plain + f"""
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
    limits = plain + """
[[limits]]
name = "tpm-per-user"
by = ["user"]
tokens = 1000000000000
requests = 1000000000
per = "minute"
"""
    concurrent = plain + """
[[limits]]
name = "in-flight-per-user"
by = ["user"]
concurrent = 1000000
"""
    return {"plain": plain, "auth": auth, "limits": limits, "concurrent": concurrent}


def start_gateway(tollgate, work, text, threads=1, extra=(), wrapper=(), timeout=20, admin_port=None):
    """Tollgate (its binary run under `wrapper`, e.g. valgrind) with config `text` on free ports
    (the admin listener on `admin_port` when given); (process, base URL) once it answers."""
    port = free_port()
    cfg = os.path.join(work, f"tollgate-{port}.toml")
    with open(cfg, "w") as f:
        f.write(text)
    env = dict(os.environ, LOAD_PROVIDER_KEY="sk-load")
    p = start([*wrapper, tollgate, "--config", cfg, "--listen", f"127.0.0.1:{port}",
               "--admin-listen", f"127.0.0.1:{admin_port or free_port()}", "--threads", str(threads), "--config-poll-ms", "0",
               "--shutdown-grace-secs", "1", "--key-store-file", cfg + ".keys.json", *extra], cfg + ".log", env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout)
    except BaseException:
        p.terminate()
        raise
    return p, f"http://127.0.0.1:{port}"


# How every nginx compared here proxies: to the mock, upstream keep-alive, no buffering, the
# provider key set as Tollgate sets it.
NGINX_LOCATION = """location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer sk-load";
      proxy_buffering off;
      client_max_body_size 32m;
    }"""


def nginx_config(work, workers, mock_port, listens):
    """Write `work`/nginx.conf: `workers` worker processes, access log on, the mock on `mock_port`
    as a keep-alive upstream, one server per entry of `listens` (its `listen` and other
    directives) proxying with NGINX_LOCATION. Returns its path."""
    servers = "\n".join(f"  server {{\n    {listen}\n    {NGINX_LOCATION}\n  }}" for listen in listens)
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 256; }}
{servers}
}}
""")
    return conf


def start_nginx(work, mock_port, workers):
    """nginx in front of the mock (upstream keep-alive, no buffering, access log on), if installed:
    (process, base URL, a function giving its processes' pids), else None."""
    nginx = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx")
    if not nginx:
        return None
    port = free_port()
    conf = nginx_config(work, workers, mock_port, [f"listen 127.0.0.1:{port};"])
    ng = start([nginx, "-c", conf, "-p", work], os.path.join(work, "nginx.log"))
    wait_http(f"http://127.0.0.1:{port}/v1/models")
    return ng, f"http://127.0.0.1:{port}", lambda: nginx_pids(ng.pid)


def release_bins(no_build):
    """The directory of the release binaries, built first unless `no_build`."""
    if not no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "tollgate", "-p", "tollgate-loadtest"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release")


def start_mock(bin_dir, work, chunks=16, name="mock", extra=()):
    """`tollgate-mock` named `name` on a free port, one thread, with `extra` flags (error
    injection, say); (process, port) once it answers."""
    port = free_port()
    p = start([os.path.join(bin_dir, "tollgate-mock"), "--listen", f"127.0.0.1:{port}", "--threads", "1",
               "--chunks", str(chunks), "--name", name, *extra], os.path.join(work, f"{name}-{port}.log"))
    wait_http(f"http://127.0.0.1:{port}/v1/models", any_status=bool(extra))
    return p, port


def stop(procs):
    """Stop the processes still running, and wait for them."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="worker threads of Tollgate and nginx workers")
    ap.add_argument("--chunks", type=int, default=16, help="events per streamed answer")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="full-load runs per target, interleaved; cells are medians")
    args = ap.parse_args()

    if not shutil.which("oha"):
        raise SystemExit("oha not found: cargo install oha --locked")
    bin_dir = release_bins(args.no_build)
    work = tempfile.mkdtemp(prefix="tollgate-load-")
    procs = []

    try:
        mock, mock_port = start_mock(bin_dir, work, args.chunks)
        procs.append(mock)

        configs = gateway_configs(mock_port)
        tollgate = os.path.join(bin_dir, "tollgate")
        gw, gw_url = start_gateway(tollgate, work, configs["plain"], args.threads)
        procs.append(gw)
        targets = [("direct (mock)", f"http://127.0.0.1:{mock_port}", lambda: [])]
        targets.append(("tollgate", gw_url, lambda: [gw.pid]))

        # The consumer's counts in memory, then in the local Redis (under a consumer name of its
        # own); the limits' buckets in memory, then shared through Redis in `sync` mode.
        redis_prefix = f"load-{os.getpid()}-{int(time.time())}"
        auth_redis = configs["auth"].replace('name = "load"', f'name = "{redis_prefix}"')
        redis = ["--redis-url", "redis://127.0.0.1:6379"]
        variants = (
            ("tollgate + auth + quotas (memory)", configs["auth"], []),
            ("tollgate + auth + quotas (redis)", auth_redis, redis),
            ("tollgate + token limits (memory)", configs["limits"], []),
            ("tollgate + token limits (redis sync)", configs["limits"], redis + ["--limits-namespace", redis_prefix]),
        )
        for label, text, extra in variants:
            if extra and not redis_answers():
                print(f"(skipping '{label}': no redis on 127.0.0.1:6379)")
                continue
            p, url = start_gateway(tollgate, work, text, args.threads, extra)
            procs.append(p)
            targets.append((label, url, (lambda p=p: [p.pid])))
        ng = start_nginx(work, mock_port, args.threads)
        if ng:
            procs.append(ng[0])
            targets.append(("nginx", ng[1], ng[2]))

        chat = {"model": "gpt-4o-mini", "user": "user-42", "messages": [{"role": "user", "content": "Say hello in three words."}]}
        bodies = {
            "json": json.dumps(chat),
            f"sse ({args.chunks} events, burst)": json.dumps(dict(chat, stream=True)),
        }
        print(f"machine: {os.cpu_count()} cores; oha -c {args.connections} -z {args.duration}s; "
              f"proxy threads/workers: {args.threads}\n")
        for scenario, body in bodies.items():
            runs = {name: [] for name, _, _ in targets}
            for _ in range(args.repeat):
                for name, base, pids in targets:
                    oha(base + "/v1/chat/completions", body, 2, args.connections)  # warm-up
                    before = cpu_seconds(pids())
                    s = summarize(oha(base + "/v1/chat/completions", body, args.duration, args.connections))
                    used = cpu_seconds(pids()) - before
                    s["cpu"] = used / s["total"] * 1e6 if pids() and s["total"] else None
                    runs[name].append(s)
            print(f"## {scenario}, full load" + (f" (median of {args.repeat} runs)" if args.repeat > 1 else ""))
            print("| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | vs tollgate, per round | ok/total |")
            print("|---|---|---|---|---|---|---|")
            plain = [r["cpu"] for r in runs["tollgate"]]
            for name, _, _ in targets:
                rs = runs[name]
                med = lambda k: statistics.median(r[k] for r in rs)
                cpus = [r["cpu"] for r in rs if r["cpu"] is not None]
                cpu = "-"
                if cpus:
                    cpu = f"{statistics.median(cpus):.1f}"
                    if len(cpus) > 1:
                        cpu += f" ({min(cpus):.1f}–{max(cpus):.1f})"
                # Each round's CPU over the plain gateway's in the same round: the machine's
                # speed drifts between rounds, and this ratio drifts less than either figure.
                ratios = [r["cpu"] / p - 1 for r, p in zip(rs, plain) if r["cpu"] and p]
                vs = "-"
                if ratios and name.startswith("tollgate +"):
                    vs = f"{statistics.median(ratios) * 100:+.1f}%"
                    if len(ratios) > 1:
                        vs += f" ({min(ratios) * 100:+.0f}…{max(ratios) * 100:+.0f}%)"
                ok, total = sum(r["ok"] for r in rs), sum(r["total"] for r in rs)
                print(f"| {name} | {med('rps'):.0f} | {med('p50_ms'):.3f} | {med('p99_ms'):.3f} | {cpu} | {vs} | {ok}/{total} |")
            print()

        print(f"## json at a fixed {args.rate} req/s")
        print("| target | p50 ms | p99 ms | added p50 ms | proxy CPU µs/req |")
        print("|---|---|---|---|---|")
        direct_p50 = None
        for name, base, pids in targets:
            before = cpu_seconds(pids())
            s = summarize(oha(base + "/v1/chat/completions", bodies["json"], args.duration, 16, rate=args.rate))
            used = cpu_seconds(pids()) - before
            cpu = f"{used / s['total'] * 1e6:.1f}" if pids() and s["total"] else "-"
            if direct_p50 is None:
                direct_p50 = s["p50_ms"]
                added = "-"
            else:
                added = f"{s['p50_ms'] - direct_p50:.3f}"
            print(f"| {name} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {added} | {cpu} |")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
