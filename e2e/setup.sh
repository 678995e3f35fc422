#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine (idempotent; fast
# when everything is there): Debian packages, the Go-built kube-apiserver and kubectl,
# and a Python venv with moto for the provider tests. Heavy results are cached under
# ~/.cache/eni-operator, outside the clone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE="${ENI_OPERATOR_CACHE:-$HOME/.cache/eni-operator}"
mkdir -p "$CACHE"

need_pkgs=()
command -v nft >/dev/null || need_pkgs+=(nftables)
[ -x /usr/lib/cni/bandwidth ] || need_pkgs+=(containernetworking-plugins)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v nc >/dev/null || need_pkgs+=(netcat-openbsd)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-venv)
command -v flock >/dev/null || need_pkgs+=(util-linux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

echo "setup: kube-apiserver and kubectl $(cat "$here/k8s-bin/VERSION") (built once per machine)" >&2
bash "$here/k8s-bin/build.sh" >/dev/null

venv="$CACHE/moto-venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "setup: moto venv in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]==5.*'
fi
