"""What a controller declares: the kind it reconciles, the kinds it owns or watches, and its reconcile."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from mlops_operator.runtime.kinds import Body, Key, Resource, key_of
from mlops_operator.runtime.queue import Backoff, WorkQueue

Reconcile = Callable[[Key], Awaitable[float | None]]
"""One pass over one key; returns the seconds until the key must be looked at again (None: on events only)."""


@dataclass(frozen=True)
class Watch:
    """Another kind whose events concern the controller: ``keys`` maps an object of it (as it was before the event
    and as it is after) to the keys to reconcile."""

    resource: Resource
    keys: Callable[[Body], Iterable[Key]]


@dataclass
class Controller:
    """A controller: ``reconcile`` runs for the keys of ``resource``'s objects (``key``, by default the object's
    namespace and name), of its children of the ``owns`` kinds (by their controller reference) and of what the
    ``watches`` map to. An object whose ``urgent`` holds (by default: a spec not acted on yet) goes before the
    others."""

    name: str
    resource: Resource
    reconcile: Reconcile
    owns: tuple[Resource, ...] = ()
    watches: tuple[Watch, ...] = ()
    key: Callable[[Body], Key] = key_of
    urgent: Callable[[Body], bool] = lambda body: not_acted_on(body)  # defined below
    forget: Callable[[Body], None] = lambda _: None
    """Called when an object of ``resource`` is deleted: drops what the controller remembers of it."""
    is_echo: Callable[[Body], bool] = lambda _: False
    """Whether an event of ``resource`` only brings back the controller's own status write."""
    workers: int = 8
    backoff: Backoff = field(default_factory=Backoff)
    queue: WorkQueue = field(default_factory=WorkQueue)

    def notice(self, resource: Resource, before: Body | None, after: Body | None) -> None:
        """Queues the keys an event of ``resource`` concerns (``after`` None: the object was deleted)."""
        keys: set[Key] = set()
        urgent = False
        if resource == self.resource:
            body = after or before
            assert body is not None
            if after is None:
                self.forget(body)
            elif self.is_echo(after):
                return
            else:
                urgent = self.urgent(after)
            keys.add(self.key(body))
        if resource in self.owns:
            for body in (before, after):
                ref = owner_ref(body, self.resource) if body is not None else None
                if ref is not None:
                    keys.add((body["metadata"].get("namespace") or "", ref["name"]))  # type: ignore[index]
        for watch in self.watches:
            if watch.resource == resource:
                for body in (before, after):
                    if body is not None:
                        keys.update(watch.keys(body))
        for key in keys:
            self.queue.add(key, urgent=urgent)


def not_acted_on(body: Body) -> bool:
    """Whether the object's spec is newer than what its status says was acted on (status.observedGeneration)."""
    return bool((body.get("status") or {}).get("observedGeneration") != body["metadata"].get("generation"))


def owner_ref(body: Body, owner: Resource) -> dict[str, str] | None:
    """The controller reference of ``body`` when it points at an object of ``owner``."""
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == owner.kind and ref.get("apiVersion") == owner.api_version:
            return dict(ref)
    return None
