#!/usr/bin/env bash
# Builds the binaries of the local control plane from their published Go modules and caches them by version:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   kwok, kwokctl                                                     (sigs.k8s.io/kwok)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
# and helm (helm.sh/helm/v3) for the chart tests. Parts, in any order: kube kwok etcd helm (the default: all four),
# kubectl (kubectl alone, part of kube), kind (only wanted when a Docker engine runs the cluster), flagger
# (github.com/fluxcd/flagger, the peer of tests/bench/bench_canary.py's defect part; in its own folder
# bin/flagger-v<version>/ of the cache, as it does not belong to the control plane's set) and ghz
# (github.com/bojand/ghz, bench_serving.py's gRPC load generator, in bin/ghz-v<version>/).
#
# Nothing is downloaded but Go modules from the module proxy. A second run finds every binary in the cache and
# returns at once. Prints the bin directory on its last line.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

cache=$mlops_cache
bin=$mlops_bin
mkdir -p "$bin" "$cache/src"

export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod"
log() { printf '[build-binaries] %s\n' "$*" >&2; }
timed() {
  local what=$1; shift
  local t0=$SECONDS
  "$@"
  log "$what built in $((SECONDS - t0))s"
}

# k8s.io/kubernetes requires its staging modules at v0.0.0 with local replaces that a consumer ignores, so the
# wrapper module pins each one to the matching published v0.<minor>.<patch>. Builds the commands named as arguments.
build_kube() {
  local src="$cache/src/kube-v${KUBE_VERSION}"
  local minor=${KUBE_VERSION#*.}
  mkdir -p "$src"
  if [ ! -f "$src/go.sum" ]; then
    local kdir
    (cd "$src" && rm -f go.mod && go mod init mlops-operator.local/kube >/dev/null 2>&1)
    kdir=$(cd "$src" && go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    {
      echo "module mlops-operator.local/kube"
      echo
      echo "go 1.26.0"
      echo
      echo "require k8s.io/kubernetes v${KUBE_VERSION}"
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 v0.'"${minor}"'#p' "$kdir/go.mod"
      echo ")"
    } >"$src/go.mod"
    cat >"$src/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
    (cd "$src" && go mod tidy -e >/dev/null)
  fi
  local major=${KUBE_VERSION%%.*} m=${minor%%.*} flags="-s -w" key
  for key in client-go/pkg/version component-base/version; do
    flags+=" -X k8s.io/$key.gitVersion=v${KUBE_VERSION} -X k8s.io/$key.gitMajor=$major -X k8s.io/$key.gitMinor=$m"
    flags+=" -X k8s.io/$key.gitTreeState=clean -X k8s.io/$key.buildDate=1970-01-01T00:00:00Z"
  done
  local cmd pkgs=()
  for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  (cd "$src" && go build -trimpath -ldflags "$flags" -o "$bin/" "${pkgs[@]}")
}

build_kwok() {
  GOBIN="$bin" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v${KWOK_VERSION}" \
    "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@v${KWOK_VERSION}"
}

# etcd's server module has local replaces too (go install refuses it); a consumer module with a two-line main
# builds it.
build_etcd() {
  local src="$cache/src/etcd-v${ETCD_VERSION}"
  mkdir -p "$src"
  if [ ! -f "$src/go.sum" ]; then
    cat >"$src/go.mod" <<EOF
module mlops-operator.local/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
EOF
    cat >"$src/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$src" && go mod tidy >/dev/null)
  fi
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
}

build_helm() {
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}"
}

# The kind binary is not named by version in the bin directory, so its own version report is checked.
build_kind() {
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@v${KIND_VERSION}"
}

# Flagger's module has no local replaces: go install builds it. Its CRDs stay in the module cache
# (artifacts/flagger/crd.yaml), where tests/bench/flagger_peer.py applies them from.
FLAGGER_VERSION=${FLAGGER_VERSION:-1.36.1}  # the newest the module proxy serves here
flagger_bin="$cache/bin/flagger-v${FLAGGER_VERSION}"
build_flagger() {
  mkdir -p "$flagger_bin"
  GOBIN="$flagger_bin" go install -trimpath -ldflags "-s -w" "github.com/fluxcd/flagger/cmd/flagger@v${FLAGGER_VERSION}"
  go mod download "github.com/fluxcd/flagger@v${FLAGGER_VERSION}"
}

# ghz: the gRPC load generator of tests/bench/bench_serving.py (wrk's counterpart for gRPC), in bin/ghz-v<version>/.
GHZ_VERSION=${GHZ_VERSION:-0.120.0}
ghz_bin="$cache/bin/ghz-v${GHZ_VERSION}"
build_ghz() {
  mkdir -p "$ghz_bin"
  GOBIN="$ghz_bin" go install -trimpath -ldflags "-s -w" "github.com/bojand/ghz/cmd/ghz@v${GHZ_VERSION}"
}

want=${*:-kube kwok etcd helm}
for part in $want; do
  case $part in
    kube) [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kube-scheduler" ] &&
      [ -x "$bin/kubectl" ] || timed "kube v${KUBE_VERSION}" build_kube kube-apiserver kube-controller-manager \
      kube-scheduler kubectl ;;
    kubectl) [ -x "$bin/kubectl" ] || timed "kubectl v${KUBE_VERSION}" build_kube kubectl ;;
    kwok) [ -x "$bin/kwok" ] && [ -x "$bin/kwokctl" ] || timed "kwok v${KWOK_VERSION}" build_kwok ;;
    etcd) [ -x "$bin/etcd" ] || timed "etcd v${ETCD_VERSION}" build_etcd ;;
    helm) [ -x "$bin/helm" ] || timed "helm v${HELM_VERSION}" build_helm ;;
    kind) [ -x "$bin/kind" ] && "$bin/kind" version | grep -q "v${KIND_VERSION} " ||
      timed "kind v${KIND_VERSION}" build_kind ;;
    flagger) [ -x "$flagger_bin/flagger" ] || timed "flagger v${FLAGGER_VERSION}" build_flagger ;;
    ghz) [ -x "$ghz_bin/ghz" ] || timed "ghz v${GHZ_VERSION}" build_ghz ;;
    *) log "unknown part: $part (kube, kwok, etcd, helm, kubectl, kind, flagger, ghz)"; exit 2 ;;
  esac
done
echo "$bin"
