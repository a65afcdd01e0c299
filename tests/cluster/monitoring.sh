#!/usr/bin/env bash
# Real Prometheus and Alertmanager for the local test cluster, run as plain background processes owned by the
# cluster's state: the Debian packages `prometheus` and `prometheus-alertmanager` (installed when their binaries are
# missing; the packages' own services are kept from starting and are never what runs).
#
#   monitoring.sh up             installs if needed, writes the configs, starts or reloads, waits until ready
#   monitoring.sh down [--purge] stops them (SIGTERM, SIGKILL after 10s); --purge also deletes data, logs, configs
#   monitoring.sh env            export lines: MLOPS_PROMETHEUS_URL, MLOPS_ALERTMANAGER_URL, MLOPS_MONITORING_DIR
#   monitoring.sh status         whether each runs, and where; exit 1 when one does not
#
# Idempotent: `up` returns at once when all run, answer /-/ready and their configs are unchanged. A changed config is
# reloaded (POST /-/reload), a dead process is started again, one started with other flags or against another
# cluster's credentials is restarted. The processes run in a session of their own, so they outlive the script (and
# `make cluster`). The cluster must be up: Prometheus discovers Pods through its API server.
#
# Debian's Prometheus (2.42) is built without Kubernetes service discovery: it rejects kubernetes_sd_configs. A third
# process, pod-discovery (a stdlib-only Python script this file writes), lists the cluster's Pods from the API server
# for Prometheus's http_sd_configs, with the labels Prometheus's own discovery gives for role pod
# (__meta_kubernetes_namespace, __meta_kubernetes_pod_name, _ip, _phase, _label_<name>, _annotation_<name>, ...), so
# the relabeling below is the one an upstream Prometheus would apply to `kubernetes_sd_configs: [{role: pod}]`.
#
# Addresses: loopback only, on ports away from the defaults, so that a system Prometheus never answers in their place:
# Prometheus 127.0.0.1:19090 (MLOPS_PROMETHEUS_PORT), Alertmanager 127.0.0.1:19093 (MLOPS_ALERTMANAGER_PORT) with its
# cluster listener off, pod-discovery 127.0.0.1:19091 (MLOPS_POD_DISCOVERY_PORT). `up` records the ports it used, and
# later commands use those unless the variables say otherwise.
#
# Everything lives in $mlops_state/monitoring/ (~/.cache/mlops-operator/clusters/mlops-test/monitoring/):
#   prometheus.yml, alertmanager.yml, pod-discovery.py   written by every `up`
#   kube/                                   the API server's CA and the client certificate, from the kubeconfig
#   <component>.log, <component>.pid        each process's output (appended across starts) and its pid
#   prometheus-data/, alertmanager-data/    TSDB (kept 1 day) and silences; kept by `down` unless --purge
#   rules/*.yml                             Prometheus rule files; after writing one, POST $MLOPS_PROMETHEUS_URL/-/reload
#   targets/*.json                          scrape targets of the job mlops-operator (below)
#
# Scrape jobs (every 2s; rules are evaluated every 2s; alerts go to the Alertmanager above):
#   model-servers   Running Pods of the cluster annotated prometheus.io/scrape: "true", scraped at
#                   <Pod IP>:<prometheus.io/port> on <prometheus.io/path>; target labels namespace, pod, and model,
#                   version, deployment from the Pod labels mlops.io/model, mlops.io/version, mlops.io/deployment.
#   mlops-operator  an operator started with `--metrics 127.0.0.1:<port>` is scraped while a file
#                   targets/<any name>.json holds (written whole, e.g. under a name not ending .json, then renamed):
#                     [{"targets": ["127.0.0.1:<port>"], "labels": {"<name>": "<value>", ...}}]
#                   "labels" is optional and adds target labels. Deleting the file ends the scraping within seconds.
#
# Alertmanager routes every alert to the receiver `default`, which notifies nobody, or posts to the webhook URL in
# MLOPS_ALERTMANAGER_WEBHOOK when that is set at `up`; group_wait 1s, group_interval 5s.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

