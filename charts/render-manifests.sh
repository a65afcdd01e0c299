#!/usr/bin/env bash
# Renders manifests/install.yaml, the install for `kubectl apply` users, from the chart: the namespace mlops-system,
# the CRDs, the RBAC of cluster mode and the operator Deployment, with the chart's default values.
#   charts/render-manifests.sh [OUTPUT]     default: manifests/install.yaml; needs helm on PATH
# `make manifests` runs it after copying crds/ into the chart; a test fails when the checked-in file is stale.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/manifests/install.yaml}
namespace=mlops-system
release=mlops-operator

command -v helm >/dev/null || { echo "helm not found on PATH: run \`make manifests\`" >&2; exit 1; }

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  cat <<EOF
# Generated from charts/mlops-operator by \`make manifests\`; do not edit.
#   kubectl apply --server-side -f manifests/install.yaml
# The operator in namespace $namespace, watching every namespace. For other settings (namespaced mode, image,
# resources, a ServiceMonitor) install the chart, or render it with \`helm template\` and your values.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    # The operator's Pod meets the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
EOF
  helm template "$release" "$root/charts/mlops-operator" --namespace "$namespace" --include-crds
} >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
