#!/usr/bin/env bash
# Starts the local test cluster (default name mlops-test, MLOPS_CLUSTER_NAME overrides) and waits until it serves.
#
# Without a Docker engine: a real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) run as
# plain processes by kwokctl's binary runtime, from binaries built by build-binaries.sh (nothing is downloaded), plus
# kwok, which plays the kubelet of MLOPS_CLUSTER_NODES (default 2) simulated nodes kwok-node-<i>: Pods scheduled
# there become Running without containers. Context: kwok-<name>.
# With a Docker engine: a kind cluster of one control-plane and one worker node. Context: kind-<name>.
# MLOPS_CLUSTER_BACKEND=kwok|kind forces one.
#
# Idempotent: a healthy cluster returns at once, a stopped one is started, a broken one is made anew.
# Writes a self-contained kubeconfig and prints its path on the last line.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

name=$mlops_cluster
nodes=${MLOPS_CLUSTER_NODES:-2}
t0=$(date +%s.%N)
log() { printf '[up] %s\n' "$*" >&2; }
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

# Retries "$@" once a second until it succeeds or $1 seconds have passed.
retry() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out: $*"
      "$@" >&2 || true
      return 1
    fi
    sleep 1
  done
}

# An existing cluster keeps its backend, so a Docker engine coming or going does not orphan it.
backend=${MLOPS_CLUSTER_BACKEND:-$(cat "$mlops_state/backend" 2>/dev/null || true)}
if [ -z "$backend" ]; then
  if docker_answers; then backend=kind; else backend=kwok; fi
fi
case $backend in
  kwok | kind) ;;
  *) log "MLOPS_CLUSTER_BACKEND must be kwok or kind, got $backend"; exit 2 ;;
esac
if [ -f "$mlops_state/backend" ] && [ "$(cat "$mlops_state/backend")" != "$backend" ]; then
  log "cluster $name was made by $(cat "$mlops_state/backend"); run down.sh first"
  exit 1
fi
mkdir -p "$mlops_state"

kwok_nodes_manifest() {
  local i
  for ((i = 0; i < nodes; i++)); do
    # Labels and annotations of kwokctl's own node template. No taint: Pods need no toleration to land here.
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec:
  # kwok gives Pods IPs from their node's range, which this machine treats as its own (see pod_addresses_local).
  podCIDR: 10.244.$i.0/24
  podCIDRs: [10.244.$i.0/24]
status:
  # A modest node, so that a too large resource request stays Pending as it would on a real one.
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  done
}

# kwokctl takes a component for running while the pid in its pid file answers a signal. A killed process stays a
# zombie until init reaps it, and a pid may be reused by another process: either way the component would never be
# started again, so the pid file of any pid that is not a live process of the component's binary is removed.
kwok_forget_dead_components() {
  local pidfile pid component state exe
  for pidfile in "$kwok_workdir"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    component=$(basename "$pidfile" .pid)
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    exe=${exe% (deleted)}
    if [ -z "$state" ] || [[ $state == Z* ]] || [ "$exe" != "$(readlink -f "$kwok_workdir/bin/$component")" ]; then
      log "component $component (pid $pid) is not running"
      rm -f "$pidfile"
    fi
  done
}

# The Pods' addresses (10.244.0.0/16, every node's podCIDR) are made local to this machine, as the loopback range is:
# the Pod runner binds each model server to its own Pod's IP, and Services' EndpointSlices take these addresses (the
# API server refuses loopback ones). One route in the local table does it; it needs root (CAP_NET_ADMIN).
pod_addresses_local() {
  ip route show table local | grep -q "^local $pod_range " && return 0
  if ! command -v ip >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
  fi
  ip route replace local "$pod_range" dev lo || {
    log "could not make $pod_range local (ip route needs root): model-server Pods cannot bind their addresses"
    return 1
  }
}

