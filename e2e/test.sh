#!/usr/bin/env bash
# Every test of the project: formatting, lints, unit tests, and the tests against the
# real control plane, vpc-sim, moto and network namespaces. Needs root (namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eni-operator/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
start=$(date +%s)
cargo fmt --all --check
# No import circle between the operator's top-level modules.
python3 .ci/check-imports operator/src
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every binary of the workspace, built the way the demo and the tests build them
# (eni_e2e::cluster::workspace_bins), so a build failure shows here.
cargo build --locked --workspace --bins
# The images the real-node trials install with Helm, from those same binaries (users
# build release images with images/build.sh; CI does not compile everything twice).
bash images/build.sh --profile dev
# Every test target runs even after one fails, so one run reports every failure.
cargo test --workspace --locked --no-fail-fast
echo "test.sh: all tests passed in $(( $(date +%s) - start ))s"
