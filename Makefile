# mlops-operator: every command a developer or CI needs.
#   make test     lint, unit tests, and integration tests on the local control plane (started if needed)
#   make demo     the main job on the local cluster
#   make cluster  a real local control plane (kwokctl binary runtime; kind where a Docker engine answers)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_ENV := eval "$$(tests/cluster/env.sh)"
PYTEST_ARGS ?=

.PHONY: all venv crds lint unit integration test cluster cluster-down demo image bench bench-tools clean helm chart-crds \
	manifests chart-lint proto

all: test

$(VENV)/.installed: operator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e 'operator[dev]'
	touch $@

venv: $(VENV)/.installed

crds: venv
	$(BIN)/mlops-operator crds --output crds

# helm, built from its Go module into the local cluster's bin directory (cached by version); the chart tests and
# the targets below use it.
HELM_PATH := export PATH="$$(tests/cluster/build-binaries.sh helm | tail -n1):$$PATH"

helm:
	tests/cluster/build-binaries.sh helm >/dev/null

# The chart carries a copy of crds/ (Helm installs a chart's crds/ before its templates); a test fails when they differ.
chart-crds: crds
	rm -f charts/mlops-operator/crds/*.yaml
	cp crds/*.yaml charts/mlops-operator/crds/

# manifests/install.yaml for kubectl users, rendered from the chart; a test fails when it is stale.
manifests: chart-crds
	$(HELM_PATH) && charts/render-manifests.sh

chart-lint:
	$(HELM_PATH) && helm lint --strict charts/mlops-operator && \
		helm lint --strict charts/mlops-operator --values charts/mlops-operator/ci/namespaced-values.yaml

# The model server's gRPC modules, generated from its .proto with grpcio-tools (committed: installing needs no
# compiler). Run after editing operator/mlops_operator/server/oip/inference.proto; a unit test fails when they differ.
PROTO := mlops_operator/server/oip/inference.proto
proto: venv
	cd operator && ../$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. $(PROTO)

lint: venv
	$(BIN)/ruff check --config operator/pyproject.toml operator tests
	$(BIN)/ruff format --check --config operator/pyproject.toml operator tests
	$(BIN)/mypy --config-file operator/pyproject.toml operator/mlops_operator tests/unit

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

cluster: venv
	tests/cluster/up.sh

cluster-down:
	tests/cluster/down.sh

integration: venv cluster helm
	$(CLUSTER_ENV) && $(BIN)/pytest tests/integration $(PYTEST_ARGS)

# One pytest run over both tiers, so that its closing line counts every test.
test: lint cluster helm
	$(CLUSTER_ENV) && $(BIN)/pytest tests/unit tests/integration $(PYTEST_ARGS)

# The image (Dockerfile) with docker where an engine answers, else podman; a local Debian base where no registry is
# reachable (tests/cluster/image.sh). IMAGE_TAG chooses the tag.
IMAGE_TAG ?=
image:
	tests/cluster/image.sh $(IMAGE_TAG)

demo: venv cluster
	$(CLUSTER_ENV) && PATH="$(abspath $(BIN)):$$PATH" tests/demo.sh

# Peers measured side by side live in their own environments, so their pins never meet ours.
PEERS := .venv-peers
$(PEERS)/mlflow/.installed:
	$(PYTHON) -m venv $(PEERS)/mlflow
	$(PEERS)/mlflow/bin/pip install --quiet mlflow-skinny sqlalchemy alembic
	touch $@

$(PEERS)/kserve/.installed:
	$(PYTHON) -m venv $(PEERS)/kserve
	$(PEERS)/kserve/bin/pip install --quiet kserve scikit-learn joblib
	touch $@

# evidently 0.7.23 imports a pandas function that pandas 3 removed: pandas below 3.
$(PEERS)/evidently/.installed:
	$(PYTHON) -m venv $(PEERS)/evidently
	$(PEERS)/evidently/bin/pip install --quiet 'evidently==0.7.23' 'pandas<3' pyarrow
	touch $@

# wrk (the HTTP load generator) comes from Debian; ghz (gRPC's) is built from its Go module.
bench-tools:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	tests/cluster/build-binaries.sh ghz >/dev/null

# The CRDs of crds/ first: a cluster made anew has none; then the Gateway API's (bench_canary's HTTPRoutes).
bench: venv cluster bench-tools $(PEERS)/mlflow/.installed $(PEERS)/kserve/.installed $(PEERS)/evidently/.installed
	tests/cluster/build-binaries.sh flagger >/dev/null
	$(CLUSTER_ENV) && kubectl apply --server-side --force-conflicts --field-manager=mlops-bench -f crds >/dev/null && \
		kubectl wait --for=condition=Established --timeout=60s -f crds >/dev/null && \
		gateway_api=$$(tests/cluster/third-party-crds.sh gateway-api) && \
		kubectl apply --server-side --force-conflicts --field-manager=mlops-bench -f "$$gateway_api" >/dev/null && \
		kubectl wait --for=condition=Established --timeout=60s -f "$$gateway_api" >/dev/null && \
		for b in tests/bench/bench_*.py; do \
		echo "== $$b"; BENCH_MLFLOW_PYTHON=$(abspath $(PEERS))/mlflow/bin/python \
		BENCH_KSERVE_PYTHON=$(abspath $(PEERS))/kserve/bin/python \
		BENCH_EVIDENTLY_PYTHON=$(abspath $(PEERS))/evidently/bin/python $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .mypy_cache .ruff_cache operator/*.egg-info
