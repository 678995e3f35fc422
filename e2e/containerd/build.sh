#!/usr/bin/env bash
# Builds containerd, its runc shim and ctr (for real nodes in the test bed) into a
# per-version cache, in one `go install` pass, and prints the cache directory. Plain
# `go install` works here: containerd's module has no local replaces.
set -euo pipefail
VERSION="${CONTAINERD_VERSION:-$(cat "$(dirname "$0")/VERSION")}"
CACHE="${ENI_OPERATOR_CACHE:-$HOME/.cache/eni-operator}/containerd/$VERSION"
BINS=(containerd containerd-shim-runc-v2 ctr)
built() { for b in "${BINS[@]}"; do [ -x "$CACHE/$b" ] || return 1; done; }
if built; then echo "$CACHE"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if built; then echo "$CACHE"; exit 0; fi
pkgs=()
for b in "${BINS[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b@$VERSION"); done
# The version string is what `containerd --version` and the CRI version answer report.
GOBIN="$CACHE" go install -trimpath \
  -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$VERSION" "${pkgs[@]}" >&2
echo "$CACHE"
