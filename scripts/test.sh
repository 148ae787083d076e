#!/usr/bin/env bash
# The test command: sets up the machine, then runs every test of the workspace (debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace "$@"
