#!/usr/bin/env bash
# Stops and deletes the local test cluster (default name mlops-test, MLOPS_CLUSTER_NAME overrides), whichever backend
# made it. Idempotent: nothing to delete is not an error. The cached binaries stay.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

name=$mlops_cluster
log() { printf '[down] %s\n' "$*" >&2; }

if [ -d "$kwok_workdir" ]; then
  if [ -x "$mlops_bin/kwokctl" ]; then
    "$mlops_bin/kwokctl" delete cluster --name "$name" >&2
  fi
  # Without kwokctl (binaries removed) its pid files still name the component processes it started.
  for pidfile in "$kwok_workdir"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      log "stopping leftover process $pid ($(basename "$pidfile" .pid))"
      kill "$pid" || true
    fi
  done
  rm -rf "$kwok_workdir"
  log "kwok cluster $name deleted"
fi

if [ -x "$mlops_bin/kind" ] && docker_answers && "$mlops_bin/kind" get clusters 2>/dev/null | grep -qx "$name"; then
  # Our own kubeconfig, so that kind does not edit ~/.kube/config.
  "$mlops_bin/kind" delete cluster --name "$name" --kubeconfig "$mlops_state/kind-kubeconfig" >&2
  log "kind cluster $name deleted"
fi

rm -rf "$mlops_state"
