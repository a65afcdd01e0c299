#!/usr/bin/env bash
# Fetches third-party CRDs from their published Go modules and caches them by version:
#   gateway-api  the standard channel of the Gateway API  (sigs.k8s.io/gateway-api, config/crd/standard/*.yaml)
#   istio        Istio's CRDs                              (istio.io/api, kubernetes/customresourcedefinitions.gen.yaml)
#   prometheus-operator  its PrometheusRule CRD only           (github.com/prometheus-operator/prometheus-operator,
#                example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml)
# Parts, in any order: gateway-api istio prometheus-operator (the default: all three). Versions come from versions.env.
#
# Nothing is downloaded but Go modules from the module proxy, into the usual module cache (go env GOMODCACHE), whose
# files are read-only; the YAML is copied out to <cache>/crds/<part>-v<version>/. A second run finds it there and
# returns at once. Prints one directory per part, for `kubectl apply --server-side -f <dir>`.
# The Gateway API's ValidatingAdmissionPolicy (safe-upgrades) is left out: only CRDs are copied.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

crds_root="$mlops_cache/crds"
log() { printf '[third-party-crds] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The directory of module $1 in the module cache, downloaded from the proxy when missing.
module_dir() {
  local module=$1 out dir
  command -v go >/dev/null 2>&1 || die "go not found on PATH: it fetches $module from the Go module proxy"
  # Outside any module, so that a go.mod or GOFLAGS of the caller's directory plays no part.
  if ! out=$(cd / && GOFLAGS='' GO111MODULE=on go mod download -json "$module" 2>&1); then
    die "go mod download $module failed:"$'\n'"$out"
  fi
  dir=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir", ""))') ||
    die "unexpected output of go mod download $module:"$'\n'"$out"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    die "go mod download $module gave no module directory:"$'\n'"$out"
  fi
  echo "$dir"
}

# Copies files of module $2 into $1 (a fresh directory, replaced whole, so that an interrupted run leaves nothing
# half done) and checks that every CRD named in $4 (space separated) is there. $3: the files, relative to the module.
fetch() {
  local dest=$1 module=$2 files=$3 required=$4
  if [ -f "$dest/.complete" ]; then
    echo "$dest"
    return
  fi
  local t0=$SECONDS dir tmp f name missing=()
  log "fetching $module"
  dir=$(module_dir "$module")
  mkdir -p "$crds_root"
  tmp=$(mktemp -d "$crds_root/.tmp.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  for f in $files; do
    # $files may hold globs, expanded in the module directory.
    compgen -G "$dir/$f" >/dev/null || die "$module has no $f"
    # shellcheck disable=SC2086
    cp "$dir"/$f "$tmp/"
  done
  # Only CRDs: the Gateway API ships a ValidatingAdmissionPolicy next to them.
  for f in "$tmp"/*; do
    grep -q '^kind: CustomResourceDefinition' "$f" || rm "$f"
  done
  chmod -R u+w,go+rX "$tmp"
  for name in $required; do
    grep -qE "^  name: \"?$name\"?\$" "$tmp"/*.yaml || missing+=("$name")
  done
  [ ${#missing[@]} -eq 0 ] || die "$module lacks the CRDs ${missing[*]}"
  touch "$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  trap - EXIT
  log "$module: $(grep -c '^kind: CustomResourceDefinition' "$dest"/*.yaml | awk -F: '{ n += $NF } END { print n }') CRDs in $dest ($((SECONDS - t0))s)"
  echo "$dest"
}

want=${*:-gateway-api istio prometheus-operator}
for part in $want; do
  case $part in
    gateway-api)
      fetch "$crds_root/gateway-api-v${GATEWAY_API_VERSION}" "sigs.k8s.io/gateway-api@v${GATEWAY_API_VERSION}" \
        "config/crd/standard/*.yaml" \
        "gatewayclasses.gateway.networking.k8s.io gateways.gateway.networking.k8s.io
         httproutes.gateway.networking.k8s.io referencegrants.gateway.networking.k8s.io" ;;
    istio)
      fetch "$crds_root/istio-v${ISTIO_API_VERSION}" "istio.io/api@v${ISTIO_API_VERSION}" \
        "kubernetes/customresourcedefinitions.gen.yaml" \
        "virtualservices.networking.istio.io destinationrules.networking.istio.io gateways.networking.istio.io" ;;
    prometheus-operator)
      # The root module (the pkg/apis/monitoring module holds the Go types, no YAML); its other CRDs (Prometheus,
      # ServiceMonitor, ...) are left out: we only export alert rules.
      fetch "$crds_root/prometheus-operator-v${PROMETHEUS_OPERATOR_VERSION}" \
        "github.com/prometheus-operator/prometheus-operator@v${PROMETHEUS_OPERATOR_VERSION}" \
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" \
        "prometheusrules.monitoring.coreos.com" ;;
    *) log "unknown part: $part (gateway-api, istio, prometheus-operator)"; exit 2 ;;
  esac
done
