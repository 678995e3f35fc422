#!/usr/bin/env bash
# Builds the eni-operator and eni-agent container images from this checkout, without a
# container daemon: release binaries, then reproducible OCI layout tars (one per image)
# and <out>/images.json. Optionally pushes them to a registry.
#
#   images/build.sh [--version V] [--push REGISTRY/PREFIX] [--insecure] [--profile P]
#
# --profile dev packs the debug binaries of the workspace build the tests and the demo
# share (`cargo build --workspace --bins`) instead of compiling everything again in
# release: CI uses it. The chained plugins (portmap, bandwidth) are the reference plugins
# built with Go for CNI spec 1.1 (STATUS, GC); without Go, Debian's (spec 1.0) are used.
#
# CARGO_TARGET_DIR (default ~/.cache/eni-operator/target) and ENI_IMAGES_DIR (default
# <target>/images) choose where things go; SOURCE_DATE_EPOCH overrides the commit time
# used for every timestamp; ENI_REGISTRY_USERNAME / ENI_REGISTRY_PASSWORD log in to the
# registry (anonymous when unset).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

image_args=()
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --version|--push)
      [ $# -ge 2 ] || { echo "build.sh: $1 needs a value" >&2; exit 2; }
      image_args+=("$1" "$2"); shift 2 ;;
    --insecure)
      image_args+=("$1"); shift ;;
    --profile)
      [ $# -ge 2 ] || { echo "build.sh: $1 needs a value" >&2; exit 2; }
      case "$2" in dev|release) profile="$2" ;; *) echo "build.sh: --profile dev|release" >&2; exit 2 ;; esac
      shift 2 ;;
    -h|--help)
      sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *)
      echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eni-operator/target}"
out="${ENI_IMAGES_DIR:-$CARGO_TARGET_DIR/images}"

start=$(date +%s)
if [ "$profile" = dev ]; then
  cargo build --locked --manifest-path "$repo/Cargo.toml" --workspace --bins
  bins="$CARGO_TARGET_DIR/debug"
else
  # Two invocations: in one, cargo would unify features with eni-image's HTTP client
  # (tower, hyper-util, jiff, ...) and the product binaries would differ from a plain
  # build of them.
  cargo build --release --locked --manifest-path "$repo/Cargo.toml" \
    -p eni-operator -p eni-node-agent --bins
  cargo build --release --locked --manifest-path "$repo/Cargo.toml" -p eni-image --bins
  bins="$CARGO_TARGET_DIR/release"
fi
built=$(date +%s)
echo "build.sh: $profile binaries in $((built - start))s" >&2

plugins=/usr/lib/cni
origin=()
if command -v go >/dev/null; then
  plugins="$(bash "$repo/images/cni-plugins.sh")"
  origin=(--cni-plugins-origin "github.com/containernetworking/plugins@$(basename "$plugins")")
else
  echo "build.sh: no Go; the agent image gets Debian's portmap and bandwidth (CNI spec 1.0: no STATUS or GC)" >&2
fi

"$bins/eni-image" build --repo "$repo" --bins "$bins" --cni-plugins "$plugins" "${origin[@]}" \
  --out "$out" "${image_args[@]}"
echo "build.sh: images in $(($(date +%s) - built))s; layouts and images.json in $out" >&2
