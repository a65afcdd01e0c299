"""The manager: one store and one watch per kind, the lists that fill and correct the stores, the controllers'
workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import kopf
from lightkube import ApiError

from mlops_operator import kube, metrics, telemetry
from mlops_operator.runtime.api import Api
from mlops_operator.runtime.controller import Controller, owner_ref
from mlops_operator.runtime.kinds import Body, Key, Resource, key_of
from mlops_operator.runtime.store import Index, Store, plain

log = logging.getLogger(__name__)

# Every key is queued again this often (a time-based decision missed, a write lost).
RESYNC_SECONDS = 300
# Every kind is listed again this often and its store corrected by it: a watch that restarts after a gap (410 Gone)
# lists what exists but reports no deletion that happened in the gap.
RELIST_SECONDS = 600
STARTUP_RETRY_MAX_SECONDS = 10
# Lists again this long after start: the watches begin after the startup list, and an object deleted between the
# two would otherwise stay in the stores until the next relist.
STARTUP_RELISTS = (5.0, 30.0)
TIMINGS_KEPT = 20_000


def error_text(exc: BaseException | object) -> str:
    """An exception in one line, an API error as its code, reason and message."""
    if isinstance(exc, ApiError):
        return f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
    return str(exc) or type(exc).__name__


def _named_only(body: Any) -> Body:
    """What a store of a child kind keeps of an object that is not one of ours: who controls its name."""
    meta = body["metadata"]
    kept = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "ownerReferences") if k in meta}
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": plain(kept)}


class Stats:
    """What a controller did, for its closing log line, the metrics and the benchmarks."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.waits: deque[float] = deque(maxlen=TIMINGS_KEPT)
        self.durations: deque[float] = deque(maxlen=TIMINGS_KEPT)


