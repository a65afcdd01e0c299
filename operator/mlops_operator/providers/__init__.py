"""Metric providers of the canary analysis: one interface, one class per source (``direct``: the model servers'
own /metrics pages; ``prometheus``: a Prometheus-compatible HTTP API).

A provider measures the analysis metrics of a candidate and of the stable version over one window. The ``direct``
provider needs to look during the window (it reads counters at the window's start, at each sample step and at its
end); the controller calls ``sample`` while a window is open, as often as it asks, and ``measure`` once the window
has closed. Nothing a provider remembers is needed to resume a rollout: a window whose start it did not see is
measured from the first reading it took (an error, counted as such, when it took only the last).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mlops_operator.api.canaryrollout import AnalysisMetric
from mlops_operator.logic.analysis import Values


@dataclass(frozen=True)
class Target:
    """The two versions measured."""

    namespace: str
    deployment: str
    """The ModelDeployment."""
    model: str
    canary: str
    stable: str | None
    port: int = 8080
    """The model servers' HTTP port."""
    prediction: str | None = None
    """The name of the prediction in the candidate's reference profile (predictionShift)."""


class Provider(Protocol):
    name: str

    async def sample(
        self, key: str, target: Target, metrics: Sequence[AnalysisMetric], start: datetime, now: datetime
    ) -> float | None:
        """Called while the window that opened at ``start`` is open (``key`` names the rollout): returns the
        seconds until it wants to be called again (None: not before ``measure``)."""
        ...

    async def measure(
        self, key: str, target: Target, metrics: Sequence[AnalysisMetric], start: datetime, end: datetime
    ) -> dict[str, Values]:
        """Every metric's values over the closed window [start, end], by metric name; a metric that could not be
        measured has ``Values.error``."""
        ...

    def forget(self, key: str) -> None:
        """Drops what is remembered for ``key`` (the rollout is gone)."""
        ...
