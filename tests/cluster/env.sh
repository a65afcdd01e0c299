#!/usr/bin/env bash
# Environment for the local test cluster made by up.sh: KUBECONFIG, PATH with the built binaries (kubectl, kwokctl,
# helm) first, KWOK_WORKDIR (so that `kwokctl get kubeconfig --name mlops-test` finds it), MLOPS_KUBE_CONTEXT and
# MLOPS_DATA_PLANE (process or container: how the cluster's model-server Pods run) and MLOPS_RUNNER_DIR (the Pod
# runner's folder: its log, and each Pod's output in pods/<namespace>_<pod>_<uid>/server.log).
#   eval "$(tests/cluster/env.sh)"     prints export lines for any POSIX shell
#   . tests/cluster/env.sh             sets them in the current bash
# Fails when the cluster has not been made.

# Sourced: run as a child and keep only its exports, so that neither shell options nor helper variables leak.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  if __mlops_env=$(bash "${BASH_SOURCE[0]}"); then
    eval "$__mlops_env"
    unset __mlops_env
    return 0
  fi
  unset __mlops_env
  return 1
fi

set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

if [ ! -f "$mlops_kubeconfig" ]; then
  printf 'no cluster %s: run %s/up.sh first\n' "$mlops_cluster" "$cluster_dir" >&2
  exit 1
fi
context=$(cat "$mlops_state/context" 2>/dev/null || true)

q() { printf '%q' "$1"; }
echo "export KUBECONFIG=$(q "$mlops_kubeconfig")"
echo "export MLOPS_KUBE_CONTEXT=$(q "$context")"
echo "export KWOK_WORKDIR=$(q "$KWOK_WORKDIR")"
echo "export MLOPS_DATA_PLANE=$(q "$(data_plane)")"
echo "export MLOPS_RUNNER_DIR=$(q "$runner_dir")"
echo "export PATH=$(q "$mlops_bin"):\"\$PATH\""
"$cluster_dir/monitoring.sh" env
