#!/usr/bin/env bash
# The demo on the embedded simulator: see README.md. Extra arguments go to eni-demo
# (e.g. --once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eni-operator/target}"
exec cargo run --quiet -p eni-e2e --bin eni-demo -- "$@"
