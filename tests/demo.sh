#!/usr/bin/env bash
# The main job on the local cluster: install the CRDs, run the operator, apply the examples, show what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

ns=${MLOPS_DEMO_NAMESPACE:-mlops-demo}
log=$(mktemp -t mlops-operator-demo.XXXXXX.log)

kubectl apply --server-side --force-conflicts --field-manager=mlops-demo -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

mlops-operator run --namespace "$ns" --liveness http://127.0.0.1:18081/healthz >"$log" 2>&1 &
operator=$!
trap 'kill -TERM $operator 2>/dev/null; wait $operator 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:18081/healthz >/dev/null && break
  kill -0 $operator 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
echo "operator running (pid $operator, log $log)"

kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f manifests/examples/
for kind in modelversion modeldeployment canaryrollout driftmonitor alertrule; do
  kubectl wait --for=jsonpath='{.status.observedGeneration}' -n "$ns" --timeout=60s "$kind" --all >/dev/null
done
echo
kubectl get mlops -n "$ns"
