"""Operator-wide kopf settings: our own finalizer and annotation prefix, watch timeouts, posting."""

from __future__ import annotations

import logging

import kopf

from mlops_operator import GROUP

FINALIZER = f"{GROUP}/finalizer"
ANNOTATION_PREFIX = GROUP
# The API server ends each watch after this many seconds; the client gives up a little later, so that a watch
# that went silent behind a load balancer is noticed and restarted instead of hanging for ever.
WATCH_SERVER_TIMEOUT = 300
WATCH_CLIENT_TIMEOUT = WATCH_SERVER_TIMEOUT + 30
CONNECT_TIMEOUT = 30


def configure(settings: kopf.OperatorSettings, namespaced: bool = False) -> None:
    """Apply the operator's settings to ``settings``; ``namespaced`` when it watches named namespaces only."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration", v1=False
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
