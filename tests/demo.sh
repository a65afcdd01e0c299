#!/usr/bin/env bash
# `make demo`: serves a real model on the local cluster. Trains a small scikit-learn model, registers it as a
# ModelVersion and deploys it with a ModelDeployment: its Deployment's Pods are real model-server processes (the
# cluster's Pod runner), and requests go to them through the front Service's endpoints, their answers checked
# against the model's own. Then a better version takes production over and the deployment rolls to it under a
# steady load that must lose no request; Prometheus shows the requests each version served. Then the deployment
# hands its version changes to a canary policy (manifests/examples/canaryrollout.yaml): a good 1.2.0 goes through
# its steps under load and is promoted without a failed request, and a defective 1.3.0 (answers 200, predicts the
# opposite) is rolled back by its prediction shift, shown with `kubectl mlops status` and `history`.
#
# Leaves the namespace ($MLOPS_DEMO_NAMESPACE, default mlops-demo) and the artifacts ($MLOPS_DEMO_DIR, default
# $TMPDIR/mlops-demo) for a look afterwards; each run starts both afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

ns=${MLOPS_DEMO_NAMESPACE:-mlops-demo}
work=${MLOPS_DEMO_DIR:-${TMPDIR:-/tmp}/mlops-demo}
model=fraud-detector
md=fraud # the ModelDeployment of manifests/examples/modeldeployment.yaml
py=${PYTHON:-python}
helper=tests/demo_model.py
# `kubectl mlops` runs the console script kubectl-mlops, installed beside the Python that runs the demo.
pybin=$(command -v "$py") || { echo "no $py on PATH" >&2; exit 1; }
PATH="$(dirname "$pybin"):$PATH"
# Pods start in a second on an idle local cluster; a busy control plane can take tens of seconds per step.
timeout=${MLOPS_DEMO_TIMEOUT:-120s}
# A canary run: its steps' windows (about a minute and a half for a good version) plus the Pods' starts.
canary_timeout=${MLOPS_DEMO_CANARY_TIMEOUT:-300s}
started=$SECONDS
operator='' load='' pods='' rollout=''

step() { printf '\n== %s  [%ss]\n' "$*" $((SECONDS - started)); }
stop() { # pid: SIGTERM, then wait for the process to finish
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$load"
  stop "$operator"
  if [ "$rc" -ne 0 ]; then
    printf '\n== the demo failed (exit %s); what the operator saw last:\n' "$rc" >&2
    kubectl get mlops -n "$ns" >&2 || true
    [ -z "$rollout" ] || kubectl mlops status "$rollout" -n "$ns" >&2 || true
    grep -E ' (WARNING|ERROR) ' "$work/operator.log" 2>/dev/null | tail -n 3 >&2 || true
  fi
}
trap cleanup EXIT
wait_http() { # url pid log: until the url answers 200, while the process lives
  for _ in $(seq 300); do
    curl -fs -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; return 1; }
    sleep 0.1
  done
  echo "no answer from $1 after 30s" >&2
  tail -n 20 "$3" >&2
  return 1
}
seconds() { # a duration as kubectl takes it (90s, 2m, 1h) in whole seconds
  case $1 in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *) echo "${1%s}" ;;
  esac
}
until_jsonpath() { # object jsonpath expected timeout: until the object's field (as kubectl prints it) is expected
  local got=''
  for _ in $(seq "$(seconds "$4")"); do
    got=$(kubectl get -n "$ns" "$1" -o jsonpath="$2")
    [ "$got" = "$3" ] && return 0
    sleep 1
  done
  echo "$1: $2 is '$got' after $4, not '$3'" >&2
  return 1
}
until_run() { # candidate phase [step]: until the rollout runs the candidate in that phase (at that step or later);
  # fails as soon as the run ends otherwise
  local candidate=$1 phase=$2 step=${3:-0} got='' c p n
  for _ in $(seq "$(seconds "$canary_timeout")"); do
    got=$(kubectl get -n "$ns" "canaryrollout/$rollout" \
      -o jsonpath='{.status.candidate} {.status.phase} {.status.currentStep}')
    read -r c p n <<<"$got"
    if [ "$c" = "$candidate" ]; then
      [ "$p" = "$phase" ] && [ "${n:-0}" -ge "$step" ] && return 0
      case $p in
        Promoted | RolledBack | Aborted)
          echo "canaryrollout/$rollout: the run of $candidate ended $p, not $phase${3:+ at step $step}" >&2
          return 1 ;;
      esac
    fi
    sleep 1
  done
  echo "canaryrollout/$rollout: not $candidate $phase${3:+ at step $step} after $canary_timeout (candidate, phase," \
    "step: $got)" >&2
  return 1
}
start_load() { # body report: a steady load of 50 requests/s through the front Service, in the background
  "$py" tests/dataplane/traffic.py --namespace "$ns" --entry "service/$front" --model "$model" \
    --body "@$1" --rate 50 --duration 600 >"$2.json" 2>"$2.log" &
  load=$!
}
stop_load() { # report what: stops the load; prints its summary, or its report and fails when a request failed
  sleep 2
  kill -TERM "$load"
  if ! wait "$load"; then
    load=''
    echo "requests failed $2:" >&2
    cat "$1.json" "$1.log" >&2
    exit 1
  fi
  load=''
  "$py" "$helper" load-summary "$1.json"
}

