# syntax=docker/dockerfile:1
# One image, two entry points:
#   docker build -t mlops-operator:0.1.0 .
#   docker run mlops-operator:0.1.0                          the operator: mlops-operator run (all namespaces)
#   docker run mlops-operator:0.1.0 mlops-server --help      the model server, as ModelDeployments run it
# There is no ENTRYPOINT, so a Pod's `command: [mlops-server]` replaces the default command whole.
#
# Runs as uid 65532 with a read-only root filesystem: only /tmp (an emptyDir in the Pods) is written, so HOME and
# every cache point there and Python writes no bytecode at run time (it is compiled here, at build time).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# A CA bundle for pip where the network needs one (a path inside the build, mounted by the builder); build stage only.
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/mlops \
 && /opt/mlops/bin/pip install --upgrade pip
# The project metadata first, so that the dependency layer is rebuilt only when pyproject.toml changes.
COPY operator/pyproject.toml /src/operator/pyproject.toml
RUN mkdir -p /src/operator/mlops_operator \
 && touch /src/operator/mlops_operator/__init__.py \
 && /opt/mlops/bin/pip install '/src/operator[server,xgboost,lightgbm,s3,gcs]' \
 && /opt/mlops/bin/pip uninstall --yes mlops-operator \
 && rm -rf /src/operator/build /src/operator/*.egg-info /src/operator/mlops_operator
# (The placeholder's build output goes: setuptools would keep its empty __init__.py over the real one copied below,
# whose files are older than it.)
COPY operator/ /src/operator/
RUN /opt/mlops/bin/pip install --no-deps '/src/operator' \
 && /opt/mlops/bin/python -m compileall -q /opt/mlops/lib \
 && /opt/mlops/bin/mlops-operator --version \
 && /opt/mlops/bin/mlops-server --help >/dev/null \
 && /opt/mlops/bin/python -c 'import mlops_operator.server.grpc_service'

FROM ${PYTHON_IMAGE}
# XGBoost's and LightGBM's native libraries load the GNU OpenMP runtime.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
# A numeric user, so that the kubelet can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --gid 65532 mlops \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin mlops
COPY --from=build /opt/mlops /opt/mlops
ENV PATH=/opt/mlops/bin:$PATH \
    VIRTUAL_ENV=/opt/mlops \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    JOBLIB_TEMP_FOLDER=/tmp
USER 65532:65532
WORKDIR /tmp
# 8080: the model server's V2 REST endpoints and /metrics; 8081: the model server's gRPC endpoint, or the operator's
# liveness endpoint (one process per container).
EXPOSE 8080 8081
CMD ["mlops-operator", "run"]
