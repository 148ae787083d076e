#!/usr/bin/env bash
# Runs the gateway on examples/quickstart.toml in front of the bundled mock upstream, so a
# newcomer can follow README.md's tour with no provider access. Ctrl-C stops both.
# QUICKSTART_CONFIG=examples/semantic.toml runs the semantic cache's example instead;
# QUICKSTART_CONFIG=examples/guardrails.toml the content safety one;
# QUICKSTART_CONFIG=examples/search.toml search grounding over examples/kb/.
# The admin token lives in .quickstart/admin-token (made once, git-ignored); run-time keys in
# .quickstart/keys.json.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p tollgate -p tollgate-loadtest
mkdir -p .quickstart
if [ ! -s .quickstart/admin-token ]; then
  (umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' >.quickstart/admin-token)
fi
TOLLGATE_ADMIN_TOKEN="$(cat .quickstart/admin-token)"
export TOLLGATE_ADMIN_TOKEN
./target/release/tollgate-mock --listen 127.0.0.1:9000 --chunks 16 --chunk-delay-ms 40 &
MOCK=$!
trap 'kill $MOCK 2>/dev/null || true' EXIT
cat <<TEXT
tollgate: http://127.0.0.1:8080 (admin and metrics: http://127.0.0.1:9090)
admin token: ${TOLLGATE_ADMIN_TOKEN} (kept in .quickstart/admin-token)
In another terminal, from $(pwd):
  export OPENAI_BASE_URL=http://localhost:8080/v1 OPENAI_API_KEY=tg-quickstart-demo-key
  export ADMIN_TOKEN=\$(cat .quickstart/admin-token)
TEXT
./target/release/tollgate --config "${QUICKSTART_CONFIG:-examples/quickstart.toml}" --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 \
  --key-store-file .quickstart/keys.json --log-format text "$@"