step "a fresh namespace $ns, the CRDs, the operator"
kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
rm -rf "$work"
mkdir -p "$work"
kubectl apply --server-side --force-conflicts --field-manager=mlops-demo -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout="$timeout" -f crds/ >/dev/null
kubectl create namespace "$ns" >/dev/null
port=$("$py" "$helper" free-port)
# The demo's artifacts and dataset are files under $work: the only place the operator may read files from.
# The local Prometheus and Alertmanager listen on loopback: the only loopback addresses the operator may reach for
# the alert rule below (its PromQL and its receiver).
hostport() { local rest=${1#*://}; echo "${rest%%/*}"; }
mlops-operator run --namespace "$ns" --liveness "http://127.0.0.1:$port/healthz" --metrics "" \
  --allow-file-root "$work" --allow-host "$(hostport "$MLOPS_PROMETHEUS_URL")" \
  --allow-host "$(hostport "$MLOPS_ALERTMANAGER_URL")" >"$work/operator.log" 2>&1 &
operator=$!
wait_http "http://127.0.0.1:$port/healthz" "$operator" "$work/operator.log"
echo "operator running: pid $operator, log $work/operator.log"

register() { # version description [live]: trains the version, registers it and asks for production; with live,
  # production also waits for the deployment's canary to promote it (the liveCanary gate)
  local version=$1 description=$2 live=${3:-} dir="$work/$1" checksum auc logloss gate=''
  [ -z "$live" ] || gate="liveCanary: {deploymentRef: {name: $md}}"
  read -r checksum auc logloss < <("$py" "$helper" train "$dir" "$version")
  [ -n "$logloss" ] || { echo "training $version failed" >&2; return 1; }
  kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f - <<EOF
apiVersion: mlops.io/v1alpha1
kind: ModelVersion
metadata:
  name: $model-${version//./-}
spec:
  model: $model
  version: "$version"
  description: "$description"
  source: file://$dir/model.joblib
  checksum: $checksum
  format: sklearn
  signature:
    inputs:
      - {name: features, datatype: FP64, shape: [-1, 4], features: [amount, age_days, merchant_risk, hour]}
    outputs:
      - {name: predict, datatype: INT64, shape: [-1]}
      - {name: predict_proba, datatype: FP64, shape: [-1, 2]}
  metrics:
    - {name: auc, value: $auc}
    - {name: logloss, value: $logloss, lowerIsBetter: true}
  reference: {uri: file://$dir/reference.parquet, prediction: is_fraud}
  gates:
    - {metric: auc, min: 0.85}
    - {metric: auc, notWorseThan: production, tolerance: 0.005}
  $gate
  stage: production
EOF
  if [ -n "$live" ]; then
    kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="GatesPassed")].reason}'=AwaitingCanary -n "$ns" \
      --timeout="$timeout" "modelversion/$model-${version//./-}" >/dev/null
  else
    kubectl wait --for=condition=Ready -n "$ns" --timeout="$timeout" "modelversion/$model-${version//./-}" >/dev/null
  fi
}

front=$md # the front Service of the ModelDeployment, named after it
endpoints() { # the ready addresses behind the front Service, as kube-proxy would pick from
  kubectl get endpointslices -n "$ns" -l "kubernetes.io/service-name=$front" \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}'
}
ask() { # version: each Pod behind the front Service answers as the version's own model does
  local version=$1 ip
  for ip in $(endpoints); do
    echo "-- Pod $ip (front Service $front):"
    "$py" "$helper" check "http://$ip:8080" "$model" "$work/$version"
  done
}

