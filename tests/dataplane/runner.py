"""The Pod runner of the local cluster: every Pod that runs one of our programs becomes a real process or container.

kwok plays the kubelet of the local cluster's simulated nodes; its Stages (tests/cluster/kwokctl.yaml) give a Pod
whose container runs ``mlops-server`` or ``mlops-operator`` its IP (from the node's podCIDR, which
tests/cluster/up.sh makes local to this machine with a ``local`` route, as the loopback range is) and leave it
Pending and not Ready. This runner does the rest of a kubelet's job for those Pods, and no more. How a Pod runs is
its namespace's ``mlops.io/data-plane`` label, else the runner's ``--mode`` (``MLOPS_DATA_PLANE``):

- ``process``: the container's command (``mlops-server``, taken from this Python environment's ``bin``) runs as a
  process with the container's arguments and environment (values, ``fieldRef``, ConfigMap and Secret references,
  ``$(VAR)`` expansion); its volumes are files and folders in a per-Pod folder, and every mount path in the
  environment and arguments is rewritten to its folder. Operator Pods are simulated in this mode (Ready, no
  process): only a container runs the operator.
- ``container``: the Pod's container runs as a container of its image (docker where an engine answers, else podman
  with runc), never pulled (an image the engine does not hold leaves the Pod waiting, ErrImageNeverPull), with the
  container's command as entrypoint, its arguments, its environment (passed by name: no value shows on a command
  line), its volumes bound at their mount paths (ConfigMaps, Secrets and projected sources read-only, emptyDirs
  writable by any user), and its security context: user and group, read-only root without any tmpfs of the
  engine's, no privilege escalation, capabilities dropped and added, seccomp; runAsNonRoot checked against the
  image's user; privileged containers refused. A projected service account token is issued for the Pod (TokenRequest,
  bound to the Pod) and renewed at 80% of its life; ``KUBERNETES_SERVICE_HOST`` and ``_PORT`` name the API server
  where this machine reaches it (no kube-proxy routes the kubernetes Service's address here). The container shares
  this machine's network: the model server binds its Pod's IP (``MLOPS_SERVER_HOST``), the operator's chart has
  ``listenOnPodIP``.
- ``simulated``: Running and Ready at once, no process (for benchmarks with hundreds of Pods).

In both real modes:

- the Pod turns Running when the process starts; Ready follows the container's own probes (startup, readiness,
  liveness, httpGet or tcpSocket), probed every half second until the first success and then at each probe's
  period, so a server whose model fails its checksum never becomes Ready and receives no traffic;
- a process that exits is started again after a back-off (10 s doubling to 5 minutes, as CrashLoopBackOff), and one
  whose liveness or startup probe fails is stopped and started again; restarts are counted in the Pod's status;
- when the Pod is deleted, the preStop sleep runs (the server keeps serving while the endpoints drop it), then
  SIGTERM, then SIGKILL when the grace period is over, and only then is the Pod removed (as a kubelet does);
- a ``persistentVolumeClaim`` cannot be mounted here: such a Pod gets a FailedMount Event and never starts;
- at most ``--max-processes`` Pods run at once; a Pod beyond that waits, not Ready, with an Event saying so.

Process logs are not visible to ``kubectl logs``: each Pod's output goes to
``<state>/pods/<namespace>_<pod>_<uid>/server.log``; the runner's own log is ``<state>/runner.log``.

    python tests/dataplane/runner.py --state DIR [--mode process|container] [--max-processes N] [--bin DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod, Secret, ServiceAccount
from lightkube.types import PatchType

log = logging.getLogger("runner")

Body = dict[str, Any]
SERVER = "mlops-server"
OPERATOR = "mlops-operator"
PROGRAMS = (SERVER, OPERATOR)
MODE_LABEL = "mlops.io/data-plane"
SIMULATED, PROCESS, CONTAINER = "simulated", "process", "container"
MODES = (SIMULATED, PROCESS, CONTAINER)
RUNNER_LABEL = "mlops.io/pod-runner"
IMAGE_RETRY_SECONDS = 10.0
TOKEN_SECONDS = 3607
FAST_PROBE_SECONDS = 0.5
BACKOFF_SECONDS = 10.0
BACKOFF_LIMIT_SECONDS = 300.0
DEFAULT_GRACE_SECONDS = 30
REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


# --- The pure part: what a Pod asks for ----------------------------------------------------------------------


def program(container: Body) -> str | None:
    """Which of our programs the container runs (its command names it), if any."""
    command = container.get("command") or []
    return next((p for p in PROGRAMS if p in command), None)


def runs_here(pod: Body) -> bool:
    """Whether the runner takes the Pod: a container of it runs one of our programs (the model server, or the
    operator, which runs only as a container)."""
    return any(program(c) for c in pod["spec"].get("containers", []))


def main_container(pod: Body) -> Body:
    """The container the runner runs: the first that runs one of our programs."""
    return next(c for c in pod["spec"]["containers"] if program(c))


def namespace_mode(labels: dict[str, str], default: str) -> str:
    """How a namespace's Pods run: its ``mlops.io/data-plane`` label (simulated, process or container), else the
    runner's default."""
    value = labels.get(MODE_LABEL)
    return value if value in MODES else default


