#!/usr/bin/env bash
# Builds the Kubernetes binaries the bed runs (kube-apiserver, kubectl, and for real
# nodes kubelet, kube-controller-manager, kube-scheduler and kube-proxy) from the k8s.io/kubernetes Go
# module into a per-version cache, in one Go pass, and prints the cache directory.
# Arguments name the binaries wanted (default: all of them); only missing ones are built.
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with local paths, so
# `go install` cannot build it; a throwaway module that requires it and maps each staging
# module to its published v0.Y.Z tag can.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-$(cat "$(dirname "$0")/VERSION")}"
CACHE="${ENI_OPERATOR_CACHE:-$HOME/.cache/eni-operator}/k8s/$K8S_VERSION"
ALL=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("${ALL[@]}")
for b in "${BINS[@]}"; do
  case " ${ALL[*]} " in *" $b "*) ;; *) echo "k8s-bin: unknown binary $b (known: ${ALL[*]})" >&2; exit 2 ;; esac
done
built() { for b in "${BINS[@]}"; do [ -x "$CACHE/$b" ] || return 1; done; }
if built; then echo "$CACHE"; exit 0; fi
mkdir -p "$CACHE"
# Parallel test processes may all find the cache empty: one builds, the others wait.
exec 9>"$CACHE/.lock"
flock 9
if built; then echo "$CACHE"; exit 0; fi
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
patch="${K8S_VERSION##*.}"
staging="v0.$minor.$patch"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
{
  echo "module eni-operator.io/k8s-bin"
  echo
  echo "go $(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$gomod" \
    | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
} > go.mod
{
  printf 'package main\nimport (\n'
  printf '_ "k8s.io/kubectl/pkg/cmd"\n'
  for b in kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy; do
    printf '_ "k8s.io/kubernetes/cmd/%s/app"\n' "$b"
  done
  printf ')\nfunc main() {}\n'
} > tools.go
go mod tidy >&2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
for b in "${BINS[@]}"; do
  [ -x "$CACHE/$b" ] && continue
  echo "k8s-bin: building $b $K8S_VERSION (once per machine; a few minutes each on 2 cores)" >&2
  go build -trimpath -o "$CACHE/$b.tmp" -ldflags "$ldflags" "k8s.io/kubernetes/cmd/$b" >&2
  mv "$CACHE/$b.tmp" "$CACHE/$b"
done
echo "$CACHE"