step "train $model 1.0.0, register it, ask for production"
register 1.0.0 "Logistic regression baseline."
kubectl get modelversions -n "$ns" -o wide

step "deploy it: manifests/examples/modeldeployment.yaml (follow production, 2 replicas)"
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f manifests/examples/modeldeployment.yaml
kubectl wait --for=condition=Ready -n "$ns" --timeout="$timeout" "modeldeployment/$md" >/dev/null
kubectl get modeldeployment -n "$ns" "$md"

step "its Pods are model servers: ask each through the front Service"
kubectl wait --for=condition=Ready -n "$ns" --timeout="$timeout" pods -l "mlops.io/deployment=$md" >/dev/null
kubectl get pods -n "$ns" -o wide
ask 1.0.0
pods=$(kubectl get pods -n "$ns" -l "mlops.io/deployment=$md" -o jsonpath='{.items[*].metadata.name}')

old=$(kubectl get deployment -n "$ns" -l "mlops.io/deployment=$md,mlops.io/version=1.0.0" -o name)
step "a steady load through the front Service (50 requests/s), kept up until 1.0.0's Pods are gone"
"$py" "$helper" request >"$work/request.json"
start_load "$work/request.json" "$work/load"

step "train 1.1.0 (gradient-boosted trees), register it, ask for production: it takes over from 1.0.0"
register 1.1.0 "Gradient-boosted trees: learns the night-time step."
kubectl wait --for=jsonpath='{.status.stage}'=archived -n "$ns" --timeout="$timeout" "modelversion/$model-1-0-0" >/dev/null
kubectl get modelversions -n "$ns" -o wide
echo
kubectl get events -n "$ns" --field-selector involvedObject.kind=ModelVersion --sort-by=.metadata.creationTimestamp \
  -o custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message

step "the deployment rolls to 1.1.0"
kubectl wait --for=jsonpath='{.status.version}'=1.1.0 -n "$ns" --timeout="$timeout" "modeldeployment/$md" >/dev/null
kubectl wait --for=condition=Ready -n "$ns" --timeout="$timeout" "modeldeployment/$md" >/dev/null
kubectl wait --for=delete -n "$ns" --timeout="$timeout" "$old" >/dev/null
kubectl wait --for=delete -n "$ns" --timeout="$timeout" pods -l "mlops.io/deployment=$md,mlops.io/version=1.0.0" >/dev/null
kubectl get modeldeployment -n "$ns" "$md"
echo
kubectl get events -n "$ns" --field-selector involvedObject.kind=ModelDeployment --sort-by=.metadata.creationTimestamp \
  -o custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message

step "the load went on through the whole rollout: every request answered"
stop_load "$work/load" "during the rollout"

step "ask 1.1.0's Pods through the front Service"
ask 1.1.0

step "Prometheus scraped the servers: requests by version"
pods="$pods $(kubectl get pods -n "$ns" -l "mlops.io/deployment=$md" -o jsonpath='{.items[*].metadata.name}')"
# shellcheck disable=SC2086 # one argument per Pod
"$py" "$helper" prometheus "$MLOPS_PROMETHEUS_URL" "$ns" $pods

rollout=fraud # the CanaryRollout of manifests/examples/canaryrollout.yaml
step "canary policy: manifests/examples/canaryrollout.yaml; the deployment's rollout.strategy canary, on 4 replicas"
echo "(the replicas router approximates the weights with Pod counts: 25% is 1 Pod of 4, 50% 2, 75% 3)"
kubectl patch modeldeployment "$md" -n "$ns" --type merge \
  -p '{"spec": {"replicas": 4, "rollout": {"strategy": "canary"}}}'
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f manifests/examples/canaryrollout.yaml
kubectl wait --for=jsonpath='{.status.phase}'=Idle -n "$ns" --timeout="$timeout" "canaryrollout/$rollout" >/dev/null
until_jsonpath "modeldeployment/$md" '{.status.readyReplicas}' 4 "$timeout"
kubectl get modeldeployment,canaryrollout -n "$ns"