@dataclass(frozen=True)
class Mount:
    """A volume mount: ``path`` in the container, ``local`` its folder (or file) on this machine."""

    path: str
    local: str
    read_only: bool


def security_options(pod: Body, container: Body, image_user: str) -> list[str]:
    """The engine's options for the container's security context (the container's fields over the Pod's), as the
    kubelet applies them; ``image_user`` is the image's configured user (what runs when runAsUser is not set)."""
    pod_context = pod["spec"].get("securityContext") or {}
    context = container.get("securityContext") or {}
    name = container["name"]

    def pick(key: str) -> Any:
        return context[key] if context.get(key) is not None else pod_context.get(key)

    if context.get("privileged"):
        raise Unsupported(f"container {name} is privileged: privileged containers are not run here")
    user, group = pick("runAsUser"), pick("runAsGroup")
    runs_as = str(user) if user is not None else (image_user.split(":")[0] or "root")
    if pick("runAsNonRoot") and runs_as in ("0", "root"):
        raise Unsupported(
            f"CreateContainerConfigError: container {name} has runAsNonRoot and would run as root "
            f"(runAsUser {'unset' if user is None else user}, image user {image_user or 'root'})"
        )
    out: list[str] = []
    if user is not None:
        out += ["--user", f"{user}:{group}" if group is not None else str(user)]
    for extra in [pod_context.get("fsGroup"), *pod_context.get("supplementalGroups", [])]:
        if extra is not None:
            out += ["--group-add", str(extra)]
    if context.get("readOnlyRootFilesystem"):
        # Nothing writable but the Pod's volumes: no tmpfs of the engine's own at /tmp, /run and /var/tmp.
        out += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        out += ["--security-opt", "no-new-privileges"]
    capabilities = context.get("capabilities") or {}
    out += [o for cap in capabilities.get("drop", []) for o in ("--cap-drop", cap)]
    out += [o for cap in capabilities.get("add", []) for o in ("--cap-add", cap)]
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        out += ["--security-opt", "seccomp=unconfined"]
    elif seccomp == "Localhost":
        raise Unsupported(f"container {name}: Localhost seccomp profiles are not run here")
    return out


_QUANTITY = re.compile(r"([0-9]*\.?[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")
_FACTOR = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 1e-3, "k": 1e3,
           "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, None: 1}  # fmt: skip


def quantity(value: int | float | str) -> float:
    """A Kubernetes quantity as a number (``500m`` -> 0.5, ``1Gi`` -> 1073741824)."""
    match = _QUANTITY.fullmatch(str(value))
    if not match:
        raise Unsupported(f"quantity {value!r} is not understood here")
    return float(match.group(1)) * _FACTOR[match.group(2)]


def resource_options(container: Body) -> list[str]:
    """The engine's options for the container's resources, as the kubelet sets its cgroup: the memory limit, the
    CPU limit as a quota, the CPU request as shares (1024 per CPU, at least 2); a memory request sets nothing."""
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    out: list[str] = []
    if "memory" in limits:
        out += ["--memory", str(int(quantity(limits["memory"])))]
    if "cpu" in limits:
        out += ["--cpus", f"{quantity(limits['cpu']):g}"]
    cpu_request = requests.get("cpu", limits.get("cpu"))  # as the API server defaults a request to its limit
    if cpu_request is not None:
        out += ["--cpu-shares", str(max(2, int(quantity(cpu_request) * 1024)))]
    return out


def container_argv(engine: list[str], name: str, pod: Body, container: Body, image_user: str, mounts: list[Mount],
                   env_names: list[str], labels: dict[str, str]) -> list[str]:  # fmt: skip
    """The command line that runs ``container`` of ``pod`` with the engine (``engine``: its program and global
    options, then ``run`` options such as ulimits after a ``run`` item): the Pod's image, never pulled; the host's
    network (the server binds its Pod's IP); the Pod's name as hostname; its security context; its volumes bound
    at their mount paths; its environment by name only (the values are in the engine's own environment, so that
    none shows on a command line); its command as the entrypoint and its arguments, already expanded."""
    split = engine.index("run")
    argv = [*engine[: split + 1], "--rm", "--name", name, "--pull", "never", "--network", "host",
            "--hostname", pod["metadata"]["name"], *engine[split + 1 :]]  # fmt: skip
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    argv += security_options(pod, container, image_user)
    argv += resource_options(container)
    for mount in mounts:
        argv += ["--volume", f"{mount.local}:{mount.path}:{'ro' if mount.read_only else 'rw'}"]
    for env_name in env_names:
        argv += ["--env", env_name]
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    command = container.get("command") or []
    if command:
        argv += ["--entrypoint", command[0]]
    if os.path.basename(engine[0]) != "podman":
        argv = [a for a in argv if a != "--read-only-tmpfs=false"]  # podman's own option (docker adds no tmpfs)
    return [*argv, container["image"], *command[1:], *(container.get("args") or [])]


