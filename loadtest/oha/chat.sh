#!/usr/bin/env bash
# Non-streaming load with oha: ./loadtest/oha/chat.sh [BASE] [extra oha flags...]
# e.g. ./loadtest/oha/chat.sh http://127.0.0.1:8080 -z 30s -c 64     (or -q 1000 for a fixed rate)
set -euo pipefail
BASE="${1:-http://127.0.0.1:8080}"; shift || true
if [ $# -eq 0 ]; then set -- -z 10s -c 32; fi
exec oha -m POST -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in three words."}]}' \
  "$@" "$BASE/v1/chat/completions"
