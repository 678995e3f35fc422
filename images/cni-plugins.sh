#!/usr/bin/env bash
# Builds the reference CNI plugins the agent image ships for chaining (portmap,
# bandwidth) with Go, once per version, and prints their directory. Built rather than
# taken from Debian because Debian 12's (v1.1.1) stop at CNI spec 1.0.0, and a chain is
# only as new as its oldest plugin: spec 1.1 brings STATUS (the runtime's NetworkReady)
# and GC.
set -euo pipefail
PLUGINS_VERSION=v1.10.0
dir="${ENI_OPERATOR_CACHE:-$HOME/.cache/eni-operator}/cni-plugins/$PLUGINS_VERSION"
if [ ! -x "$dir/portmap" ] || [ ! -x "$dir/bandwidth" ]; then
  echo "cni-plugins: building portmap and bandwidth $PLUGINS_VERSION into $dir (once per machine)" >&2
  mod=github.com/containernetworking/plugins/plugins/meta
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath "$mod/portmap@$PLUGINS_VERSION" "$mod/bandwidth@$PLUGINS_VERSION" >&2
fi
echo "$dir"
