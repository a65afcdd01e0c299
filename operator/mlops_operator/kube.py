"""The API client: the only place that talks to the API server (besides kopf's own watching). It reads, applies,
patches status and deletes; it builds no objects (``builders``, ``runtime.events`` do) and counts nothing itself
(``telemetry`` times and counts each request).

All writes use one field manager, so ``kubectl get --show-managed-fields`` tells our fields from the users'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Secret, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from mlops_operator import GROUP, VERSION, metrics, telemetry

FIELD_MANAGER = "mlops-operator"
log = logging.getLogger(__name__)

# Answers that mean "not now" rather than "no": throttling (429, also sent while the storage of a just created
# CustomResourceDefinition initialises), an API server or its etcd briefly unavailable (5xx), a refused connection
# (an API server restarting). Such a request is tried again, after the server's Retry-After when it gives one.
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})
RETRY_ATTEMPTS = 6
RETRY_MAX_DELAY = 5.0
T = TypeVar("T")


def transient(exc: BaseException, verb: str = "get") -> float | None:
    """The delay before trying a failed request again, or None when trying again would not help (or could do it
    twice: a create is tried again only when the server surely did not act on it)."""
    if isinstance(exc, httpx2.HTTPStatusError):  # ApiError, or a plain-text answer (a proxy's 502 page)
        status = exc.status if isinstance(exc, ApiError) else None
        code = (status.code if status is not None else None) or exc.response.status_code
        if code not in TRANSIENT_CODES or (verb == "create" and code not in (429, 503)):
            return None
        details = status.details if status is not None else None
        hint = getattr(details, "retryAfterSeconds", None) if details else None
        if hint is None:
            header = exc.response.headers.get("Retry-After", "")
            hint = int(header) if header.isdigit() else None
        return float(hint) if hint else 0.0
    if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return 0.0  # never reached the server
    if isinstance(exc, httpx2.ReadTimeout) and verb in ("get", "list"):
        return 0.0
    if isinstance(exc, httpx2.RemoteProtocolError) and verb != "create":
        return 0.0  # the connection dropped: reads, applies and preconditioned patches are safe to send again
    return None


async def _call(verb: str, request: Callable[[], Awaitable[T]]) -> T:
    """``request()``, timed and counted under ``verb``, tried again on a transient failure with growing delays."""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            async with telemetry.timed(verb):
                return await request()
        except Exception as exc:
            hint = transient(exc, verb)
            if hint is None or attempt == RETRY_ATTEMPTS:
                raise
            delay = min(RETRY_MAX_DELAY, max(hint, 0.1 * 2 ** (attempt - 1)))
            metrics.API_RETRIES.labels(verb).inc()
            log.info("%s failed (%s); trying again in %.1fs", verb, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


_clients: dict[int, AsyncClient] = {}


def client() -> AsyncClient:
    """The API client of the running event loop (created on first use, from KUBECONFIG or in-cluster config)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _clients:
        _clients[loop] = AsyncClient(field_manager=FIELD_MANAGER)
    return _clients[loop]


_resources: dict[str, Any] = {}


def resource(kind: str, plural: str) -> Any:
    """The lightkube class of one of our kinds."""
    if kind not in _resources:
        _resources[kind] = create_namespaced_resource(GROUP, VERSION, kind, plural)
    return _resources[kind]


async def patch_status(
    kind: str, plural: str, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None = None
) -> dict[str, Any]:
    """Merge-patch the status subresource of one of our objects (None values remove keys, lists are replaced);
    returns the object as stored. With ``resource_version``, the API server refuses (409) a patch of an object that
    changed since, or of another object of the same name (a ``metadata.uid`` in the patch is not checked on the
    status subresource)."""
    res = resource(kind, plural)
    body: dict[str, Any] = {"status": patch}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    out = await _call("patch", lambda: client().patch(res.Status, name, body, namespace=namespace,
                                                      patch_type=PatchType.MERGE))  # fmt: skip
    return _to_dict(out)