step "a good version 1.2.0 under the policy, with a steady load of 50 requests/s (8 transactions each)"
"$py" "$helper" request --rows 8 >"$work/batch.json"
start_load "$work/batch.json" "$work/canary-load"
register 1.2.0 "Gradient-boosted trees, fewer rounds on larger leaves: a little better, no slower." live
echo "(1.2.0 asks for production with the liveCanary gate: production waits for the deployment's canary)"
kubectl get modelversions -n "$ns" -o wide
# Its first analysis passed once the rollout moves on to step 2 (setWeight 50).
until_run 1.2.0 Progressing 2
echo
kubectl mlops status "$rollout" -n "$ns"
echo
kubectl get deployments -n "$ns" -l "mlops.io/deployment=$md" # the Pods that carry the weights
until_run 1.2.0 Promoted

step "1.2.0 promoted: it serves alone, and every request was answered"
until_jsonpath "modeldeployment/$md" '{.status.traffic}' "1.2.0=100" "$timeout"
kubectl wait --for=delete -n "$ns" --timeout="$timeout" pods -l "mlops.io/deployment=$md,mlops.io/version=1.1.0" \
  >/dev/null
kubectl mlops status "$rollout" -n "$ns"
kubectl get modeldeployment -n "$ns" "$md"
kubectl wait --for=jsonpath='{.status.stage}'=production -n "$ns" --timeout="$timeout" "modelversion/$model-1-2-0" \
  >/dev/null
echo "the promoted canary granted production:"
kubectl get modelversions -n "$ns" -o wide
stop_load "$work/canary-load" "during 1.2.0's canary"

step "a defective version 1.3.0: its pipeline inverted the labels (its metric gates pass), under the same load"
start_load "$work/batch.json" "$work/defect-load"
register 1.3.0 "Gradient-boosted trees on a new extract (its label join inverted is_fraud)." live
until_run 1.3.0 RolledBack

step "1.3.0 rolled back: the policy stopped it, 1.2.0 serves alone again"
until_jsonpath "modeldeployment/$md" '{.status.traffic}' "1.2.0=100" "$timeout"
kubectl wait --for=delete -n "$ns" --timeout="$timeout" pods -l "mlops.io/deployment=$md,mlops.io/version=1.3.0" \
  >/dev/null
kubectl mlops status "$rollout" -n "$ns"
echo
kubectl mlops history "$rollout" -n "$ns"
echo
kubectl get modeldeployment -n "$ns" "$md"
driver='{"status.canary: rollout "}{.status.canary.rollout}{", phase "}{.status.canary.phase}'
driver+='{", stopped "}{.status.canary.stopped}{"\n  message: "}{.status.canary.message}'
driver+='{"\nReady: "}{.status.conditions[?(@.type=="Ready")].message}{"\n"}'
kubectl get modeldeployment -n "$ns" "$md" -o jsonpath="$driver"
echo
kubectl get events -n "$ns" --field-selector "involvedObject.kind=CanaryRollout,involvedObject.name=$rollout" \
  --sort-by=.metadata.creationTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message
echo
kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="GatesPassed")].status}'=False -n "$ns" \
  --timeout="$timeout" "modelversion/$model-1-3-0" >/dev/null
echo "the registry refused production to 1.3.0 with the rollout's reason; 1.2.0 keeps it:"
kubectl get modelversions -n "$ns" -o wide
echo
stop_load "$work/defect-load" "during 1.3.0's canary"
echo "(1.3.0's answers were all 200, with the wrong class: the prediction shift is what caught it)"

step "drift monitoring: manifests/examples/driftmonitor.yaml, here every 10s over the last minute"
# Fresh transactions of the training distribution for a minute: the monitor's window holds only them.
"$py" "$helper" requests --count 600 >"$work/fresh.jsonl"
start_load "$work/fresh.jsonl" "$work/fresh-load"
sleep 65
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f manifests/examples/driftmonitor.yaml
kubectl patch driftmonitor fraud -n "$ns" --type=merge -p '{"spec": {"interval": "10s", "window": "1m"}}' >/dev/null
until_jsonpath driftmonitor/fraud '{.status.verdict}' NotDrifted "$timeout"
features='{range .status.features[*]}{"  "}{.name}{": "}{.method}{" "}{.statistic}{" -> "}{.verdict}{"\n"}{end}'
features+='{"  "}{.status.prediction.name}{" (prediction): "}{.status.prediction.method}{" "}'
features+='{.status.prediction.statistic}{" -> "}{.status.prediction.verdict}{"\n"}{.status.message}{"\n"}'
kubectl get driftmonitor fraud -n "$ns" -o jsonpath="$features"
stop_load "$work/fresh-load" "with fresh transactions"

