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
trap 'kill -TERM $operator 2>/dev/null; wait $operator 2>/dev/null || true; rm -rf "${artifacts:-}"' EXIT
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:18081/healthz >/dev/null && break
  kill -0 $operator 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
echo "operator running (pid $operator, log $log)"

# The registry: two versions of a model with real artifacts; the second is promoted over the first.
artifacts=$(mktemp -d -t mlops-demo-artifacts.XXXXXX)
register() { # name version auc
  head -c 200000 /dev/urandom >"$artifacts/$1.bin"
  local sum
  sum=$(sha256sum "$artifacts/$1.bin" | cut -d' ' -f1)
  kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f - <<EOF
apiVersion: mlops.io/v1alpha1
kind: ModelVersion
metadata: {name: $1}
spec:
  model: fraud-detector
  version: "$2"
  source: file://$artifacts/$1.bin
  checksum: sha256:$sum
  format: sklearn
  metrics: [{name: auc, value: $3}, {name: logloss, value: 0.2, lowerIsBetter: true}]
  gates: [{metric: auc, min: 0.9}, {metric: auc, notWorseThan: production, tolerance: 0.005}]
  stage: production
EOF
}
register fraud-detector-1-0-0 1.0.0 0.94
kubectl wait --for=condition=Ready -n "$ns" --timeout=60s modelversion/fraud-detector-1-0-0 >/dev/null
register fraud-detector-1-1-0 1.1.0 0.95
kubectl wait --for=condition=Ready -n "$ns" --timeout=60s modelversion/fraud-detector-1-1-0 >/dev/null
kubectl wait --for=jsonpath='{.status.stage}'=archived -n "$ns" --timeout=60s modelversion/fraud-detector-1-0-0 >/dev/null
echo
kubectl get modelversions -n "$ns" -o wide
echo
kubectl get events -n "$ns" --field-selector involvedObject.kind=ModelVersion \
  -o custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message
echo

# The other kinds (their controllers come later: they are accepted and observed).
for f in manifests/examples/*.yaml; do
  [ "$(basename "$f")" = modelversion.yaml ] || kubectl apply --server-side --field-manager=mlops-demo -n "$ns" -f "$f"
done
for kind in modeldeployment canaryrollout driftmonitor alertrule; do
  kubectl wait --for=jsonpath='{.status.observedGeneration}' -n "$ns" --timeout=60s "$kind" --all >/dev/null
done
echo
kubectl get mlops -n "$ns"
