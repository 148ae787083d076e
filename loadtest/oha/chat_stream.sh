#!/usr/bin/env bash
# Streaming load with oha (each request reads the whole SSE stream): ./loadtest/oha/chat_stream.sh [BASE] [oha flags...]
set -euo pipefail
BASE="${1:-http://127.0.0.1:8080}"; shift || true
if [ $# -eq 0 ]; then set -- -z 10s -c 32; fi
exec oha -m POST -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Count to twenty."}]}' \
  "$@" "$BASE/v1/chat/completions"
