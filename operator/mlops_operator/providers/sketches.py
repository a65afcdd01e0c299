"""The live counts of a version from its servers' windowed drift sketches (the DriftMonitor's ``direct`` provider):
every ready Pod asked for ``/v2/models/{model}/sketch?window=...``, the answers summed. The Pod list of a version is
shared for a few seconds by the monitors that read it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from mlops_operator.builders.serving import selector
from mlops_operator.logic import drift_monitor
from mlops_operator.logic.drift_monitor import Unavailable
from mlops_operator.outbound import UNRESTRICTED
from mlops_operator.providers.direct import SCRAPE_TIMEOUT, ready
from mlops_operator.runtime.api import Api
from mlops_operator.runtime.kinds import Body

PODS_TTL = 5.0
"""The Pods of a version are listed again after this long (monitors of one deployment share the list)."""


class SketchReader:
    def __init__(self, api: Api) -> None:
        self.api = api
        self._pods: dict[tuple[str, str, str], tuple[float, list[Body]]] = {}
        """(namespace, deployment, version) -> (when listed, Pods)."""
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Our own Deployments' Pods are not a user's address: no outbound policy applies.
        if self._session is None or self._session.closed:
            self._session = UNRESTRICTED.session(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _ready_pods(self, namespace: str, deployment: str, version: str) -> list[Body]:
        now = time.monotonic()
        listed = self._pods.get((namespace, deployment, version))
        if listed is None or now - listed[0] >= PODS_TTL:
            pods = await self.api.list_objects("v1", "Pod", "pods", namespace, labels=selector(deployment, version))
            # Lists of versions no monitor read lately go (versions come and go).
            self._pods = {k: v for k, v in self._pods.items() if now - v[0] < 600}
            listed = self._pods[(namespace, deployment, version)] = (now, pods)
        return [p for p in listed[1] if ready(p)]

    async def read(self, namespace: str, deployment: str, model: str, version: str, window: float,
                   port: int) -> dict[str, Any]:  # fmt: skip
        """The counts of the last ``window`` seconds summed over the version's ready Pods; ``complete`` false when a
        server started within the window or did not answer. Unavailable when none answered."""
        pods = await self._ready_pods(namespace, deployment, version)
        if not pods:
            raise Unavailable("NoServers", f"no ready Pod of {deployment} {version} to read the live counts from")

        async def read(pod: Body) -> dict[str, Any]:
            address = pod["status"]["podIP"]
            host = f"[{address}]" if ":" in address else address
            url = f"http://{host}:{port}/v2/models/{model}/sketch?window={int(window)}s"
            async with self._http().get(url) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
                return dict(await response.json())

        answers = await asyncio.gather(*(read(p) for p in pods), return_exceptions=True)
        good = [a for a in answers if isinstance(a, dict)]
        failed = [
            f"{p['metadata']['name']}: {a}" for p, a in zip(pods, answers, strict=True) if isinstance(a, BaseException)
        ]
        if not good:
            raise Unavailable("ServersUnreachable", "no server answered with its counts: " + "; ".join(failed[:3]))
        counted = drift_monitor.merge(good)
        if failed:
            counted["complete"] = False
            counted["unread"] = failed
        return counted