def engine_command() -> list[str]:
    """The container engine as this machine runs it: docker where an engine answers, else podman with runc (crun
    refuses hybrid cgroup layouts) and rlimits within the current hard limits (raising one is refused); its global
    options, ``run``, then the run options every container gets."""
    import resource
    import subprocess

    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "run"]
    podman = shutil.which("podman")
    if podman is None:
        raise SystemExit("container mode needs a container engine: docker (an engine answering) or podman")
    runc = shutil.which("runc") or "/usr/sbin/runc"
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    return [podman, "--runtime", runc, "run", "--ulimit", f"nofile={nofile}:{nofile}",
            "--ulimit", f"nproc={nproc}:{nproc}"]  # fmt: skip


@dataclass(frozen=True)
class Probe:
    """A container probe: httpGet (``path`` set) or tcpSocket, on ``port``; the first one ``delay`` seconds after the
    container started (``initialDelaySeconds``)."""

    port: int
    path: str | None
    period: float
    timeout: float
    failures: int
    successes: int
    delay: float = 0.0

    @classmethod
    def of(cls, container: Body, which: str) -> Probe | None:
        spec = container.get(which)
        if not spec:
            return None
        action = spec.get("httpGet") or spec.get("tcpSocket")
        if action is None:
            raise Unsupported(f"{which} of container {container['name']}: only httpGet and tcpSocket probes run here")
        return cls(
            port=port_number(container, action["port"]),
            path=action.get("path", "/") if "httpGet" in spec else None,
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            failures=int(spec.get("failureThreshold", 3)),
            successes=int(spec.get("successThreshold", 1)),
            delay=float(spec.get("initialDelaySeconds", 0)),
        )


class Unsupported(Exception):
    """Something the Pod asks for that the runner cannot do: the Pod never starts, an Event says why."""


