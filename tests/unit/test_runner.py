"""The Pod runner's reading of a Pod: which Pods it runs, the environment, mount paths and probes it gives the
process, and its restart back-off. Pure functions, no cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dataplane import runner

POD: dict[str, Any] = {
    "metadata": {"name": "fraud-1-abc", "namespace": "team", "uid": "u-1", "labels": {"app": "fraud"}},
    "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "server", "command": ["mlops-server"]}]},
    "status": {"podIP": "10.244.0.7", "hostIP": "10.0.0.1"},
}


def test_only_pods_running_the_model_server_are_taken() -> None:
    assert runner.is_server_pod(POD)
    plain = {**POD, "spec": {"containers": [{"name": "c", "command": ["sleep", "1"]}, {"name": "d"}]}}
    assert not runner.is_server_pod(plain)


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert runner.expand("$(A)-$(B)", env) == "1-two"
    assert runner.expand("$(MISSING) stays", env) == "$(MISSING) stays"
    assert runner.expand("$$(A) is escaped", env) == "$(A) is escaped"


def test_mount_paths_are_rewritten_to_their_folders_longest_first() -> None:
    mounts = [("/etc/mlops/profile", "/s/profile"), ("/etc/mlops", "/s/etc"), ("/tmp", "/s/tmp")]
    assert runner.rewrite_mounts("@/etc/mlops/profile/profile.json", mounts) == "@/s/profile/profile.json"
    assert runner.rewrite_mounts("/etc/mlops/other", mounts) == "/s/etc/other"
    assert runner.rewrite_mounts("--dir=/tmp", mounts) == "--dir=/s/tmp"
    # Only whole path components: /tmpfoo and /var/tmp are not the /tmp mount.
    assert runner.rewrite_mounts("/tmpfoo /var/tmp", mounts) == "/tmpfoo /var/tmp"


def lookup(kind: str, name: str, key: str | None, optional: bool) -> Any:
    data = {("configMapKeyRef", "cm"): {"level": "debug"}, ("configMapRef", "cm"): {"level": "debug", "x": "y"}}
    found = data.get((kind, name), {})
    return found if key is None else found.get(key)


def test_the_environment_is_built_as_the_kubelet_builds_it() -> None:
    container = {
        "name": "server",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "level"}}},
            {"name": "URL", "value": "http://$(IP):8080/$(NAME)"},
        ],
    }
    env = runner.container_environment(POD, container, lookup)
    assert env == {"CM_level": "debug", "CM_x": "y", "NAME": "fraud-1-abc", "IP": "10.244.0.7", "APP": "fraud",
                   "LEVEL": "debug", "URL": "http://10.244.0.7:8080/fraud-1-abc"}  # fmt: skip


def test_what_cannot_run_here_is_refused_with_a_reason() -> None:
    with pytest.raises(runner.Unsupported, match=r"fieldRef status\.podIPs is not supported here"):
        runner.field_value(POD, "status.podIPs")
    with pytest.raises(runner.Unsupported, match="only httpGet and tcpSocket probes run here"):
        runner.Probe.of({"name": "server", "livenessProbe": {"exec": {"command": ["true"]}}}, "livenessProbe")
    with pytest.raises(runner.Unsupported, match="container server has no port named 'metrics'"):
        runner.port_number({"name": "server", "ports": [{"name": "http", "containerPort": 8080}]}, "metrics")


def test_probes_take_the_containers_settings_and_kubernetes_defaults() -> None:
    container = {
        "name": "server",
        "ports": [{"name": "http", "containerPort": 9000}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"tcpSocket": {"port": 9000}},
    }
    assert runner.Probe.of(container, "readinessProbe") == runner.Probe(9000, "/ready", 5.0, 1.0, 2, 1)
    assert runner.Probe.of(container, "livenessProbe") == runner.Probe(9000, None, 10.0, 1.0, 3, 1)
    assert runner.Probe.of(container, "startupProbe") is None


def test_restart_back_off_doubles_to_five_minutes() -> None:
    assert [runner.backoff(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
