#!/usr/bin/env bash
# Fuzz the parsers of untrusted bytes (proxy/fuzz, cargo-fuzz on the nightly toolchain).
#   scripts/fuzz.sh                 # every target for 10 seconds (what CI runs), from the committed corpus
#   scripts/fuzz.sh 600             # every target for 600 seconds
#   scripts/fuzz.sh 0 10000000      # every target for 10M executions
# A crash or hang stops the script with libFuzzer's report and the input under proxy/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../proxy"
seconds="${1:-10}"
runs="${2:-0}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
targets=(sse_chain request_body json_spans config guard search_results)
cargo +nightly fuzz build -O --debug-assertions
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  limit=(-max_total_time="$seconds")
  if [ "$runs" != "0" ]; then limit=(-runs="$runs"); fi
  echo "fuzz: $t"
  log="$(mktemp)"
  rc=0
  cargo +nightly fuzz run -O --debug-assertions "$t" "fuzz/corpus/$t" -- "${limit[@]}" -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $t failed (rc $rc)" >&2
    exit 1
  fi
  rm -f "$log"
done
