"""Operator-wide kopf settings: our own finalizer and annotation prefix, watch timeouts, posting."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from mlops_operator import GROUP

FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PREFIX = GROUP
# The API server ends each watch after this many seconds; the client gives up a little later, so that a watch
# that went silent behind a load balancer is noticed and restarted instead of hanging for ever.
WATCH_SERVER_TIMEOUT = 300
WATCH_CLIENT_TIMEOUT = WATCH_SERVER_TIMEOUT + 30
CONNECT_TIMEOUT = 30


class ChangeHandledOnly(kopf.AnnotationsDiffBaseStorage):
    """kopf's last handled configuration, for the kinds with change handlers only (``intake``'s). For every other
    kind (the controllers' kinds and their children, all seen through event handlers) kopf would otherwise deep-copy
    each event's body to compare two essences that nothing reads: the largest part of its cost per event."""

    def __init__(self, kinds: Iterable[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds = frozenset(kinds)

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        if body.get("kind") not in self.kinds:
            return {}
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: Any) -> Any:
        if body.get("kind") not in self.kinds:
            return None
        return super().fetch(body=body)


def configure(settings: kopf.OperatorSettings, namespaced: bool = False, change_handled: Iterable[str] = ()) -> None:
    """Apply the operator's settings to ``settings``; ``namespaced`` when it watches named namespaces only;
    ``change_handled``: the kinds with kopf change handlers (the others need no diff base)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX, v1=False)
    settings.persistence.diffbase_storage = ChangeHandledOnly(
        change_handled, prefix=ANNOTATION_PREFIX, key="last-handled-configuration", v1=False
    )
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = CONNECT_TIMEOUT
    settings.networking.connect_timeout = CONNECT_TIMEOUT
    settings.networking.request_timeout = 60
    settings.posting.level = logging.INFO
    # Several replicas are not supported yet: the chart runs one with the Recreate strategy.
    settings.peering.standalone = True
    # Watching named namespaces, kopf would list Namespaces (cluster-scoped: a namespaced install has no right to)
    # and try again for about a minute before serving; and it would watch CRDs. The namespaces are known and the
    # kinds are discovered at the start either way.
    settings.scanning.disabled = namespaced
