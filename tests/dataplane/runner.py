"""The Pod runner of the local cluster: every Pod that runs our model server becomes a real process.

kwok plays the kubelet of the local cluster's simulated nodes; its Stages (tests/cluster/kwokctl.yaml) give a Pod
whose container runs ``mlops-server`` its IP (from the node's podCIDR, which tests/cluster/up.sh makes local to
this machine with a ``local`` route, as the loopback range is) and leave it Pending
and not Ready. This runner does the rest of a kubelet's job for those Pods, and no more:

- it starts the container's command (``mlops-server``, taken from this Python environment's ``bin``: there is no
  image to run) with the container's arguments and environment (values, ``fieldRef``, ConfigMap and Secret
  references, ``$(VAR)`` expansion), bound to the Pod's IP (``MLOPS_SERVER_HOST``) and container port;
- it writes the Pod's mounted ConfigMaps and Secrets to files in a per-Pod folder and makes ``emptyDir`` volumes
  folders there; every mount path in the environment and arguments is rewritten to its folder (a
  ``persistentVolumeClaim`` cannot be mounted here: such a Pod gets a FailedMount Event and never starts);
- the Pod turns Running when the process starts; Ready follows the container's own probes (startup, readiness,
  liveness, httpGet or tcpSocket), probed every half second until the first success and then at each probe's
  period, so a server whose model fails its checksum never becomes Ready and receives no traffic;
- a process that exits is started again after a back-off (10 s doubling to 5 minutes, as CrashLoopBackOff), and one
  whose liveness or startup probe fails is stopped and started again; restarts are counted in the Pod's status;
- when the Pod is deleted, the preStop sleep runs (the server keeps serving while the endpoints drop it), then
  SIGTERM, then SIGKILL when the grace period is over, and only then is the Pod removed (as a kubelet does);
- at most ``--max-processes`` servers run at once; a Pod beyond that waits, not Ready, with an Event saying so.

A namespace labelled ``mlops.io/data-plane=simulated`` keeps simulated Pods (Ready at once, no process): for
benchmarks with hundreds of Pods. Process logs are not visible to ``kubectl logs``: each Pod's output goes to
``<state>/pods/<namespace>_<pod>_<uid>/server.log``; the runner's own log is ``<state>/runner.log``.

    python tests/dataplane/runner.py --state DIR [--max-processes N] [--bin DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
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
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod, Secret
from lightkube.types import PatchType

log = logging.getLogger("runner")

Body = dict[str, Any]
SERVER = "mlops-server"
SIMULATED_LABEL = "mlops.io/data-plane"
SIMULATED = "simulated"
FAST_PROBE_SECONDS = 0.5
BACKOFF_SECONDS = 10.0
BACKOFF_LIMIT_SECONDS = 300.0
DEFAULT_GRACE_SECONDS = 30
REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


# --- The pure part: what a Pod asks for ----------------------------------------------------------------------


def is_server_pod(pod: Body) -> bool:
    """Whether a container of the Pod runs our model server."""
    return any(SERVER in (c.get("command") or []) for c in pod["spec"].get("containers", []))


def server_container(pod: Body) -> Body:
    return next(c for c in pod["spec"]["containers"] if SERVER in (c.get("command") or []))


@dataclass(frozen=True)
class Probe:
    """A container probe: httpGet (``path`` set) or tcpSocket, on ``port``."""

    port: int
    path: str | None
    period: float
    timeout: float
    failures: int
    successes: int

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


class PodRun:
    """The life of one server Pod on this machine: waits for its IP, runs its process, tells its status."""

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
        except Exception:
            log.exception("pod %s/%s: the runner failed", self.namespace, self.name)
        finally:
            if self.holding:
                self.runner.slots.release()
            self.runner.pods.pop(self.uid, None)

    async def _run(self) -> None:
        while not self.pod.get("status", {}).get("podIP") and not self.terminating.is_set():
            self.changed.clear()
            await self.changed.wait()
        if not self.terminating.is_set():
            if await self.runner.simulated(self.namespace):
                await self._status(running=True, ready=True, message="simulated: no process (mlops.io/data-plane)")
                await self.terminating.wait()
            else:
                await self._serve()
        await self._remove()

    async def _serve(self) -> None:
        try:
            container = server_container(self.pod)
            probes = {w: Probe.of(container, w) for w in ("startupProbe", "readinessProbe", "livenessProbe")}
            argv, env, cwd = await self._prepare(container)
        except Unsupported as exc:
            await self.runner.event(self.pod, "Warning", "FailedCreate", str(exc))
            await self.terminating.wait()
            return
        slots = self.runner.slots
        if slots.locked():
            await self.runner.event(self.pod, "Warning", "ProcessLimit",
                                    f"the local Pod runner runs at most {self.runner.max_processes} model-server "
                                    "processes: this Pod waits for one to end")  # fmt: skip
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
            await self._once(argv, env, cwd, probes)
            if not self.terminating.is_set():
                self.restarts += 1

    async def _once(self, argv: list[str], env: dict[str, str], cwd: str, probes: dict[str, Probe | None]) -> None:
        """Runs the process once, until it exits, a probe kills it or the Pod is deleted."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "server.log").open("ab") as out:
            out.write(f"--- {now()} start {self.restarts + 1}: {' '.join(argv)}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=cwd, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        (self.folder / "pid").write_text(str(self.process.pid))
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
        log.info("pod %s/%s: the server exited with %s", self.namespace, self.name, code)
        await self._status(running=False, ready=False, exit_code=code)

    async def _probe(self, probes: dict[str, Probe | None], started_at: str) -> str:
        """Probes until one says the container must restart; returns why. Sets Ready as readiness says."""
        ip = self.pod["status"]["podIP"]
        startup, readiness, liveness = (probes["startupProbe"], probes["readinessProbe"], probes["livenessProbe"])
        loop = asyncio.get_running_loop()
        if startup is not None:
            deadline = loop.time() + startup.period * startup.failures
            while not await probe_once(ip, startup):
                if loop.time() > deadline:
                    return f"startup probe failed {startup.failures} times"
                await asyncio.sleep(FAST_PROBE_SECONDS)
        failed = {"readiness": 0, "liveness": 0}
        next_live = loop.time() + (liveness.period if liveness else 0)
        while True:
            if readiness is None:
                ok = True
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
            pre_stop = ((server_container(self.pod).get("lifecycle") or {}).get("preStop") or {}).get("sleep")
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
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            await self._kill()

    async def _kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)

    async def _prepare(self, container: Body) -> tuple[list[str], dict[str, str], str]:
        """The command line, environment and working folder of the container on this machine."""
        spec = self.pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        root = self.folder / "volumes"
        shutil.rmtree(root, ignore_errors=True)
        mounts: list[tuple[str, str]] = []
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise Unsupported(f"volume {mount['name']} is mounted but not declared")
            local = root / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume or "secret" in volume:
                await self._write_files(local, volume)
            elif "projected" in volume:
                # The service account token of a projected volume is not issued here (the server never calls the
                # API server); its ConfigMaps, Secrets and downward API fields are written.
                for source in volume["projected"].get("sources", []):
                    if "configMap" in source or "secret" in source:
                        await self._write_files(local, source)
                    for item in (source.get("downwardAPI") or {}).get("items", []):
                        if "fieldRef" in item:
                            (local / item["path"]).write_text(field_value(self.pod, item["fieldRef"]["fieldPath"]))
            elif "persistentVolumeClaim" in volume:
                raise Unsupported(
                    f"FailedMount: volume {mount['name']} is a persistentVolumeClaim "
                    f"({volume['persistentVolumeClaim'].get('claimName')}), which the local Pod runner cannot mount"
                )
            elif "emptyDir" not in volume:
                raise Unsupported(
                    f"volume {mount['name']}: only configMap, secret, projected and emptyDir volumes run here"
                )
            sub = mount.get("subPath")
            mounts.append((mount["mountPath"], str(local / sub if sub else local)))
        mounts.sort(key=lambda m: -len(m[0]))
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

        env = container_environment(self.pod, container, lookup)
        env = {k: rewrite_mounts(v, mounts) for k, v in env.items()}
        command = [expand(a, env) for a in container.get("command", [])]
        args = [rewrite_mounts(expand(a, env), mounts) for a in container.get("args", [])]
        executable = self.runner.executable(command[0])
        tmp = dict(mounts).get("/tmp") or str(self.folder / "tmp")
        os.makedirs(tmp, exist_ok=True)
        # Not the runner's environment: the container's, plus a PATH to this environment's programs, and the
        # server bound to its Pod's own address.
        process_env = {
            "PATH": f"{self.runner.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "TMPDIR": tmp,
            **env,
            "MLOPS_SERVER_HOST": self.pod["status"]["podIP"],
        }
        cwd = rewrite_mounts(container.get("workingDir", ""), mounts) or str(self.folder)
        os.makedirs(cwd, exist_ok=True)
        return [executable, *command[1:], *args], process_env, cwd

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
            server = SERVER in (c.get("command") or [])
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
    def __init__(self, client: AsyncClient, state: Path, max_processes: int, bin_dir: Path) -> None:
        self.client = client
        self.state = state
        self.max_processes = max_processes
        self.slots = asyncio.Semaphore(max_processes)
        self.bin = bin_dir
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

    async def simulated(self, namespace: str) -> bool:
        try:
            ns = await self.client.get(Namespace, namespace)
        except ApiError:
            return False
        labels = (ns.metadata.labels if ns.metadata else None) or {}
        return labels.get(SIMULATED_LABEL) == SIMULATED

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
        if not is_server_pod(pod) or not pod["spec"].get("nodeName"):
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
        """Server processes of an earlier runner (killed before it could stop them) are stopped."""
        for pid_file in (self.state / "pods").glob("*/pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if SERVER.encode() in cmdline:
                    os.killpg(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)


async def main(args: argparse.Namespace) -> None:
    state = Path(args.state)
    os.makedirs(state, exist_ok=True)
    client = AsyncClient(timeout=httpx.Timeout(30))
    runner = Runner(client, state, args.max_processes, Path(args.bin))
    runner.kill_leftovers()
    watching = asyncio.get_running_loop().create_task(runner.watch())
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
    log.info("the Pod runner is watching (at most %d server processes; programs from %s)", args.max_processes,
             args.bin)  # fmt: skip
    await stopped.wait()
    watching.cancel()
    runs = list(runner.pods.values())
    for run in runs:
        run.task.cancel()
    await asyncio.gather(*(r.task for r in runs), return_exceptions=True)
    log.info("the Pod runner stopped (%d server processes ended)", len(runs))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state", required=True, help="folder for per-Pod files, logs and pid files")
    p.add_argument("--max-processes", type=int, default=int(os.environ.get("MLOPS_RUNNER_MAX_PROCESSES", "48")),
                   help="server processes that may run at once (default 48, MLOPS_RUNNER_MAX_PROCESSES)")  # fmt: skip
    p.add_argument("--bin", default=str(Path(sys.executable).parent),
                   help="where the containers' commands are found (default: this Python's bin)")  # fmt: skip
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(main(arguments))