def port_number(container: Body, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise Unsupported(f"container {container['name']} has no port named {port!r}")


def field_value(pod: Body, path: str) -> str:
    """A downward API ``fieldRef``."""
    meta, status = pod["metadata"], pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    raise Unsupported(f"fieldRef {path} is not supported here")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, an undefined one left as is, $$ is $."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return REF.sub(one, value)


def rewrite_mounts(value: str, mounts: list[tuple[str, str]]) -> str:
    """``value`` with every mount path (longest first) replaced by its folder on this machine."""
    for mount, local in mounts:
        value = re.sub(rf"(?<![\w/.-]){re.escape(mount.rstrip('/'))}(?=/|$|[^\w.-])", local, value)
    return value


def container_environment(pod: Body, container: Body, lookup: Any) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env in order, each value expanded
    against the ones before. ``lookup(kind, name, key, optional)`` reads a ConfigMap or Secret key (None: absent
    and optional); ``lookup(kind, name, None, optional)`` the whole object's data."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind in ("configMapRef", "secretRef"):
            if kind in source:
                ref = source[kind]
                data = lookup(kind, ref["name"], None, ref.get("optional", False)) or {}
                env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "configMapKeyRef" if "configMapKeyRef" in source else "secretKeyRef"
            ref = source[kind]
            found = lookup(kind, ref["name"], ref["key"], ref.get("optional", False))
            if found is not None:
                env[name] = found
        else:
            raise Unsupported(f"env {name}: only value, fieldRef, configMapKeyRef and secretKeyRef are supported")
    return env


def backoff(restarts: int) -> float:
    """The wait before the (restarts+1)-th start: 0 for the first, then 10 s doubling to 5 minutes."""
    return 0.0 if restarts == 0 else min(BACKOFF_LIMIT_SECONDS, BACKOFF_SECONDS * 2 ** (restarts - 1))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def probe_once(ip: str, probe: Probe) -> bool:
    """One probe: an HTTP GET answered 200-399, or a TCP connection accepted, within the timeout."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, probe.port), probe.timeout)
    except (OSError, TimeoutError):
        return False
    try:
        if probe.path is None:
            return True
        writer.write(f"GET {probe.path} HTTP/1.1\r\nHost: {ip}:{probe.port}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), probe.timeout)
        parts = line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- One Pod --------------------------------------------------------------------------------------------------


@dataclass
class Launch:
    """How the container starts: the command line, its environment and working folder; in container mode, the
    container's name (the engine stops it by name)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    container: str | None = None


class PodRun:
    """The life of one Pod on this machine: waits for its IP, runs its process or container, tells its status."""

    def __init__(self, runner: Runner, pod: Body) -> None:
        self.runner = runner
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.changed = asyncio.Event()
        self.terminating = asyncio.Event()
        self.gone = False
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.ready: bool | None = None
        self.holding = False  # a process slot, from the first start until the process is gone
        self.launch: Launch | None = None
        self.tokens: list[tuple[Path, Body]] = []  # service account tokens written, refreshed as the kubelet does
        self.folder = runner.state / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"pod {self.namespace}/{self.name}")

    def update(self, pod: Body | None) -> None:
        """A newer Pod from the watch (None: deleted)."""
        if pod is None:
            self.gone = True
            self.terminating.set()
        else:
            self.pod = pod
            if pod["metadata"].get("deletionTimestamp"):
                self.terminating.set()
        self.changed.set()

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            await self._kill()
            raise
        except Exception as exc:
            log.exception("pod %s/%s: the runner failed", self.namespace, self.name)
            with contextlib.suppress(Exception):
                await self.runner.event(self.pod, "Warning", "RunnerFailed", f"the local Pod runner failed: {exc!r}")
        finally:
            if self.holding:
                self.runner.slots.release()
            self.runner.pods.pop(self.uid, None)

    async def _run(self) -> None:
        while not self.pod.get("status", {}).get("podIP") and not self.terminating.is_set():
            self.changed.clear()
            await self.changed.wait()
        if not self.terminating.is_set():
            mode = await self.runner.mode(self.namespace)
            if mode == CONTAINER or (mode == PROCESS and program(main_container(self.pod)) == SERVER):
                await self._serve(mode)
            else:
                why = (f"simulated: no process ({MODE_LABEL}={SIMULATED})" if mode == SIMULATED else
                       f"simulated: the operator runs here only as a container ({MODE_LABEL}={CONTAINER})")  # fmt: skip
                await self._status(running=True, ready=True, message=why)
                await self.terminating.wait()
        await self._remove()

    async def _serve(self, mode: str) -> None:
        try:
            container = main_container(self.pod)
            probes = {w: Probe.of(container, w) for w in ("startupProbe", "readinessProbe", "livenessProbe")}
            image_user = await self._image(container) if mode == CONTAINER else ""
            if image_user is None:
                return
            mounts = await self._volumes(container)
            launch = await self._prepare(container, mounts, image_user if mode == CONTAINER else None)
        except Unsupported as exc:
            await self.runner.event(self.pod, "Warning", "FailedCreate", str(exc))
            await self._status(running=False, ready=False, waiting="CreateContainerError", message=str(exc))
            await self.terminating.wait()
            return
        refresh = asyncio.ensure_future(self._refresh_tokens()) if self.tokens else None
        try:
            await self._start_and_restart(launch, probes)
        finally:
            if refresh is not None:
                refresh.cancel()

    async def _image(self, container: Body) -> str | None:
        """Waits until the engine holds the container's image (never pulled: there is no registry to pull from);
        returns the image's configured user, or None when the Pod went first."""
        image = container.get("image") or ""
        told = False
        while not self.terminating.is_set():
            user = await self.runner.image_user(image)
            if user is not None:
                return user
            message = (f"image {image} is not in the local engine's store and is never pulled here: build it "
                       "(make image) or name a local image")  # fmt: skip
            if not told:
                await self.runner.event(self.pod, "Warning", "ErrImageNeverPull", message)
                await self._status(running=False, ready=False, waiting="ErrImageNeverPull", message=message)
                told = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.terminating.wait(), IMAGE_RETRY_SECONDS)
        return None

    async def _start_and_restart(self, launch: Launch, probes: dict[str, Probe | None]) -> None:
        slots = self.runner.slots
        if slots.locked():
            await self.runner.event(self.pod, "Warning", "ProcessLimit",
                                    f"the local Pod runner runs at most {self.runner.max_processes} processes or "
                                    "containers: this Pod waits for one to end")  # fmt: skip
        acquire = asyncio.ensure_future(slots.acquire())
        stop = asyncio.ensure_future(self.terminating.wait())
        await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not acquire.done():
            acquire.cancel()
            return
        self.holding = True
        while not self.terminating.is_set():
            delay = backoff(self.restarts)
            if delay:
                await self._status(running=False, ready=False, waiting="CrashLoopBackOff",
                                   message=f"back-off {delay:.0f}s restarting the failed container")  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.terminating.wait(), delay)
                if self.terminating.is_set():
                    break
            await self._once(launch, probes)
            if not self.terminating.is_set():
                self.restarts += 1

    async def _once(self, launch: Launch, probes: dict[str, Probe | None]) -> None:
        """Runs the process (or container) once, until it exits, a probe kills it or the Pod is deleted."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.launch = launch
        with (self.folder / "server.log").open("ab") as out:
            out.write(f"--- {now()} start {self.restarts + 1}: {' '.join(launch.argv)}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *launch.argv, env=launch.env, cwd=launch.cwd, stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        (self.folder / "pid").write_text(str(self.process.pid))
        if launch.container:
            (self.folder / "container").write_text(launch.container)
        started_at = now()
        self.ready = None
        await self._status(running=True, ready=False, started_at=started_at)
        exited = asyncio.ensure_future(self.process.wait())
        stop = asyncio.ensure_future(self.terminating.wait())
        probing = asyncio.ensure_future(self._probe(probes, started_at))
        done, _ = await asyncio.wait({exited, stop, probing}, return_when=asyncio.FIRST_COMPLETED)
        probing.cancel()
        stop.cancel()
        if self.terminating.is_set():
            exited.cancel()
            return
        if probing in done and not probing.cancelled() and probing.exception() is None:
            reason = probing.result()
            await self.runner.event(self.pod, "Warning", "Unhealthy", f"{reason}: the container will be restarted")
            await self._signal_and_wait(self._grace())
        code = await exited
        log.info("pod %s/%s: the container exited with %s", self.namespace, self.name, code)
        await self._status(running=False, ready=False, exit_code=code)

    async def _probe(self, probes: dict[str, Probe | None], started_at: str) -> str:
        """Probes until one says the container must restart; returns why. Sets Ready as readiness says."""
        ip = self.pod["status"]["podIP"]
        startup, readiness, liveness = (probes["startupProbe"], probes["readinessProbe"], probes["livenessProbe"])
        loop = asyncio.get_running_loop()
        started = loop.time()
        if startup is not None:
            await asyncio.sleep(startup.delay)
            deadline = loop.time() + startup.period * startup.failures
            while not await probe_once(ip, startup):
                if loop.time() > deadline:
                    return f"startup probe failed {startup.failures} times"
                await asyncio.sleep(FAST_PROBE_SECONDS)
        failed = {"readiness": 0, "liveness": 0}
        # Liveness and readiness start once startup succeeded, each after its own initial delay (counted from the
        # container's start, as the kubelet counts it).
        next_live = max(loop.time(), started + liveness.delay) if liveness else 0.0
        while True:
            if readiness is None:
                ok = True
            elif loop.time() < started + readiness.delay:
                ok = False  # not probed yet: not Ready
            else:
                ok = await probe_once(ip, readiness)
            if ok:
                failed["readiness"] = 0
                if self.ready is not True:
                    await self._status(running=True, ready=True, started_at=started_at)
            else:
                failed["readiness"] += 1
                if self.ready and readiness and failed["readiness"] >= readiness.failures:
                    await self._status(running=True, ready=False, started_at=started_at)
            if liveness is not None and loop.time() >= next_live:
                next_live = loop.time() + liveness.period
                if await probe_once(ip, liveness):
                    failed["liveness"] = 0
                else:
                    failed["liveness"] += 1
                    if failed["liveness"] >= liveness.failures:
                        return f"liveness probe failed {liveness.failures} times"
            period = readiness.period if readiness and self.ready else FAST_PROBE_SECONDS
            await asyncio.sleep(period)

    def _grace(self) -> float:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        return float(grace)

    async def _remove(self) -> None:
        """The Pod is being deleted: preStop, SIGTERM, the grace period, SIGKILL; then the Pod object goes."""
        if self.process is not None and self.process.returncode is None:
            grace = self._grace()
            started = time.monotonic()
            if self.ready:
                await self._status(running=True, ready=False)
            pre_stop = ((main_container(self.pod).get("lifecycle") or {}).get("preStop") or {}).get("sleep")
            if pre_stop and grace > 0:
                # The server keeps answering while the endpoints drop it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), min(grace, float(pre_stop.get("seconds", 0))))
            await self._signal_and_wait(max(0.0, grace - (time.monotonic() - started)))
        await self._kill()
        if not self.gone:
            with contextlib.suppress(ApiError):
                await self.runner.client.delete(Pod, self.name, namespace=self.namespace, grace_period=0)
        shutil.rmtree(self.folder / "volumes", ignore_errors=True)

    async def _signal_and_wait(self, grace: float) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        # A container is signalled through its engine; should it not exist yet, the engine's own process is
        # (podman and docker pass the signals they get on to their container).
        if not (self.launch and self.launch.container and await self.runner.signal(self.launch.container, "TERM")):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            await self._kill()

    async def _kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            if self.launch and self.launch.container:
                await self.runner.signal(self.launch.container, "KILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)

    async def _refresh_tokens(self) -> None:
        """Issues the service account tokens again at 80% of their life, as the kubelet does."""
        while True:
            await asyncio.sleep(0.8 * min(float(s.get("expirationSeconds", TOKEN_SECONDS)) for _, s in self.tokens))
            for path, source in self.tokens:
                try:
                    _write_atomic(path, (await self.runner.token(self.pod, source)).encode())
                except (ApiError, Unsupported) as exc:
                    log.warning("pod %s/%s: token %s not renewed: %s", self.namespace, self.name, path.name, exc)

    async def _volumes(self, container: Body) -> list[Mount]:
        """The container's volumes as files and folders on this machine (its ConfigMaps, Secrets, downward API
        fields and service account tokens written, emptyDirs made), longest mount path first."""
        spec = self.pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        root = self.folder / "volumes"
        shutil.rmtree(root, ignore_errors=True)
        self.tokens = []
        mounts: list[Mount] = []
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise Unsupported(f"volume {mount['name']} is mounted but not declared")
            local = root / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            read_only = True  # configMap, secret and projected volumes are read-only in any container
            if "configMap" in volume or "secret" in volume:
                await self._write_files(local, volume)
            elif "projected" in volume:
                for source in volume["projected"].get("sources", []):
                    if "configMap" in source or "secret" in source:
                        await self._write_files(local, source)
                    for item in (source.get("downwardAPI") or {}).get("items", []):
                        if "fieldRef" in item:
                            (local / item["path"]).write_text(field_value(self.pod, item["fieldRef"]["fieldPath"]))
                    if "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        path = local / token["path"]
                        path.parent.mkdir(parents=True, exist_ok=True)
                        _write_atomic(path, (await self.runner.token(self.pod, token)).encode())
                        self.tokens.append((path, token))
            elif "persistentVolumeClaim" in volume:
                raise Unsupported(
                    f"FailedMount: volume {mount['name']} is a persistentVolumeClaim "
                    f"({volume['persistentVolumeClaim'].get('claimName')}), which the local Pod runner cannot mount"
                )
            elif "emptyDir" in volume:
                local.chmod(0o777)  # as the kubelet makes it: any user of the Pod writes there
                read_only = bool(mount.get("readOnly"))
            else:
                raise Unsupported(
                    f"volume {mount['name']}: only configMap, secret, projected and emptyDir volumes run here"
                )
            sub = mount.get("subPath")
            mounts.append(Mount(mount["mountPath"], str(local / sub if sub else local), read_only))
        mounts.sort(key=lambda m: -len(m.path))
        return mounts

    async def _prepare(self, container: Body, mounts: list[Mount], image_user: str | None) -> Launch:
        """How the container starts on this machine: as a process (``image_user`` None; every mount path in its
        environment and arguments rewritten to its folder), or as a container of its image (``image_user``: the
        image's configured user; its volumes bound at their mount paths)."""
        values: dict[tuple[str, str], dict[str, str]] = {}
        for kind, name, optional in _references(container):
            values[(kind, name)] = {
                k: v.decode() for k, v in (await self.runner.data(self.namespace, kind, name, optional)).items()
            }

        def lookup(kind: str, name: str, key: str | None, optional: bool) -> Any:
            data = values.get(("configMap" if kind.startswith("configMap") else "secret", name), {})
            if key is None:
                return data
            if key not in data and not optional:
                raise Unsupported(f"{kind} {name} has no key {key}")
            return data.get(key)

        # As the kubelet: the API server's address (here, where this machine reaches it: no kube-proxy routes the
        # kubernetes Service's address), then the container's own environment.
        host, port = self.runner.api
        env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
               **container_environment(self.pod, container, lookup)}  # fmt: skip
        if program(container) == SERVER:
            env["MLOPS_SERVER_HOST"] = self.pod["status"]["podIP"]  # the server binds its Pod's own address
        if image_user is not None:
            engine = self.runner.engine
            if engine is None:
                raise Unsupported("container mode needs a container engine here: docker or podman (none found)")
            expanded = {**container, "command": [expand(a, env) for a in container.get("command") or []],
                        "args": [expand(a, env) for a in container.get("args") or []]}  # fmt: skip
            name = f"mlops-{self.namespace}_{self.name}_{self.uid[:8]}"
            argv = container_argv(engine, name, self.pod, expanded, image_user, mounts, sorted(env),
                                  {RUNNER_LABEL: self.runner.key, "mlops.io/pod-uid": self.uid})  # fmt: skip
            # The engine's own environment carries the values (--env NAME reads them from there).
            return Launch(argv, {**os.environ, **env}, str(self.folder), name)
        pairs = [(m.path, m.local) for m in mounts]
        env = {k: rewrite_mounts(v, pairs) for k, v in env.items()}
        command = [expand(a, env) for a in container.get("command", [])]
        args = [rewrite_mounts(expand(a, env), pairs) for a in container.get("args", [])]
        executable = self.runner.executable(command[0])
        tmp = dict(pairs).get("/tmp") or str(self.folder / "tmp")
        os.makedirs(tmp, exist_ok=True)
        # Not the runner's environment: the container's, plus a PATH to this environment's programs.
        process_env = {
            "PATH": f"{self.runner.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "TMPDIR": tmp,
            **env,
        }
        cwd = rewrite_mounts(container.get("workingDir", ""), pairs) or str(self.folder)
        os.makedirs(cwd, exist_ok=True)
        return Launch([executable, *command[1:], *args], process_env, cwd)

    async def _write_files(self, folder: Path, volume: Body) -> None:
        """A configMap or secret volume (or projected source) as files in ``folder``."""
        kind = "configMap" if "configMap" in volume else "secret"
        ref = volume[kind]
        name = ref.get("name") or ref.get("secretName")
        data = await self.runner.data(self.namespace, kind, name, ref.get("optional", False))
        for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
            if item["key"] not in data:
                if ref.get("optional", False):
                    continue
                raise Unsupported(f"{kind} {name} has no key {item['key']}")
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])

    async def _status(self, running: bool, ready: bool, started_at: str | None = None, waiting: str | None = None,
                      exit_code: int | None = None, message: str | None = None) -> None:  # fmt: skip
        """Writes the Pod's phase, Ready and ContainersReady, and its containers' states."""
        if self.gone:
            return
        self.ready = ready
        stamp = now()
        containers = []
        for c in self.pod["spec"]["containers"]:
            server = program(c) is not None
            state: Body = {"waiting": None, "running": None, "terminated": None}
            if not server or running:
                state["running"] = {"startedAt": started_at or stamp}
            elif exit_code is not None:
                state["terminated"] = {"exitCode": exit_code, "finishedAt": stamp,
                                       "reason": "Completed" if exit_code == 0 else "Error"}  # fmt: skip
            else:
                state["waiting"] = {"reason": waiting or "ContainerCreating", "message": message}
            containers.append({
                "name": c["name"], "image": c.get("image", ""), "ready": ready or not server,
                "started": running or not server, "restartCount": self.restarts if server else 0, "state": state,
            })  # fmt: skip
        flag = "True" if ready else "False"
        conditions = [
            {"type": t, "status": flag, "lastTransitionTime": stamp, "reason": None if ready else "ContainersNotReady",
             "message": message if ready and message else None}
            for t in ("Ready", "ContainersReady")
        ]  # fmt: skip
        status: Body = {"conditions": conditions, "containerStatuses": containers}
        if running:
            status["phase"] = "Running"
        try:
            await self.runner.client.patch(Pod.Status, self.name, {"status": status}, namespace=self.namespace,
                                           patch_type=PatchType.STRATEGIC)  # fmt: skip
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, exc.status.message)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def _references(container: Body) -> set[tuple[str, str, bool]]:
    out = set()
    for source in container.get("envFrom", []):
        for kind, short in (("configMapRef", "configMap"), ("secretRef", "secret")):
            if kind in source:
                out.add((short, source[kind]["name"], bool(source[kind].get("optional", False))))
    for item in container.get("env", []):
        source = item.get("valueFrom") or {}
        for kind, short in (("configMapKeyRef", "configMap"), ("secretKeyRef", "secret")):
            if kind in source:
                out.add((short, source[kind]["name"], bool(source[kind].get("optional", False))))
    return out


