#!/usr/bin/env bash
# Runs the gateway on examples/quickstart.toml in front of the bundled mock upstream, so a
# newcomer can curl a chat completion and a stream with no provider access. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p tollgate -p tollgate-loadtest
./target/release/tollgate-mock --listen 127.0.0.1:9000 --chunks 16 --chunk-delay-ms 40 &
MOCK=$!
trap 'kill $MOCK 2>/dev/null || true' EXIT
echo "tollgate: http://127.0.0.1:8080 (admin and metrics: http://127.0.0.1:9090)"
./target/release/tollgate --config examples/quickstart.toml --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 --log-format text "$@"
