#!/usr/bin/env bash
# Stops and deletes the local test cluster (default name mlops-test, MLOPS_CLUSTER_NAME overrides), whichever backend
# made it. Idempotent: nothing to delete is not an error. The cached binaries stay.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

name=$mlops_cluster
log() { printf '[down] %s\n' "$*" >&2; }

"$cluster_dir/monitoring.sh" down
runner_down
ip route del local "$pod_range" dev lo 2>/dev/null || true
if [ -d "$kwok_workdir" ]; then
  kwok_delete_cluster
  log "kwok cluster $name deleted"
fi

if [ -x "$mlops_bin/kind" ] && docker_answers && "$mlops_bin/kind" get clusters 2>/dev/null | grep -qx "$name"; then
  # Our own kubeconfig, so that kind does not edit ~/.kube/config.
  "$mlops_bin/kind" delete cluster --name "$name" --kubeconfig "$mlops_state/kind-kubeconfig" >&2
  log "kind cluster $name deleted"
fi

rm -rf "$mlops_state"
