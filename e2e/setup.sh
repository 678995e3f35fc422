#!/usr/bin/env bash
# Installs what a command needs on a fresh Debian machine (idempotent; fast when
# everything is there). `setup.sh demo`: Debian packages, the Go-built kube-apiserver
# and kubectl, and helm. `setup.sh real-demo` (the demo on real nodes): also kubelet,
# kube-controller-manager, kube-scheduler and containerd. `setup.sh test` (the
# default): also the Python venv with moto for the provider tests and the tools of the
# image and CNI trials. Heavy results are cached under ~/.cache/eni-operator, outside
# the clone.
set -euo pipefail
for_what="${1:-test}"
case "$for_what" in demo|real-demo|test) ;; *) echo "usage: setup.sh [demo|real-demo|test]" >&2; exit 2 ;; esac
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
# The test images (eni-image test-images) hold the static busybox; runc runs them in tests.
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v runc >/dev/null || need_pkgs+=(runc)
# `bench dataplane` measures throughput with it.
command -v iperf3 >/dev/null || need_pkgs+=(iperf3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

echo "setup: kube-apiserver and kubectl $(cat "$here/k8s-bin/VERSION") (built once per machine)" >&2
bash "$here/k8s-bin/build.sh" kube-apiserver kubectl >/dev/null
# helm: every bed and the demo render the chart's identities with it (the product runs
# as the chart's ServiceAccounts), the chart tests and real nodes install the chart with
# it. Built with the ldflags of helm's own release build: without them `helm version` is vague and `helm template`
# assumes Kubernetes 1.20, below the chart's kubeVersion. The stamp file makes a changed
# pin rebuild it.
HELM_VERSION=v3.22.0
if [ ! -x "$CACHE/bin/helm" ] || [ "$(cat "$CACHE/bin/.helm-version" 2>/dev/null)" != "$HELM_VERSION" ]; then
  echo "setup: helm $HELM_VERSION into $CACHE/bin (built once per machine)" >&2
  mkdir -p "$CACHE/bin"
  helm_mod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  k8s_minor="$(sed -n 's/^\s*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm_mod")"
  [ -n "$k8s_minor" ] || { echo "setup: no k8s.io/client-go version in $helm_mod" >&2; exit 1; }
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in pkg/chartutil pkg/lint/rules; do
    ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
  done
  GOBIN="$CACHE/bin" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > "$CACHE/bin/.helm-version"
fi
[ "$for_what" = demo ] && exit 0

# Real nodes (e2e/tests/real_nodes/): the other Kubernetes binaries, containerd.
echo "setup: kubelet, kube-controller-manager and kube-scheduler (built once per machine)" >&2
bash "$here/k8s-bin/build.sh" >/dev/null
containerd_dir="$CACHE/containerd/$(cat "$here/containerd/VERSION")"
if [ ! -x "$containerd_dir/ctr" ]; then
  echo "setup: building containerd $(cat "$here/containerd/VERSION") (~4 min, once per machine)" >&2
fi
bash "$here/containerd/build.sh" >/dev/null


[ "$for_what" = real-demo ] && exit 0

venv="$CACHE/moto-venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "setup: moto venv in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]==5.*'
fi

# eni-libcni: drives libcni (containerd's CNI library) with a real node's runtime data for
# the CNI operations containerd never calls itself (CHECK, GC); see its main.go.
if [ ! -x "$CACHE/bin/eni-libcni" ] || [ "$here/libcni-driver/main.go" -nt "$CACHE/bin/eni-libcni" ]; then
  echo "setup: eni-libcni into $CACHE/bin" >&2
  mkdir -p "$CACHE/bin"
  (cd "$here/libcni-driver" && go build -trimpath -o "$CACHE/bin/eni-libcni" .)
fi

# eni-ecs-sdk-check: Alibaba Cloud's official Go SDKs driving vpc-sim's ECS front end
# (vpc-sim/tests/ecs_sdk.rs); the modules come from the Go module proxy.
if [ ! -x "$CACHE/bin/eni-ecs-sdk-check" ] || [ "$here/ecs-sdk-check/main.go" -nt "$CACHE/bin/eni-ecs-sdk-check" ] || [ "$here/ecs-sdk-check/go.sum" -nt "$CACHE/bin/eni-ecs-sdk-check" ]; then
  echo "setup: eni-ecs-sdk-check into $CACHE/bin" >&2
  mkdir -p "$CACHE/bin"
  (cd "$here/ecs-sdk-check" && go build -trimpath -o "$CACHE/bin/eni-ecs-sdk-check" .)
fi

# The CNCF distribution registry, for image/tests/registry.rs (push, then read back).
REGISTRY_VERSION=v3.0.0
if [ "$(cat "$CACHE/bin/.registry-version" 2>/dev/null)" != "$REGISTRY_VERSION" ] || [ ! -x "$CACHE/bin/registry" ]; then
  echo "setup: distribution registry $REGISTRY_VERSION into $CACHE/bin (built once per machine)" >&2
  mkdir -p "$CACHE/bin"
  GOBIN="$CACHE/bin" go install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
  echo "$REGISTRY_VERSION" > "$CACHE/bin/.registry-version"
fi
