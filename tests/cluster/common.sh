# shellcheck shell=bash disable=SC2034
# Settings shared by the scripts of the local test cluster (build-binaries.sh, up.sh, down.sh, env.sh).
# Sourced, never run: it only sets variables and functions.

cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$cluster_dir/versions.env"

mlops_cache=${MLOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-operator}
# Binaries are cached by version, so a version bump builds a fresh set next to the old one.
mlops_bin="$mlops_cache/bin/k8s-v${KUBE_VERSION}_kwok-v${KWOK_VERSION}_etcd-v${ETCD_VERSION}_helm-v${HELM_VERSION}"

mlops_cluster=${MLOPS_CLUSTER_NAME:-mlops-test}
if ! [[ $mlops_cluster =~ ^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$ ]]; then
  printf 'MLOPS_CLUSTER_NAME must be a short DNS label, got %q\n' "$mlops_cluster" >&2
  return 2
fi
# Our own per-cluster state: the self-contained kubeconfig, the backend and context that made it.
mlops_state="$mlops_cache/clusters/$mlops_cluster"
mlops_kubeconfig="$mlops_state/kubeconfig"

# kwokctl keeps its clusters under its work dir; a project one keeps ~/.kwok, and the kwok.yaml a user may
# have there, out of the way.
export KWOK_WORKDIR="$mlops_cache/kwok"
kwok_workdir="$KWOK_WORKDIR/clusters/$mlops_cluster"

docker_answers() {
  command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

# Deletes the kwok cluster, even one whose kwokctl state is broken or whose binaries are gone.
kwok_delete_cluster() {
  [ -d "$kwok_workdir" ] || return 0
  if [ -x "$mlops_bin/kwokctl" ]; then
    "$mlops_bin/kwokctl" delete cluster --name "$mlops_cluster" >&2 || true
  fi
  # kwokctl's pid files name the component processes it started, should it have failed to stop them.
  local pidfile pid
  for pidfile in "$kwok_workdir"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      printf 'stopping leftover process %s (%s)\n' "$pid" "$(basename "$pidfile" .pid)" >&2
      kill "$pid" || true
    fi
  done
  rm -rf "$kwok_workdir"
}

# The address range of the kwok nodes' Pods (up.sh gives node i 10.244.i.0/24), local to this machine while the
# cluster runs.
pod_range=10.244.0.0/16

# The Pod runner (tests/dataplane/runner.py) of a kwok cluster: model-server Pods become real local processes, or
# containers of their image in container mode.
runner_dir="$mlops_state/runner"
runner_pidfile="$runner_dir/runner.pid"
runner_python=${MLOPS_RUNNER_PYTHON:-$cluster_dir/../../.venv/bin/python}

runner_alive() {
  local pid
  pid=$(cat "$runner_pidfile" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && grep -q runner.py "/proc/$pid/cmdline" 2>/dev/null
}

# The cluster's data plane: process (each model-server Pod a process of this environment's mlops-server) or
# container (each Pod a container of its image, with docker or podman). MLOPS_DATA_PLANE given to up.sh chooses
# and is kept for the cluster; a namespace's label mlops.io/data-plane overrides it for its Pods.
data_plane() {
  local mode=${MLOPS_DATA_PLANE:-$(cat "$mlops_state/data-plane" 2>/dev/null || true)}
  case ${mode:-process} in
    process | container) echo "${mode:-process}" ;;
    *) printf 'MLOPS_DATA_PLANE=%s: process or container\n' "$mode" >&2; return 1 ;;
  esac
}

# What the runner runs with: its program, its Python, the cluster's kubeconfig (a cluster made anew has new
# credentials and addresses) and the data plane.
runner_inputs() {
  cat "$cluster_dir/../dataplane/runner.py" "$mlops_kubeconfig" | sha256sum | cut -c1-16
  echo "$runner_python"
  data_plane
}

# Starts the runner unless it runs with the same inputs; it outlives this shell (its own session) and logs to
# $runner_dir/runner.log.
runner_up() {
  if runner_alive; then
    [ "$(cat "$runner_dir/inputs" 2>/dev/null || true)" = "$(runner_inputs)" ] && return 0
    runner_down
  fi
  if [ ! -x "$runner_python" ]; then
    printf 'no Python environment at %s (make venv): model-server Pods will stay not Ready\n' "$runner_python" >&2
    return 0
  fi
  mkdir -p "$runner_dir"
  local mode
  mode=$(data_plane)
  echo "$mode" >"$mlops_state/data-plane"
  KUBECONFIG=$mlops_kubeconfig setsid "$runner_python" "$cluster_dir/../dataplane/runner.py" --state "$runner_dir" \
    --mode "$mode" >>"$runner_dir/runner.log" 2>&1 </dev/null &
  echo $! >"$runner_pidfile"
  runner_inputs >"$runner_dir/inputs"
  sleep 0.5
  runner_alive || { printf 'the Pod runner did not start; see %s\n' "$runner_dir/runner.log" >&2; return 1; }
}

# Stops the runner (it stops its server processes first).
runner_down() {
  local pid i
  runner_alive || { rm -f "$runner_pidfile"; return 0; }
  pid=$(cat "$runner_pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$runner_pidfile"
}
