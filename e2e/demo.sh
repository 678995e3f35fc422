#!/usr/bin/env bash
# The demo on the embedded simulator: see README.md. Extra arguments go to eni-demo:
# --once exits when done; --real-nodes runs the nodes as real kubelet + containerd and
# installs the chart with helm from images built here.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --real-nodes "*) bash e2e/setup.sh real-demo ;; *) bash e2e/setup.sh demo ;; esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eni-operator/target}"
# One build for every binary of the workspace (the demo and the product binaries it
# starts), with the selection the tests use too: another selection unifies dependency
# features differently and compiles the heavy crates again. Cargo prints its progress.
echo "demo: building the workspace's binaries (the first time takes minutes; later runs only what changed)" >&2
cargo build --locked --workspace --bins
exec "$CARGO_TARGET_DIR/debug/eni-demo" "$@"