up_kwok() {
  local bin kubectl kwokctl
  bin=$("$cluster_dir/build-binaries.sh" kube kwok etcd | tail -n1)
  kubectl="$bin/kubectl"
  kwokctl="$bin/kwokctl"
  context="kwok-$name"
  # kwokctl runs the first kubectl on PATH to probe the API server.
  export PATH="$bin:$PATH"

  # kwokctl reads these only when it creates the cluster; a path that is not an http(s) URL is linked, not fetched.
  export KWOK_RUNTIME=binary
  export KWOK_VERSION="v$KWOK_VERSION" KWOK_KUBE_VERSION="v$KUBE_VERSION" KWOK_ETCD_VERSION="$ETCD_VERSION"
  export KWOK_KUBE_APISERVER_BINARY="$bin/kube-apiserver"
  export KWOK_KUBE_CONTROLLER_MANAGER_BINARY="$bin/kube-controller-manager"
  export KWOK_KUBE_SCHEDULER_BINARY="$bin/kube-scheduler"
  export KWOK_KUBECTL_BINARY="$bin/kubectl"
  export KWOK_ETCD_BINARY="$bin/etcd"
  export KWOK_CONTROLLER_BINARY="$bin/kwok"

  # A cluster made from other binaries (a version bump) or another kwokctl.yaml is made anew: its components run
  # the old ones, with the old flags.
  made_from="$bin $(cat "$cluster_dir/kwokctl.yaml" "$cluster_dir/audit-policy.yaml" | sha256sum | cut -c1-16)"
  if [ -d "$kwok_workdir" ] && [ "$(cat "$mlops_state/binaries" 2>/dev/null || true)" != "$made_from" ]; then
    log "cluster $name was made from other binaries or options: making it anew"
    kwok_delete_cluster
  fi

  # Creates the cluster, or starts the stopped components of an existing one, or returns at once when all run.
  # kwokctl waits up to 2 minutes for the API server but only logs a failure, hence the wait below.
  create() {
    kwok_forget_dead_components
    "$kwokctl" create cluster --name "$name" --config "$cluster_dir/kwokctl.yaml" --kubeconfig "" \
      --kube-audit-policy "$cluster_dir/audit-policy.yaml" --quiet-pull --timeout 3m >&2
  }
  kwok_serves() {
    "$kwokctl" get kubeconfig --name "$name" >"$mlops_kubeconfig.new" &&
      mv "$mlops_kubeconfig.new" "$mlops_kubeconfig" &&
      retry 90 "$kubectl" --kubeconfig "$mlops_kubeconfig" --request-timeout 5s get --raw /readyz
  }
  if ! { create && kwok_serves; }; then
    [ -d "$kwok_workdir" ] || exit 1
    log "cluster $name does not start: making it anew"
    kwok_delete_cluster
    create
    kwok_serves
  fi
  echo "$made_from" >"$mlops_state/binaries"

  local i existing all=()
  existing=$("$kubectl" --kubeconfig "$mlops_kubeconfig" get nodes -o name)
  for ((i = 0; i < nodes; i++)); do all+=("node/kwok-node-$i"); done
  for i in "${all[@]}"; do
    if ! grep -qx "$i" <<<"$existing"; then
      kwok_nodes_manifest | "$kubectl" --kubeconfig "$mlops_kubeconfig" apply -f - >&2
      break
    fi
  done
  "$kubectl" --kubeconfig "$mlops_kubeconfig" wait --for=condition=Ready --timeout=90s "${all[@]}" >&2
  # kube-controller-manager makes it shortly after the start; without it Pods of the default namespace are refused.
  retry 60 "$kubectl" --kubeconfig "$mlops_kubeconfig" get serviceaccount default --namespace default
  kubectl_bin=$kubectl
  pod_addresses_local
  runner_up
}

up_kind() {
  local bin kubectl kind
  bin=$("$cluster_dir/build-binaries.sh" kubectl kind | tail -n1)
  kubectl="$bin/kubectl"
  kind="$bin/kind"
  context="kind-$name"
  # kind writes contexts to the kubeconfig it is given; this one keeps ~/.kube/config untouched.
  local kind_kubeconfig="$mlops_state/kind-kubeconfig"

  listed() { "$kind" get clusters 2>/dev/null | grep -qx "$name"; }
  if listed; then
    if ! { "$kind" get kubeconfig --name "$name" >"$mlops_kubeconfig.new" &&
      "$kubectl" --kubeconfig "$mlops_kubeconfig.new" --request-timeout 5s get --raw /readyz >/dev/null 2>&1; }; then
      # Restarted kind node containers do not reliably come back; a new cluster takes about as long.
      log "cluster $name does not serve: making it anew"
      "$kind" delete cluster --name "$name" --kubeconfig "$kind_kubeconfig" >&2
    fi
  fi
  if ! listed; then
    # The audit policy is mounted into the control-plane node; audit-log.sh reads the log from there.
    "$kind" create cluster --name "$name" --kubeconfig "$kind_kubeconfig" --wait 5m \
      ${MLOPS_KIND_NODE_IMAGE:+--image "$MLOPS_KIND_NODE_IMAGE"} --config - >&2 <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  apiServerAddress: 127.0.0.1
nodes:
  - role: control-plane
    extraMounts:
      - hostPath: $cluster_dir/audit-policy.yaml
        containerPath: /etc/kubernetes/audit-policy.yaml
        readOnly: true
    kubeadmConfigPatches:
      - |
        kind: ClusterConfiguration
        apiServer:
          extraArgs:
            audit-policy-file: /etc/kubernetes/audit-policy.yaml
            audit-log-path: /var/log/kubernetes/audit.log
          extraVolumes:
            - name: audit-policy
              hostPath: /etc/kubernetes/audit-policy.yaml
              mountPath: /etc/kubernetes/audit-policy.yaml
              readOnly: true
              pathType: File
            - name: audit-log
              hostPath: /var/log/kubernetes
              mountPath: /var/log/kubernetes
              pathType: DirectoryOrCreate
  - role: worker
EOF
  fi
  "$kind" get kubeconfig --name "$name" >"$mlops_kubeconfig.new"
  mv "$mlops_kubeconfig.new" "$mlops_kubeconfig"
  retry 120 "$kubectl" --kubeconfig "$mlops_kubeconfig" --request-timeout 5s get --raw /readyz
  "$kubectl" --kubeconfig "$mlops_kubeconfig" wait --for=condition=Ready --timeout=180s nodes --all >&2
  retry 60 "$kubectl" --kubeconfig "$mlops_kubeconfig" get serviceaccount default --namespace default
  kubectl_bin=$kubectl
}

echo "$backend" >"$mlops_state/backend"
"up_$backend"

# The tests accept only this context, so a kubeconfig of another cluster can never be used by mistake.
current=$("$kubectl_bin" --kubeconfig "$mlops_kubeconfig" config current-context)
if [ "$current" != "$context" ]; then
  log "kubeconfig $mlops_kubeconfig has context $current, expected $context"
  exit 1
fi
echo "$context" >"$mlops_state/context"
# Prometheus and Alertmanager for the tests, installed from Debian on first use.
"$cluster_dir/monitoring.sh" up >&2

"$kubectl_bin" --kubeconfig "$mlops_kubeconfig" get nodes >&2
cat <<EOF
cluster $name ($backend) ready in $(elapsed)
context: $context
use it:  eval "\$($cluster_dir/env.sh)"   or   export KUBECONFIG=$mlops_kubeconfig
$mlops_kubeconfig
EOF