dir="$mlops_state/monitoring"
log() { printf '[monitoring] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The port of a component: its variable, else the one `up` recorded, else the default.
port_of() {
  local variable=$1 default=$2 recorded port
  recorded=$(cat "$dir/$3.port" 2>/dev/null || true)
  port=${!variable:-${recorded:-$default}}
  if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then die "$variable: not a port: $port"; fi
  echo "$port"
}
prometheus_port=$(port_of MLOPS_PROMETHEUS_PORT 19090 prometheus)
alertmanager_port=$(port_of MLOPS_ALERTMANAGER_PORT 19093 alertmanager)
pod_discovery_port=$(port_of MLOPS_POD_DISCOVERY_PORT 19091 pod-discovery)

# Each component's binary. Debian names Alertmanager's prometheus-alertmanager, an upstream install alertmanager. The
# Python interpreter is resolved to its real file (not a pyenv shim), which is what its process runs.
prometheus_bin() { command -v prometheus || true; }
alertmanager_bin() { command -v prometheus-alertmanager || command -v alertmanager || true; }
pod_discovery_bin() { python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true; }

# Sends METHOD PATH to 127.0.0.1:PORT with bash's /dev/tcp (a fresh machine may have neither curl nor wget) and prints
# the body; fails unless the answer is 200. HTTP/1.0, so that the server closes the connection after the body.
http() {
  local method=$1 port=$2 path=$3
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nContent-Length: 0\r\n\r\n' "$method" "$path" "$port" >&3
    IFS= read -r -t 10 status <&3 || exit 1
    while IFS= read -r -t 10 header <&3 && [ -n "${header%$'\r'}" ]; do :; done
    timeout 10 cat <&3 || true
    [[ $status =~ ^HTTP/1\.[01]\ 200 ]]
  ) 2>/dev/null
}
answers() { http GET "$1" /-/ready >/dev/null; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid of component $1 when its pid file names a live process of binary $2 (not a zombie, not a reused pid).
pid_of() {
  local pid state exe
  pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$(readlink -f "$2")" ] || return 1
  echo "$pid"
}

install_packages() {
  [ -n "$(prometheus_bin)" ] && [ -n "$(alertmanager_bin)" ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    die "Prometheus or Alertmanager is missing: install the Debian packages prometheus and prometheus-alertmanager"
  fi
  log "installing the Debian packages prometheus and prometheus-alertmanager"
  # Their maintainer scripts start system services (default ports, /etc/prometheus's config); a policy-rc.d that
  # refuses keeps those stopped. A machine's own policy-rc.d is left as it is.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    own_policy=1
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
  if [ "$own_policy" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  if [ -z "$(prometheus_bin)" ] || [ -z "$(alertmanager_bin)" ]; then die "the packages installed no binaries"; fi
}

# Writes the API server's address and the kubeconfig's credentials to kube/ and prints their hash. Our kubeconfig is
# self-contained (up.sh): certificates as data, which pod-discovery needs as files.
write_credentials() {
  local kubectl field
  kubectl="$mlops_bin/kubectl"
  [ -x "$kubectl" ] || kubectl=$(command -v kubectl) || die "no kubectl: run $cluster_dir/up.sh first"
  mkdir -p "$dir/kube"
  chmod 700 "$dir/kube"
  view() {
    "$kubectl" config view --raw --minify --kubeconfig "$mlops_kubeconfig" -o "jsonpath={$1}"
  }
  view .clusters[0].cluster.server >"$dir/kube/server"
  for field in ca:.clusters[0].cluster.certificate-authority-data client.crt:.users[0].user.client-certificate-data \
    client.key:.users[0].user.client-key-data; do
    view "${field#*:}" | base64 -d >"$dir/kube/${field%%:*}" ||
      die "$mlops_kubeconfig has no ${field#*:} (certificates as data are needed)"
    [ -s "$dir/kube/${field%%:*}" ] || die "$mlops_kubeconfig has no ${field#*:} (certificates as data are needed)"
  done
  chmod 600 "$dir/kube/"*
  cat "$dir/kube/server" "$dir/kube/ca" "$dir/kube/client.crt" "$dir/kube/client.key" | sha256sum | cut -c1-64
}

write_pod_discovery() {
  cat <<'EOF'
"""Pod discovery for Prometheus's http_sd_configs, for a Prometheus built without kubernetes_sd_configs.

Every GET /targets lists the cluster's Pods (from the API server's watch cache) and answers one target group per Pod
with an IP, labelled as Prometheus's Kubernetes discovery labels role pod. GET /-/ready answers 200 once the API
server does. Written by tests/cluster/monitoring.sh; edits are lost.
"""

import json
import re
import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, kube = int(sys.argv[1]), sys.argv[2]
with open(f"{kube}/server") as f:
    server = f.read().strip()
tls = ssl.create_default_context(cafile=f"{kube}/ca")
tls.load_cert_chain(f"{kube}/client.crt", f"{kube}/client.key")


def pods(query: str) -> list[dict]:
    with urllib.request.urlopen(f"{server}/api/v1/pods?{query}", context=tls, timeout=5) as resp:
        return json.load(resp)["items"]


def label_name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


def target_group(pod: dict) -> dict | None:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    if not status.get("podIP"):
        return None
    ready = next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), "unknown")
    labels = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_uid": meta.get("uid", ""),
        "__meta_kubernetes_pod_ip": status["podIP"],
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
        "__meta_kubernetes_pod_ready": ready.lower(),
    }
    for kind, values in (("label", meta.get("labels") or {}), ("annotation", meta.get("annotations") or {})):
        for key, value in values.items():
            labels[f"__meta_kubernetes_pod_{kind}_{label_name(key)}"] = value
            labels[f"__meta_kubernetes_pod_{kind}present_{label_name(key)}"] = "true"
    for owner in meta.get("ownerReferences", []):
        if owner.get("controller"):
            labels["__meta_kubernetes_pod_controller_kind"] = owner["kind"]
            labels["__meta_kubernetes_pod_controller_name"] = owner["name"]
    return {"targets": [status["podIP"]], "labels": labels}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            if self.path == "/targets":
                groups = [g for g in map(target_group, pods("resourceVersion=0")) if g]
                self.answer(200, "application/json", json.dumps(groups))
            elif self.path == "/-/ready":
                pods("limit=1")
                self.answer(200, "text/plain", "ready\n")
            else:
                self.answer(404, "text/plain", "not found\n")
        except OSError as exc:
            # Prometheus keeps the targets it had and logs the failure; so does this process.
            self.log_error("listing Pods failed: %s", exc)
            self.answer(503, "text/plain", f"listing Pods failed: {exc}\n")

    def answer(self, code: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # a line every 2 seconds says nothing


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
EOF
}

write_prometheus_config() {
  cat <<EOF
# Written by tests/cluster/monitoring.sh on every \`up\`: edits are lost.
global:
  scrape_interval: 2s
  scrape_timeout: 1s
  evaluation_interval: 2s

alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$alertmanager_port"]

rule_files:
  - "$dir/rules/*.yml"

scrape_configs:
  - job_name: model-servers
    # The model server labels its own series with the model and version it serves, exactly as the spec names them;
    # the Pod labels carry the same values, sanitized where a version is not a valid label value. Honoring the
    # server's labels keeps its exact values (instead of moving them to exported_model and exported_version), and
    # the target labels below still fill in every series that lacks them (up, process_*). The server exposes none of
    # namespace, pod, job or instance, so those always come from here.
    honor_labels: true
    # With an upstream Prometheus: kubernetes_sd_configs: [{role: pod, kubeconfig_file: ...}], same relabeling.
    http_sd_configs:
      - url: "http://127.0.0.1:$pod_discovery_port/targets"
        refresh_interval: 2s
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        regex: "true"
        action: keep
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Running
        action: keep
      # The serving builder always sets the port; a Pod without it is not ours to guess.
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port]
        regex: "[0-9]+"
        action: keep
      - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_prometheus_io_port]
        regex: "([^:]+);([0-9]+)"
        replacement: "\$1:\$2"
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_prometheus_io_port]
        regex: "(.+:.+);([0-9]+)"
        replacement: "[\$1]:\$2"
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        regex: "(.+)"
        target_label: __metrics_path__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_label_mlops_io_model]
        target_label: model
      - source_labels: [__meta_kubernetes_pod_label_mlops_io_version]
        target_label: version
      - source_labels: [__meta_kubernetes_pod_label_mlops_io_deployment]
        target_label: deployment

  - job_name: mlops-operator
    file_sd_configs:
      - files: ["$dir/targets/*.json"]
        refresh_interval: 2s
