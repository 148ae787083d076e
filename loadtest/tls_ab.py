#!/usr/bin/env python3
"""CPU per request of Tollgate and nginx over plain HTTP, HTTPS with HTTP/1.1, HTTPS with HTTP/2
and h2c, each protocol loaded on both proxies at the same moment.

Both proxies sit in front of the same mock (`tollgate-mock`, one thread), with one worker each;
both serve the test certificate (`proxy/tests/fixtures/server.pem`, ECDSA P-256) with TLS 1.2/1.3.
Each round loads one protocol on Tollgate and on nginx at once with `h2load` (Debian package
`nghttp2-client`; same connections, same duration, one request in flight per connection), and
reads each process's CPU time from /proc. The figure per protocol is the median over rounds of CPU
microseconds per request, and of Tollgate's over nginx's. The machine's drift hits both sides
of a round alike.

Usage: python3 loadtest/tls_ab.py [--rounds 5] [--duration 5] [--connections 16] [--no-build]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (ROOT, cpu_seconds, free_port, gateway_configs, nginx_config, nginx_pids, release_bins, start,  # noqa: E402
                 start_mock, wait_http)

CERT = os.path.join(ROOT, "proxy", "tests", "fixtures", "server.pem")
KEY = os.path.join(ROOT, "proxy", "tests", "fixtures", "server.key")
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'

# (name, which listener: plain or tls, h2load flags)
PROTOCOLS = [
    ("http/1.1", "plain", ["--h1"]),
    ("https http/1.1", "tls", ["--h1"]),
    ("https h2", "tls", []),
    ("h2c", "h2c", []),
]


def start_tollgate(tollgate, work, mock_port):
    """Tollgate with a plain listener (h2c on) and a TLS listener; (process, ports by kind)."""
    plain, tls = free_port(), free_port()
    cfg = os.path.join(work, "tollgate.toml")
    with open(cfg, "w") as f:
        f.write(gateway_configs(mock_port)["plain"])
    env = dict(os.environ, LOAD_PROVIDER_KEY="sk-load")
    p = start([tollgate, "--config", cfg, "--listen", f"127.0.0.1:{plain}", "--admin-listen", f"127.0.0.1:{free_port()}",
               "--threads", "1", "--config-poll-ms", "0", "--shutdown-grace-secs", "1", "--h2c", "true",
               "--tls-listen", f"127.0.0.1:{tls}", "--tls-cert", CERT, "--tls-key", KEY,
               "--key-store-file", cfg + ".keys.json"], cfg + ".log", env)
    wait_http(f"http://127.0.0.1:{plain}/healthz")
    return p, {"plain": f"http://127.0.0.1:{plain}", "h2c": f"http://127.0.0.1:{plain}",
               "tls": f"https://127.0.0.1:{tls}"}


def start_nginx(work, mock_port):
    """nginx, one worker, in front of the mock: plain HTTP/1.1, h2c, and TLS with HTTP/2 by ALPN."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    plain, h2c, tls = free_port(), free_port(), free_port()
    conf = nginx_config(work, 1, mock_port, [
        f"listen 127.0.0.1:{plain};",
        f"listen 127.0.0.1:{h2c} http2;",
        f"listen 127.0.0.1:{tls} ssl http2; ssl_certificate {CERT}; ssl_certificate_key {KEY}; "
        "ssl_protocols TLSv1.2 TLSv1.3;",
    ])
    ng = start([nginx, "-c", conf, "-p", work], os.path.join(work, "nginx.log"))
    wait_http(f"http://127.0.0.1:{plain}/v1/models")
    return ng, {"plain": f"http://127.0.0.1:{plain}", "h2c": f"http://127.0.0.1:{h2c}",
                "tls": f"https://127.0.0.1:{tls}"}


def h2load_cmd(url, flags, body_file, args):
    return ["h2load", "-D", str(args.duration), "-c", str(args.connections), "-m", "1", "-t", "1",
            "-H", "content-type: application/json", "-d", body_file, *flags, url + "/v1/chat/completions"]


def succeeded(out):
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    if not m:
        raise SystemExit(f"cannot read h2load's output:\n{out}")
    if int(m.group(2)):
        raise SystemExit(f"{m.group(2)} requests failed:\n{out}")
    return int(m.group(1))


def together(sides, kind, flags, body_file, args):
    """Load both sides (name, urls, pids function) at once; CPU µs per request of each."""
    before = [cpu_seconds(pids()) for _, _, pids in sides]
    runs = [subprocess.Popen(h2load_cmd(urls[kind], flags, body_file, args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _, urls, _ in sides]
    out = [r.communicate()[0] for r in runs]
    return [(cpu_seconds(pids()) - b) / succeeded(o) * 1e6 for (_, _, pids), b, o in zip(sides, before, out)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("h2load not found: apt-get install nghttp2-client")
    bins = release_bins(args.no_build)
    work = tempfile.mkdtemp(prefix="tollgate-tls-ab-")
    body_file = os.path.join(work, "body.json")
    with open(body_file, "wb") as f:
        f.write(BODY)
    procs = []
    try:
        mock, mock_port = start_mock(bins, work)
        procs.append(mock)
        tg, tg_urls = start_tollgate(os.path.join(bins, "tollgate"), work, mock_port)
        procs.append(tg)
        ng, ng_urls = start_nginx(work, mock_port)
        procs.append(ng)
        sides = [("tollgate", tg_urls, lambda: [tg.pid]), ("nginx", ng_urls, lambda: nginx_pids(ng.pid))]
        rows = {name: ([], [], []) for name, _, _ in PROTOCOLS}
        for r in range(args.rounds):
            for name, kind, flags in PROTOCOLS:
                order = sides if r % 2 == 0 else sides[::-1]
                got = together(order, kind, flags, body_file, args)
                t, n = (got[0], got[1]) if r % 2 == 0 else (got[1], got[0])
                rows[name][0].append(t)
                rows[name][1].append(n)
                rows[name][2].append(t / n)
        print(f"{'protocol':<16} {'tollgate µs/req':>16} {'nginx µs/req':>13} {'tollgate/nginx':>15}")
        for name, (t, n, ratio) in rows.items():
            print(f"{name:<16} {statistics.median(t):>16.1f} {statistics.median(n):>13.1f} {statistics.median(ratio):>15.2f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
