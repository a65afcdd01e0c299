#!/usr/bin/env bash
# `make demo`: serves a real model on the local cluster. Trains a small scikit-learn model, registers it as a
# ModelVersion, deploys it with a ModelDeployment, runs the model server as a local process with the environment of
# the Deployment the operator generated, and checks its answers against the model's own. Then a better version
# takes production over and the deployment rolls to it.
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
# Pods start in a second on an idle local cluster; a busy control plane can take tens of seconds per step.
timeout=${MLOPS_DEMO_TIMEOUT:-120s}
started=$SECONDS
operator='' server=''

step() { printf '\n== %s  [%ss]\n' "$*" $((SECONDS - started)); }
stop() { # pid: SIGTERM, then wait for the process to finish
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$server"
  stop "$operator"
  if [ "$rc" -ne 0 ]; then
    printf '\n== the demo failed (exit %s); what the operator saw last:\n' "$rc" >&2
    kubectl get mlops -n "$ns" >&2 || true
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

step "a fresh namespace $ns, the CRDs, the operator"
kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
rm -rf "$work"
mkdir -p "$work"
kubectl apply --server-side --force-conflicts --field-manager=mlops-demo -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout="$timeout" -f crds/ >/dev/null
kubectl create namespace "$ns" >/dev/null
port=$("$py" "$helper" free-port)
# The demo's artifacts and dataset are files under $work: the only place the operator may read files from.
mlops-operator run --namespace "$ns" --liveness "http://127.0.0.1:$port/healthz" --metrics "" \
  --allow-file-root "$work" >"$work/operator.log" 2>&1 &
operator=$!
wait_http "http://127.0.0.1:$port/healthz" "$operator" "$work/operator.log"
echo "operator running: pid $operator, log $work/operator.log"

register() { # version description: trains the version, registers it and asks for production
  local version=$1 description=$2 dir="$work/$1" checksum auc logloss
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
  stage: production
EOF
  kubectl wait --for=condition=Ready -n "$ns" --timeout="$timeout" "modelversion/$model-${version//./-}" >/dev/null
}

serve() { # version: the model server as a local process, configured from the Deployment that serves the version
  local version=$1 dir="$work/$1" deployment configmap port settings
  deployment=$(kubectl get deployment -n "$ns" -l "mlops.io/deployment=$md,mlops.io/version=$version" \
    -o jsonpath='{.items[0].metadata.name}')
  kubectl get deployment -n "$ns" "$deployment" -o json >"$dir/deployment.json"
  # In a Pod the reference profile is the ConfigMap mounted at /etc/mlops/profile; here it is a file.
  configmap=$(kubectl get deployment -n "$ns" "$deployment" \
    -o jsonpath='{.spec.template.spec.volumes[?(@.name=="profile")].configMap.name}')
  kubectl get configmap -n "$ns" "$configmap" -o jsonpath='{.data.profile\.json}' >"$dir/profile.json"
  port=$("$py" "$helper" free-port)
  "$py" "$helper" server-env "$port" "$dir/profile.json" <"$dir/deployment.json" >"$dir/server.env"
  mapfile -t settings <"$dir/server.env"
  echo "mlops-server with the env of container server of deployment/$deployment (port and profile made local):"
  printf '  %.116s\n' "${settings[@]}"
  env "${settings[@]}" mlops-server --host 127.0.0.1 >"$dir/server.log" 2>&1 &
  server=$!
  server_url=http://127.0.0.1:$port
  wait_http "$server_url/v2/health/ready" "$server" "$dir/server.log"
  echo "ready: $server_url (pid $server, log $dir/server.log)"
}

step "train $model 1.0.0, register it, ask for production"
register 1.0.0 "Logistic regression baseline."
kubectl get modelversions -n "$ns" -o wide

step "deploy it: manifests/examples/modeldeployment.yaml (follow production, 2 replicas)"
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f manifests/examples/modeldeployment.yaml
kubectl wait --for=condition=Ready -n "$ns" --timeout="$timeout" "modeldeployment/$md" >/dev/null
kubectl get modeldeployment -n "$ns" "$md"

step "serve 1.0.0 locally and ask it"
serve 1.0.0
"$py" "$helper" check "$server_url" "$model" "$work/1.0.0"
stop "$server"
server=''

old=$(kubectl get deployment -n "$ns" -l "mlops.io/deployment=$md,mlops.io/version=1.0.0" -o name)
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

step "serve 1.1.0 locally and ask it"
serve 1.1.0
"$py" "$helper" check "$server_url" "$model" "$work/1.1.0"
stop "$server"
server=''

step "drift monitoring and alerting on the deployment (accepted; their controllers come later)"
kubectl apply --server-side --field-manager=mlops-demo -n "$ns" \
  -f manifests/examples/driftmonitor.yaml -f manifests/examples/alertrule.yaml
kubectl wait --for=jsonpath='{.status.observedGeneration}' -n "$ns" --timeout="$timeout" driftmonitor,alertrule --all >/dev/null

step "what is there"
kubectl get mlops -n "$ns"
echo
kubectl get deploy,svc,pods -n "$ns"

stop "$operator"
operator=''
step "done: the operator and the servers are stopped"
echo "look around: kubectl get mlops,deploy,svc,pods,configmaps -n $ns; logs and artifacts in $work"
echo "remove: kubectl delete namespace $ns && rm -rf $work"