class Manager:
    """Runs the controllers added to it against ``namespaces`` (empty: all) through ``api``, once registered in a
    kopf registry."""

    def __init__(self, namespaces: tuple[str, ...] = (), api: Api = kube) -> None:
        self.namespaces = namespaces
        self.api = api
        self.stores: dict[Resource, Store] = {}
        self.controllers: list[Controller] = []
        self.stats: dict[str, Stats] = {}
        self.synced: set[Resource] = set()
        """The kinds the last list reached: their stores are complete (a name not held is free)."""
        self._relisting: dict[Resource, set[Key]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- declarations -------------------------------------------------------------------------------------------

    def store(
        self, resource: Resource, compact: Callable[[Any], Body] | None = None, indexes: dict[str, Index] | None = None
    ) -> Store:
        """The store of ``resource`` (made on first request; later requests may add indexes)."""
        store = self.stores.get(resource)
        if store is None:
            store = self.stores[resource] = Store(resource, compact)
        elif compact is not None and store._compact is not compact:
            raise ValueError(f"{resource}: stored in two different ways")
        for name, index in (indexes or {}).items():
            store.add_index(name, index)
        return store

    def child_store(self, resource: Resource, owner: Resource) -> Store:
        """The store of a child kind of ``owner``: every object, so that a name someone else holds is known; the
        children of ``owner`` whole, indexed by their controller's uid (index ``controller``), others by name."""

        def compact(body: Any) -> Body:
            return plain(body) if owner_ref(body, owner) is not None else _named_only(body)

        def controller(body: Body) -> list[str]:
            ref = owner_ref(body, owner)
            return [ref["uid"]] if ref is not None else []

        if resource in self.stores:
            return self.store(resource, indexes={"controller": controller})
        return self.store(resource, compact, {"controller": controller})

    def add(self, controller: Controller) -> Controller:
        """Runs ``controller`` (its kinds' stores must have been declared)."""
        for resource in (controller.resource, *controller.owns, *(w.resource for w in controller.watches)):
            if resource not in self.stores:
                raise ValueError(f"{controller.name}: no store declared for {resource}")
        self.controllers.append(controller)
        self.stats[controller.name] = Stats()
        return controller

    def touch(self, resource: Resource, key: Key) -> None:
        """Marks ``key`` as written now: newer than a list of its kind that may be running."""
        touched = self._relisting.get(resource)
        if touched is not None:
            touched.add(key)

    # --- events and lists ---------------------------------------------------------------------------------------

    def on_event(self, resource: Resource, type_: str | None, body: Any) -> None:
        """A watch event (or a listed object, as MODIFIED): the store takes it in, the controllers it concerns
        queue their keys. An object delivered again unchanged queues nothing."""
        store = self.stores[resource]
        key = key_of(body)
        self.touch(resource, key)
        before: Body | None
        after: Body | None
        if type_ == "DELETED":
            # What was deleted (a newer object of the same name, if one is held, stays).
            before, after = store.remove(key, body["metadata"].get("uid")) or plain(body), None
        else:
            before = store.get(key)
            after = store.put(body)
            if after is None:
                return
        for controller in self.controllers:
            controller.notice(resource, before, after)

    async def relist(self) -> None:
        """Lists every kind (in each watched namespace, or cluster-wide) and brings the stores in line: what is
        listed goes through ``on_event``, what is stored but no longer exists is dropped as deleted; what an event
        touched while the list ran is left to the event (newer than the list, or not older). A kind the cluster
        does not serve stays unsynced."""
        for resource, store in list(self.stores.items()):
            touched = self._relisting[resource] = set()
            try:
                for scope in self.namespaces or ("*",):
                    items = await self.api.list_objects(resource.api_version, resource.kind, resource.plural, scope)
                    listed = set()
                    for item in items:
                        item = {**item, "apiVersion": resource.api_version, "kind": resource.kind}
                        key = key_of(item)
                        listed.add(key)
                        if key not in touched:
                            self.on_event(resource, "MODIFIED", item)
                    for key, cached in store.within(scope).items():
                        if key not in listed and key not in touched:
                            log.info("%s %s/%s is gone without a watch event: dropped", resource.kind, *key)
                            self.on_event(resource, "DELETED", cached)
            except kube.KindNotServed:
                self.synced.discard(resource)
                continue
            finally:
                del self._relisting[resource]
            self.synced.add(resource)

    # --- running ------------------------------------------------------------------------------------------------

    async def _work(self, controller: Controller) -> None:
        stats, queue = self.stats[controller.name], controller.queue
        while True:
            key = await queue.get()
            started = time.monotonic()
            stats.waits.append(started - queue.queued_at.get(key, started))
            metrics.QUEUE_WAIT_SECONDS.labels(controller.name).observe(stats.waits[-1])
            delay: float | None
            try:
                with telemetry.counting_writes() as writes:
                    delay = await controller.reconcile(key)
                controller.backoff.succeeded(key)
                quiet = writes[0] == 0
                stats.counts["reconciles"] += 1
                stats.counts["quiet"] += quiet
                metrics.RECONCILES.labels(controller.name, "unchanged" if quiet else "changed").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stats.counts["errors"] += 1
                metrics.RECONCILES.labels(controller.name, "error").inc()
                delay = controller.backoff.failed(key)
                log.warning("reconciling %s %s/%s failed (%s); retrying in %.0fs", controller.name, *key,
                            error_text(exc), delay)  # fmt: skip
            finally:
                stats.durations.append(time.monotonic() - started)
                metrics.RECONCILE_SECONDS.labels(controller.name).observe(stats.durations[-1])
                queue.done(key)
            if delay is not None:
                queue.add_after(key, delay)

    async def _resync(self) -> None:
        started = time.monotonic()
        for at in STARTUP_RELISTS:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            try:
                await self.relist()
            except Exception as exc:
                log.warning("listing every kind again failed (%s); the watches keep the stores", error_text(exc))
        last_relist = time.monotonic()
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            if time.monotonic() - last_relist >= RELIST_SECONDS:
                last_relist = time.monotonic()
                try:
                    await self.relist()
                except Exception as exc:
                    log.warning("listing every kind again failed (%s); the watches keep the stores", error_text(exc))
            for controller in self.controllers:
                for body in self.stores[controller.resource]:
                    controller.queue.add(controller.key(body))

    async def start(self) -> None:
        """Lists what exists, then starts the workers: a reconcile against half-filled stores would take an object
        for missing and write (or delete) what it should not."""
        delay = 0.5
        while True:
            try:
                await self.relist()
                break
            except Exception as exc:
                # A cluster that is still starting (or a CustomResourceDefinition whose storage initialises)
                # answers within seconds; kopf would try a failed startup again only after a minute.
                log.warning("listing what exists failed (%s); trying again in %.0fs", error_text(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STARTUP_RETRY_MAX_SECONDS)
        loop = asyncio.get_running_loop()
        for controller in self.controllers:
            self._tasks.extend(loop.create_task(self._work(controller)) for _ in range(controller.workers))
        self._tasks.append(loop.create_task(self._resync()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for controller in self.controllers:
            controller.queue.close()
            stats = self.stats[controller.name]
            log.info("%s reconciles: %d (%d wrote nothing); API requests: %s", controller.name,
                     stats.counts["reconciles"], stats.counts["quiet"],
                     json.dumps(dict(telemetry.requests), sort_keys=True))  # fmt: skip
            log.info("%s queue wait: %s; reconcile: %s", controller.name, telemetry.timings(stats.waits),
                     telemetry.timings(stats.durations))  # fmt: skip
        log.info("API request latency: %s", telemetry.latency_summary())

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """One watch per stored kind, the start and the stop, in ``registry``."""
        for controller in self.controllers:
            metrics.STATE.queue(controller.name, controller.queue.depth)

        @kopf.on.startup(registry=registry)
        async def _start(**_: Any) -> None:
            await self.start()

        @kopf.on.cleanup(registry=registry)
        async def _stop(**_: Any) -> None:
            await self.stop()

        for resource in self.stores:
            # (kopf passes a ``resource`` of its own to every handler.)
            async def event(type: str, body: kopf.Body, watched: Resource = resource, **_: Any) -> None:
                self.on_event(watched, type, body)

            kopf.on.event(resource.group, resource.version, resource.plural, id=f"watch-{resource.plural}",
                          registry=registry)(event)  # fmt: skip