step "the traffic shifts: amounts three times as large, riskier merchants"
"$py" "$helper" requests --count 600 --amount-scale 3 --risk-shift 0.2 --seed 22 >"$work/shifted.jsonl"
start_load "$work/shifted.jsonl" "$work/shifted-load"
until_jsonpath driftmonitor/fraud "{.status.verdict}" Drifted 120s
kubectl get driftmonitor fraud -n "$ns" -o jsonpath="$features"
kubectl get driftmonitor -n "$ns"
kubectl get events -n "$ns" --field-selector "involvedObject.kind=DriftMonitor" --sort-by=.metadata.creationTimestamp \
  -o custom-columns=REASON:.reason,MESSAGE:.message
stop_load "$work/shifted-load" "with shifted transactions"

step "alerting: manifests/examples/alertrule.yaml on the drifted monitor (pending: it must hold for 10m)"
kubectl create secret generic alerting -n "$ns" --from-literal=slack-url=https://hooks.slack.invalid/services/demo \
  --from-literal=alertmanager-url="$MLOPS_ALERTMANAGER_URL" >/dev/null
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f manifests/examples/alertrule.yaml
# Only the Events receiver here: the demo has no Slack workspace.
kubectl patch alertrule fraud-drift -n "$ns" --type=merge \
  -p '{"spec": {"interval": "10s", "receivers": [{"name": "events", "event": {}}]}}' >/dev/null
until_jsonpath alertrule/fraud-drift '{.status.state}' pending "$timeout"
kubectl get alertrule fraud-drift -n "$ns"

step "a PromQL rule on the error rate, into the local Alertmanager; a fifth of the requests go bad"
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f - <<EOF
apiVersion: mlops.io/v1alpha1
kind: AlertRule
metadata: {name: fraud-errors}
spec:
  expr: >-
    sum by (namespace, deployment) (rate(mlops_server_requests_total{namespace="$ns",code!~"2.."}[20s]))
    / sum by (namespace, deployment) (rate(mlops_server_requests_total{namespace="$ns"}[20s])) > 0.1
  prometheus: {address: "$MLOPS_PROMETHEUS_URL"}
  for: 10s
  interval: 10s
  severity: critical
  annotations: {summary: "{{ \$labels.deployment }} answers {{ \$value | humanizePercentage }} of requests with errors"}
  receivers:
    - name: alertmanager
      alertmanager: {urlSecretRef: {name: alerting, key: alertmanager-url}}
    - name: events
      event: {}
EOF
"$py" "$helper" requests --count 500 --malformed 0.2 --seed 23 >"$work/bad.jsonl"
"$py" tests/dataplane/traffic.py --namespace "$ns" --entry "service/$front" --model "$model" \
  --body "@$work/bad.jsonl" --rate 50 --duration 600 >"$work/bad-load.json" 2>"$work/bad-load.log" &
load=$!
until_jsonpath alertrule/fraud-errors '{.status.state}' pending 120s
echo "pending: the rule holds, not yet for 10s"
until_jsonpath alertrule/fraud-errors '{.status.state}' firing 60s
kubectl get alertrule fraud-errors -n "$ns"
echo "the local Alertmanager lists it:"
"$py" "$helper" alertmanager "$MLOPS_ALERTMANAGER_URL" "$ns" fraud-errors
kill -TERM "$load"
wait "$load" || true
load=''
echo "the bad requests stop; healthy traffic only:"
start_load "$work/fresh.jsonl" "$work/healthy-load"
until_jsonpath alertrule/fraud-errors '{.status.state}' inactive 120s
kubectl get alertrule fraud-errors -n "$ns" \
  -o jsonpath='{range .status.alerts[*]}{"  "}{.labels.deployment}{": "}{.state}{" at "}{.resolvedAt}{"\n"}{end}'
kubectl get events -n "$ns" --field-selector "involvedObject.name=fraud-errors" --sort-by=.metadata.creationTimestamp \
  -o custom-columns=REASON:.reason,MESSAGE:.message
stop_load "$work/healthy-load" "after the bad requests"

step "what is there"
kubectl get mlops -n "$ns"
echo
kubectl get deploy,svc,pods -n "$ns"

stop "$operator"
operator=''
step "done: the operator is stopped (the servers run as long as their Pods)"
echo "look around: kubectl get mlops,deploy,svc,pods,configmaps -n $ns; logs and artifacts in $work"
echo "remove: kubectl delete namespace $ns && rm -rf $work"