# --- The runner -----------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, client: AsyncClient, state: Path, max_processes: int, bin_dir: Path, mode: str = PROCESS,
                 engine: list[str] | None = None, api: tuple[str, int] = ("127.0.0.1", 6443)) -> None:  # fmt: skip
        self.client = client
        self.state = state
        self.max_processes = max_processes
        self.slots = asyncio.Semaphore(max_processes)
        self.bin = bin_dir
        self.default_mode = mode
        self.engine = engine
        self.api = api
        # Labels the containers of this runner (its state folder), so that a later one stops what it left.
        self.key = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
        self.pods: dict[str, PodRun] = {}
        self._deleting: set[asyncio.Task[None]] = set()

    def executable(self, command: str) -> str:
        if os.path.isabs(command):
            return command
        for folder in (str(self.bin), *os.environ.get("PATH", "").split(os.pathsep)):
            candidate = os.path.join(folder, command)
            if os.access(candidate, os.X_OK):
                return candidate
        raise Unsupported(f"command {command} is not found in {self.bin} or on PATH")

    async def mode(self, namespace: str) -> str:
        try:
            ns = await self.client.get(Namespace, namespace)
        except ApiError:
            return self.default_mode
        return namespace_mode((ns.metadata.labels if ns.metadata else None) or {}, self.default_mode)

    def _control(self, *args: str) -> list[str]:
        """An engine command other than run (its global options kept)."""
        assert self.engine is not None
        return [*self.engine[: self.engine.index("run")], *args]

    async def _engine(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(*self._control(*args), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace").strip()

    async def image_user(self, image: str) -> str | None:
        """The image's configured user ("" for root by default), or None when the engine does not hold it."""
        if self.engine is None:
            raise Unsupported("container mode needs a container engine here: docker or podman (none found)")
        code, out = await self._engine("image", "inspect", "--format", "{{.Config.User}}", image)
        return out if code == 0 else None

    async def signal(self, container: str, sig: str) -> bool:
        """Sends ``sig`` to the container through the engine; whether it was delivered."""
        code, _ = await self._engine("kill", "--signal", sig, container)
        return code == 0

    async def token(self, pod: Body, source: Body) -> str:
        """A token of the Pod's service account, bound to the Pod, as the kubelet asks for a projected
        serviceAccountToken source."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        spec = TokenRequestSpec(
            audiences=[source["audience"]] if source.get("audience") else [],
            expirationSeconds=int(source.get("expirationSeconds", TOKEN_SECONDS)),
            boundObjectRef=BoundObjectReference(kind="Pod", apiVersion="v1", name=meta["name"], uid=meta["uid"]),
        )
        try:
            request = ServiceAccount.Token(metadata=ObjectMeta(), spec=spec)
            made = await self.client.create(request, account, namespace=meta["namespace"])
        except ApiError as exc:
            raise Unsupported(f"no token for service account {account}: {exc.status.message}") from None
        if made.status is None or not made.status.token:
            raise Unsupported(f"no token for service account {account}: the API server returned none")
        return made.status.token

    async def data(self, namespace: str, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        try:
            if kind == "configMap":
                cm = await self.client.get(ConfigMap, name, namespace=namespace)
                out = {k: v.encode() for k, v in (cm.data or {}).items()}
                out.update({k: base64.b64decode(v) for k, v in (cm.binaryData or {}).items()})
                return out
            secret = await self.client.get(Secret, name, namespace=namespace)
            out = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
            out.update({k: v.encode() for k, v in (secret.stringData or {}).items()})
            return out
        except ApiError as exc:
            if exc.status.code == 404 and optional:
                return {}
            raise Unsupported(f"{kind} {name}: {exc.status.message}") from None

    async def event(self, pod: Body, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        log.info("pod %s/%s: %s %s", meta["namespace"], meta["name"], reason, message)
        stamp = now()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "mlops-pod-runner"},
        }  # fmt: skip
        with contextlib.suppress(ApiError):
            await self.client.create(Event.from_dict(body))  # type: ignore[call-overload]

    def seen(self, pod: Body | None, uid: str) -> None:
        run = self.pods.get(uid)
        if pod is None:
            if run is not None:
                run.update(None)
            return
        if not runs_here(pod) or not pod["spec"].get("nodeName"):
            return
        if run is None:
            if pod["metadata"].get("deletionTimestamp") and not pod.get("status", {}).get("podIP"):
                # Never started here: nothing to stop, the Pod just goes.
                task = asyncio.get_running_loop().create_task(self._delete(pod))
                self._deleting.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(self._deleting.discard)
                return
            run = self.pods[uid] = PodRun(self, pod)
        run.update(pod)

    async def _delete(self, pod: Body) -> None:
        with contextlib.suppress(ApiError):
            await self.client.delete(Pod, pod["metadata"]["name"], namespace=pod["metadata"]["namespace"],
                                     grace_period=0)  # fmt: skip

    async def watch(self) -> None:
        """Lists every Pod, then follows changes; lists again after any break of the watch."""
        while True:
            try:
                listed = self.client.list(Pod, namespace="*")
                current: dict[str, Body] = {}
                async for pod in listed:
                    body = pod.to_dict()
                    current[body["metadata"]["uid"]] = body
                for uid in list(self.pods):
                    if uid not in current:
                        self.seen(None, uid)
                for uid, body in current.items():
                    self.seen(body, uid)
                version = listed.resourceVersion
                async for op, pod in self.client.watch(Pod, namespace="*", resource_version=version):
                    body = pod.to_dict()
                    self.seen(None if op == "DELETED" else body, body["metadata"]["uid"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the Pod watch broke (%s); listing again", exc)
                await asyncio.sleep(1)

    def kill_leftovers(self) -> None:
        """Processes and containers of an earlier runner (killed before it could stop them) are stopped."""
        import subprocess

        for pid_file in (self.state / "pods").glob("*/pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if any(p.encode() in cmdline for p in PROGRAMS) or b"podman" in cmdline or b"docker" in cmdline:
                    os.killpg(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        if self.engine is not None:
            ours = f"label={RUNNER_LABEL}={self.key}"
            listed = subprocess.run(self._control("ps", "--all", "--quiet", "--filter", ours), capture_output=True,
                                    text=True, timeout=60)  # fmt: skip
            if names := listed.stdout.split():
                subprocess.run(self._control("rm", "--force", *names), capture_output=True, timeout=120)


async def main(args: argparse.Namespace) -> None:
    state = Path(args.state)
    os.makedirs(state, exist_ok=True)
    config = KubeConfig.from_env()
    client = AsyncClient(config, timeout=httpx.Timeout(30))
    context = config.get()
    assert context is not None, "no current context in the kubeconfig"
    server = httpx.URL(context.cluster.server)
    try:
        engine: list[str] | None = engine_command()
    except SystemExit:
        if args.mode == CONTAINER:
            raise
        engine = None  # namespaces labelled for container mode get an Event saying why nothing runs
    runner = Runner(client, state, args.max_processes, Path(args.bin), mode=args.mode, engine=engine,
                    api=(server.host, server.port or 443))  # fmt: skip
    runner.kill_leftovers()
    watching = asyncio.get_running_loop().create_task(runner.watch())
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
    log.info("the Pod runner is watching (mode %s, at most %d processes or containers; programs from %s; engine %s)",
             args.mode, args.max_processes, args.bin, " ".join(engine) if engine else "none")  # fmt: skip
    await stopped.wait()
    watching.cancel()
    runs = list(runner.pods.values())
    for run in runs:
        run.task.cancel()
    await asyncio.gather(*(r.task for r in runs), return_exceptions=True)
    log.info("the Pod runner stopped (%d Pods ended)", len(runs))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state", required=True, help="folder for per-Pod files, logs and pid files")
    p.add_argument("--max-processes", type=int, default=int(os.environ.get("MLOPS_RUNNER_MAX_PROCESSES", "48")),
                   help="server processes that may run at once (default 48, MLOPS_RUNNER_MAX_PROCESSES)")  # fmt: skip
    p.add_argument("--bin", default=str(Path(sys.executable).parent),
                   help="where commands are found in process mode (default: this Python's bin)")  # fmt: skip
    p.add_argument("--mode", choices=(PROCESS, CONTAINER), default=os.environ.get("MLOPS_DATA_PLANE") or PROCESS,
                   help="how Pods run unless their namespace's mlops.io/data-plane label says otherwise: process "
                        "(this environment's programs) or container (the Pod's image, with docker or podman); "
                        "default MLOPS_DATA_PLANE, else process")  # fmt: skip
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(main(arguments))
