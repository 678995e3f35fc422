#!/usr/bin/env bash
# The demo on the embedded simulator: see README.md. Extra arguments go to eni-demo
# (e.g. --once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/setup.sh demo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eni-operator/target}"
# One build for every binary of the workspace (the demo and the product binaries it
# starts), with the selection the tests use too: another selection unifies dependency
# features differently and compiles the heavy crates again. Cargo prints its progress.
echo "demo: building the workspace's binaries (the first time takes minutes; later runs only what changed)" >&2
cargo build --locked --workspace --bins
exec "$CARGO_TARGET_DIR/debug/eni-demo" "$@"