async def patch_metadata(
    api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch the metadata of an object (None values remove keys: an annotation consumed); returns the object
    as stored."""
    res = _resource_of(api_version, kind)
    out = await _call("patch", lambda: client().patch(res, name, {"metadata": patch}, namespace=namespace,
                                                      patch_type=PatchType.MERGE))  # fmt: skip
    return _to_dict(out)


_BUILTIN: dict[tuple[str, str], Any] = {
    ("apps/v1", "Deployment"): Deployment,
    ("v1", "Service"): Service,
    ("v1", "ConfigMap"): ConfigMap,
    ("v1", "Event"): Event,
    ("v1", "Pod"): Pod,
    ("v1", "Secret"): Secret,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): PodDisruptionBudget,
}
_generic: dict[tuple[str, str], Any] = {}


class KindNotServed(Exception):
    """The API server does not serve this kind (its CustomResourceDefinition is not installed)."""


def register_kind(api_version: str, kind: str, plural: str) -> None:
    """Make a custom kind (HTTPRoute, VirtualService) known to ``apply``, ``get`` and ``delete``."""
    if (api_version, kind) not in _BUILTIN and (api_version, kind) not in _generic:
        group, _, version = api_version.rpartition("/")
        _generic[(api_version, kind)] = create_namespaced_resource(group, version, kind, plural)


def _resource_of(api_version: str, kind: str) -> Any:
    res = _BUILTIN.get((api_version, kind)) or _generic.get((api_version, kind))
    if res is None:
        raise ValueError(f"{api_version} {kind} is not registered")
    return res


def _missing_kind(exc: Exception) -> bool:
    # A 404 for an absent object names it in details; a 404 for an absent kind does not (and for a path the API
    # server does not serve at all, the body is plain text, which the client raises as a bare HTTP error).
    if isinstance(exc, ApiError):
        details = exc.status.details
        return exc.status.code == 404 and not (details and details.name)
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) == 404


def _to_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


async def apply(body: dict[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True) -> dict[str, Any]:
    """Server-side apply ``body`` under the operator's field manager (or another), taking over conflicting fields
    (without ``force``: the API server answers 409 when another manager holds one of them)."""
    res = _resource_of(body["apiVersion"], body["kind"])
    meta = body["metadata"]
    try:
        out = await _call("apply", lambda: client().patch(
            res, meta["name"], body, namespace=meta["namespace"], patch_type=PatchType.APPLY,
            field_manager=field_manager, force=force,
        ))  # fmt: skip
    except Exception as exc:
        if _missing_kind(exc):
            raise KindNotServed(f"{body['kind']} ({body['apiVersion']}) is not served by this cluster") from exc
        raise
    return _to_dict(out)


async def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    res = _resource_of(api_version, kind)
    try:
        return _to_dict(await _call("get", lambda: client().get(res, name, namespace=namespace)))
    except Exception as exc:
        if _missing_kind(exc):
            raise KindNotServed(f"{kind} ({api_version}) is not served by this cluster") from exc
        if isinstance(exc, ApiError) and exc.status.code == 404:
            return None
        raise


async def list_objects(
    api_version: str, kind: str, plural: str, namespace: str = "*", labels: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every object of a kind in ``namespace`` (``*``: all namespaces), with ``labels`` if given, as plain
    bodies."""
    register_kind(api_version, kind, plural)
    res = _resource_of(api_version, kind)
    try:

        async def listed() -> list[dict[str, Any]]:
            selector: dict[str, Any] | None = dict(labels) if labels else None
            return [_to_dict(obj) async for obj in client().list(res, namespace=namespace, labels=selector)]

        return await _call("list", listed)
    except Exception as exc:
        if _missing_kind(exc):
            raise KindNotServed(f"{kind} ({api_version}) is not served by this cluster") from exc
        raise


async def delete(api_version: str, kind: str, namespace: str, name: str) -> None:
    """Delete the object (the garbage collector removes what it owns, such as Pods); absent is fine."""
    res = _resource_of(api_version, kind)
    try:
        await _call("delete", lambda: client().delete(res, name, namespace=namespace))
    except ApiError as exc:
        if exc.status.code != 404:
            raise


async def create(body: dict[str, Any]) -> dict[str, Any]:
    """Create ``body`` (a create is tried again only when the server surely did not act on it)."""
    res = _resource_of(body["apiVersion"], body["kind"])
    out = await _call("create", lambda: client().create(res.from_dict(body)))
    return _to_dict(out)


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``; empty when they are equal."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = value
    return patch
