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
    assert runner.runs_here(POD)
    plain = {**POD, "spec": {"containers": [{"name": "c", "command": ["sleep", "1"]}, {"name": "d"}]}}
    assert not runner.runs_here(plain)


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
        "livenessProbe": {"tcpSocket": {"port": 9000}, "initialDelaySeconds": 10},
    }
    assert runner.Probe.of(container, "readinessProbe") == runner.Probe(9000, "/ready", 5.0, 1.0, 2, 1)
    assert runner.Probe.of(container, "livenessProbe") == runner.Probe(9000, None, 10.0, 1.0, 3, 1, delay=10.0)
    assert runner.Probe.of(container, "startupProbe") is None


def test_restart_back_off_doubles_to_five_minutes() -> None:
    assert [runner.backoff(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]


OPERATOR_POD: dict[str, Any] = {
    "metadata": {"name": "op-1", "namespace": "team", "uid": "u-2"},
    "spec": {"containers": [{"name": "sidecar", "command": ["sleep"]},
                            {"name": "operator", "command": ["mlops-operator"]}]},
}  # fmt: skip


def test_the_operator_pod_is_taken_too_and_its_own_container_is_the_one_run() -> None:
    assert runner.runs_here(OPERATOR_POD)
    assert runner.main_container(OPERATOR_POD)["name"] == "operator"
    assert runner.program(runner.main_container(OPERATOR_POD)) == runner.OPERATOR
    assert runner.program(runner.main_container(POD)) == runner.SERVER


def test_a_namespace_label_chooses_the_data_plane_and_anything_else_is_the_default() -> None:
    assert runner.namespace_mode({"mlops.io/data-plane": "container"}, "process") == "container"
    assert runner.namespace_mode({"mlops.io/data-plane": "simulated"}, "container") == "simulated"
    assert runner.namespace_mode({"mlops.io/data-plane": "bogus"}, "container") == "container"
    assert runner.namespace_mode({}, "process") == "process"


SECURE_POD: dict[str, Any] = {
    "metadata": {"name": "fraud-1-abc", "namespace": "team", "uid": "u-1"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 2000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "server", "image": "mlops-operator:1.2.3", "command": ["mlops-server", "--verbose"],
            "args": ["--port", "8080"], "workingDir": "/work",
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        }],
    },
}  # fmt: skip
PODMAN = ["/usr/bin/podman", "--runtime", "/usr/sbin/runc", "run", "--ulimit", "nofile=1024:1024"]


def test_the_container_runs_as_the_security_context_says() -> None:
    container = SECURE_POD["spec"]["containers"][0]
    options = runner.security_options(SECURE_POD, container, image_user="")
    assert options == ["--user", "65532:65532", "--group-add", "2000", "--read-only", "--read-only-tmpfs=false",
                       "--security-opt", "no-new-privileges",
                       "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"]  # fmt: skip
    # The container's own fields win over the Pod's.
    mine = {**container, "securityContext": {"runAsUser": 1000}}
    assert runner.security_options(SECURE_POD, mine, image_user="")[:2] == ["--user", "1000:65532"]


@pytest.mark.parametrize(
    ("pod_context", "container_context", "image_user", "message"),
    [
        ({"runAsNonRoot": True}, {}, "", "would run as root"),
        ({"runAsNonRoot": True}, {}, "0:0", "would run as root"),
        ({"runAsNonRoot": True, "runAsUser": 0}, {}, "65532", "would run as root"),
        ({}, {"privileged": True}, "", "privileged"),
        ({"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}, {}, "", "Localhost seccomp"),
    ],
)
def test_what_the_kubelet_refuses_is_refused(pod_context: Any, container_context: Any, image_user: str,
                                             message: str) -> None:  # fmt: skip
    pod = {"metadata": POD["metadata"], "spec": {"securityContext": pod_context, "containers": []}}
    with pytest.raises(runner.Unsupported, match=message):
        runner.security_options(pod, {"name": "c", "securityContext": container_context}, image_user)


def test_a_non_root_image_user_satisfies_run_as_non_root() -> None:
    pod = {"metadata": POD["metadata"], "spec": {"securityContext": {"runAsNonRoot": True}, "containers": []}}
    assert runner.security_options(pod, {"name": "c"}, "65532:65532") == []


def test_the_engine_command_line_runs_the_pods_image_with_its_command_mounts_and_environment_names() -> None:
    container = SECURE_POD["spec"]["containers"][0]
    mounts = [runner.Mount("/etc/mlops/profile", "/s/profile", True), runner.Mount("/tmp", "/s/tmp", False)]
    argv = runner.container_argv(PODMAN, "mlops-team_fraud", SECURE_POD, container, "", mounts,
                                 ["MLOPS_MODEL_SOURCE", "SECRET_TOKEN"], {"mlops.io/pod-runner": "k"})  # fmt: skip
    assert argv[:6] == ["/usr/bin/podman", "--runtime", "/usr/sbin/runc", "run", "--rm", "--name"]
    joined = " ".join(argv)
    assert "--pull never --network host --hostname fraud-1-abc --ulimit nofile=1024:1024" in joined
    assert "--volume /s/profile:/etc/mlops/profile:ro --volume /s/tmp:/tmp:rw" in joined
    # Names only: the values travel in the engine's environment, never on its command line.
    assert "--env MLOPS_MODEL_SOURCE --env SECRET_TOKEN --workdir /work" in joined
    assert argv[-6:] == ["--entrypoint", "mlops-server", "mlops-operator:1.2.3", "--verbose", "--port", "8080"]
    assert "--label mlops.io/pod-runner=k" in joined
    docker = runner.container_argv(["/usr/bin/docker", "run"], "n", SECURE_POD, container, "", [], [], {})
    assert "--read-only" in docker and "--read-only-tmpfs=false" not in docker


def test_without_a_command_the_image_entrypoint_runs_with_the_args() -> None:
    container = {"name": "c", "image": "img:1", "args": ["a", "b"]}
    pod = {"metadata": POD["metadata"], "spec": {}}
    argv = runner.container_argv(PODMAN, "n", pod, container, "", [], [], {})
    assert "--entrypoint" not in argv and argv[-3:] == ["img:1", "a", "b"]


def test_resources_become_the_containers_cgroup_limits() -> None:
    assert runner.quantity("500m") == 0.5 and runner.quantity("1Gi") == 2**30 and runner.quantity("2") == 2
    assert runner.quantity("256M") == 256e6
    limited = {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi", "cpu": "2"}}}
    assert runner.resource_options(limited) == ["--memory", str(2**30), "--cpus", "2", "--cpu-shares", "102"]
    # A limit alone is also the request (the API server defaults it so).
    assert runner.resource_options({"resources": {"limits": {"cpu": "500m"}}}) == [
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
    ]
    assert runner.resource_options({}) == []
    with pytest.raises(runner.Unsupported, match="quantity"):
        runner.resource_options({"resources": {"limits": {"memory": "lots"}}})
