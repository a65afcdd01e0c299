#!/usr/bin/env bash
# Prints the local test cluster's API server audit log (one JSON event per line; see audit-policy.yaml for what it
# records): kwokctl keeps it for a kwok cluster, the control-plane node container for a kind cluster.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

case $(cat "$mlops_state/backend" 2>/dev/null || echo none) in
  kwok) "$mlops_bin/kwokctl" logs audit --name "$mlops_cluster" ;;
  kind) docker exec "$mlops_cluster-control-plane" cat /var/log/kubernetes/audit.log ;;
  *) echo "no cluster $mlops_cluster: run $cluster_dir/up.sh first" >&2; exit 1 ;;
esac