EOF
}

write_alertmanager_config() {
  cat <<EOF
# Written by tests/cluster/monitoring.sh on every \`up\`: edits are lost.
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: default
EOF
  if [ -n "${MLOPS_ALERTMANAGER_WEBHOOK:-}" ]; then
    cat <<EOF
    webhook_configs:
      - url: "$MLOPS_ALERTMANAGER_WEBHOOK"
        send_resolved: true
EOF
  fi
}

# Starts binary $2 as component $1 with arguments $3..., detached in a session of its own. The pid file is written by
# the process itself before it execs the binary, so it names the server and not a wrapper.
start() {
  local name=$1 bin=$2 i; shift 2
  rm -f "$dir/$name.pid"
  printf '=== %s %s %s\n' "$(date -Is)" "$bin" "$*" >>"$dir/$name.log"
  # shellcheck disable=SC2016 # expanded by the wrapper
  (cd "$dir" && setsid -f bash -c 'echo $$ >"$0"; exec "$@"' "$dir/$name.pid" "$bin" "$@" \
    </dev/null >>"$dir/$name.log" 2>&1)
  for ((i = 0; i < 50; i++)); do
    pid_of "$name" "$bin" >/dev/null && return 0
    sleep 0.1
  done
}

stop() {
  local name=$1 bin=$2 pid i
  if [ -n "$bin" ] && pid=$(pid_of "$name" "$bin"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pid_of "$name" "$bin" >/dev/null || break
      sleep 0.2
    done
    if pid_of "$name" "$bin" >/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for 10s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$name stopped"
  fi
  rm -f "$dir/$name.pid"
}

# Waits until component $1 (binary $2) answers /-/ready on port $3, for 60 seconds at most.
wait_ready() {
  local name=$1 bin=$2 port=$3 deadline=$((SECONDS + 60))
  until answers "$port"; do
    if ! pid_of "$name" "$bin" >/dev/null; then
      tail -n 20 "$dir/$name.log" >&2 || true
      die "$name exited: see $dir/$name.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$dir/$name.log" >&2 || true
      die "$name did not answer http://127.0.0.1:$port/-/ready within 60s: see $dir/$name.log"
    fi
    sleep 0.2
  done
}

# Brings component $1 (binary $2, port $3) to running with its new config ($4.new replaces $4) and arguments $7...
# A changed config is reloaded with POST $5 (restarted when $5 is empty); a changed stamp $6 restarts it.
converge() {
  local name=$1 bin=$2 port=$3 config=$4 reload=$5 stamp=$6; shift 6
  local pid body
  if pid=$(pid_of "$name" "$bin"); then
    if [ "$(tr '\0' '\n' <"/proc/$pid/cmdline")" != "$(printf '%s\n' "$bin" "$@")" ] ||
      [ "$stamp" != "$(cat "$dir/$name.stamp" 2>/dev/null || true)" ]; then
      log "$name runs with other flags or other credentials: restarting it"
      stop "$name" "$bin"
    elif ! cmp -s "$config.new" "$config"; then
      mv "$config.new" "$config"
      if [ -z "$reload" ]; then
        log "$name has a new config: restarting it"
        stop "$name" "$bin"
      elif body=$(http POST "$port" "$reload"); then
        log "$name reloaded its changed config"
      else
        die "$name did not reload $config: $body (see $dir/$name.log)"
      fi
    fi
  fi
  if [ -f "$config.new" ]; then mv "$config.new" "$config"; fi
  if ! pid_of "$name" "$bin" >/dev/null; then
    if listening "$port"; then
      local variable="MLOPS_${name//-/_}_PORT"
      die "another process listens on 127.0.0.1:$port: stop it, or choose another port with ${variable^^}"
    fi
    echo "$port" >"$dir/$name.port"
    echo "$stamp" >"$dir/$name.stamp"
    start "$name" "$bin" "$@"
    log "$name started (log: $dir/$name.log)"
  fi
  wait_ready "$name" "$bin" "$port"
}

up() {
  [ -f "$mlops_kubeconfig" ] || die "no cluster $mlops_cluster: run $cluster_dir/up.sh first"
  install_packages
  local prometheus alertmanager python credentials tool
  prometheus=$(prometheus_bin)
  alertmanager=$(alertmanager_bin)
  python=$(pod_discovery_bin)
  [ -n "$python" ] || die "pod-discovery needs python3"
  mkdir -p "$dir/rules" "$dir/targets" "$dir/prometheus-data" "$dir/alertmanager-data"

  credentials=$(write_credentials)
  write_pod_discovery >"$dir/pod-discovery.py.new"
  write_alertmanager_config >"$dir/alertmanager.yml.new"
  write_prometheus_config >"$dir/prometheus.yml.new"
  # A config is checked before it replaces one that works; the tools come with the packages.
  if tool=$(command -v amtool) && ! cmp -s "$dir/alertmanager.yml.new" "$dir/alertmanager.yml"; then
    "$tool" check-config "$dir/alertmanager.yml.new" >/dev/null || die "invalid $dir/alertmanager.yml.new"
  fi
  if tool=$(command -v promtool) && ! cmp -s "$dir/prometheus.yml.new" "$dir/prometheus.yml"; then
    "$tool" check config "$dir/prometheus.yml.new" >/dev/null || die "invalid $dir/prometheus.yml.new"
  fi

  converge alertmanager "$alertmanager" "$alertmanager_port" "$dir/alertmanager.yml" /-/reload "" \
    --config.file="$dir/alertmanager.yml" \
    --storage.path="$dir/alertmanager-data" \
    --web.listen-address="127.0.0.1:$alertmanager_port" \
    --cluster.listen-address=
  converge pod-discovery "$python" "$pod_discovery_port" "$dir/pod-discovery.py" "" "$credentials" \
    "$dir/pod-discovery.py" "$pod_discovery_port" "$dir/kube"
  converge prometheus "$prometheus" "$prometheus_port" "$dir/prometheus.yml" /-/reload "" \
    --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/prometheus-data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$prometheus_port" \
    --web.enable-lifecycle

  echo "prometheus   http://127.0.0.1:$prometheus_port ready"
  echo "alertmanager http://127.0.0.1:$alertmanager_port ready"
}

components=(prometheus pod-discovery alertmanager)
bin_of() { "${1//-/_}_bin"; }
port_var() { local v="${1//-/_}_port"; echo "${!v}"; }

down() {
  local name
  for name in "${components[@]}"; do stop "$name" "$(bin_of "$name")"; done
  if [ "$1" = 1 ]; then
    rm -rf "$dir"
    log "deleted $dir"
  fi
}

status() {
  local failed=0 name bin port pid
  for name in "${components[@]}"; do
    bin=$(bin_of "$name")
    port=$(port_var "$name")
    if [ -n "$bin" ] && pid=$(pid_of "$name" "$bin"); then
      if answers "$port"; then
        echo "$name: running (pid $pid) at http://127.0.0.1:$port"
      else
        echo "$name: running (pid $pid) but not ready at http://127.0.0.1:$port (log: $dir/$name.log)"
        failed=1
      fi
    else
      echo "$name: not running (log: $dir/$name.log)"
      failed=1
    fi
  done
  return "$failed"
}

env_lines() {
  echo "export MLOPS_PROMETHEUS_URL=http://127.0.0.1:$prometheus_port"
  echo "export MLOPS_ALERTMANAGER_URL=http://127.0.0.1:$alertmanager_port"
  echo "export MLOPS_MONITORING_DIR=$(printf '%q' "$dir")"
}

usage() { die "usage: $0 up | down [--purge] | env | status"; }

case "${1:-}:${2:-}:$#" in
  up::1) up ;;
  down::1) down 0 ;;
  down:--purge:2) down 1 ;;
  env::1) env_lines ;;
  status::1) status ;;
  *) usage ;;
esac
