"""Drift sketches: every input feature and the prediction counted into the reference profile's bins.

Counts only grow (like Prometheus counters), so the counts of many replicas over a time window are summed from
their increases: ``sum by (feature, bin) (increase(mlops_server_feature_bin_total[1h]))``. The same counts are
served as JSON at ``/v2/models/{name}/sketch`` for the direct provider. Numeric bins are the profile's: bin i holds
edges[i] <= x < edges[i+1]; values below the first edge count in the first bin, above the last edge in the last.
Categorical features count their profile's categories, "__other__" for the rest; missing values count as
"__null__".

Besides those cumulative counts, a sketch keeps the counts of every wall-clock minute (``floor(unix time / 60)``)
that had traffic, for ``retention_minutes``: ``snapshot(window)`` sums the last minutes, so that a reader without
state of its own (the DriftMonitor controller, across its restarts) gets the counts of the last hour of each Pod
and sums them across Pods. Every count of a sketch (samples, bins, nulls, categories, other) has a slot in one flat
int64 vector (``_Slots``): the cumulative counts are one such vector, each minute another, so that a minute costs
8 bytes a slot plus about 200 bytes of array and dictionary overhead, and only minutes with traffic are kept.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_operator.logic.profile import category

OTHER, NULL = "__other__", "__null__"
BELOW, ABOVE = "__below__", "__above__"
"""Numeric values below the reference's minimum, and above its maximum (also counted in the outer bins)."""
FLUSH_ROWS = 256
RETENTION_MINUTES = 24 * 60
"""How long the per-minute counts are kept by default: the longest window ``snapshot`` answers."""
SAMPLES = 0
"""The slot of the row count in a counts vector."""

Counts = npt.NDArray[np.int64]


class WindowError(ValueError):
    """A window ``snapshot`` cannot answer: not positive, or longer than the retention."""


class _Slots:
    """Hands out consecutive slots of a counts vector."""

    def __init__(self) -> None:
        self.size = 0

    def take(self, n: int) -> slice:
        taken = slice(self.size, self.size + n)
        self.size += n
        return taken


@dataclass(frozen=True)
class _Numeric:
    names: list[str]
    columns: npt.NDArray[np.intp]  # column of each feature in the input tensor
    inner: npt.NDArray[np.float64]  # (features, width - 1) inner edges, padded with +inf
    bins: npt.NDArray[np.intp]  # bins per feature
    width: int  # the most bins of any feature
    counts: slice  # slots of the (features, width) bin counts, row by row
    nulls: slice  # slots of the nulls, one per feature
    low: npt.NDArray[np.float64]  # each feature's reference minimum (-inf when the profile has none)
    high: npt.NDArray[np.float64]  # and maximum (+inf)
    below: slice  # slots of the values below the reference's minimum, one per feature
    above: slice  # and above its maximum


@dataclass(frozen=True)
class _Categorical:
    name: str
    column: int  # column in the input tensor (the prediction's: 0)
    index: dict[str, int]  # category -> its slot among ``slots``
    slots: slice  # the categories' counts, then other, then null


def _numeric(names: list[str], columns: list[int], profiles: list[Mapping[str, Any]], slots: _Slots) -> _Numeric:
    width = max((max(len(p["edges"]) - 1, 1) for p in profiles), default=1)
    inner = np.full((len(names), max(width - 1, 0)), np.inf)
    for i, p in enumerate(profiles):
        edges = p["edges"][1:-1]
        inner[i, : len(edges)] = edges
    bins = np.array([max(len(p["edges"]) - 1, 1) for p in profiles], dtype=np.intp)
    low = np.array([p["min"] if p.get("min") is not None else -np.inf for p in profiles], dtype=np.float64)
    high = np.array([p["max"] if p.get("max") is not None else np.inf for p in profiles], dtype=np.float64)
    return _Numeric(names, np.array(columns, dtype=np.intp), inner, bins, width,
                    slots.take(len(names) * width), slots.take(len(names)), low, high,
                    slots.take(len(names)), slots.take(len(names)))  # fmt: skip


def _categorical(name: str, column: int, profile: Mapping[str, Any], slots: _Slots) -> _Categorical:
    categories = profile["categories"]
    return _Categorical(name, column, {c: i for i, c in enumerate(categories)}, slots.take(len(categories) + 2))


class Sketch:
    """The live counts of one model version against its reference profile: cumulative, and per minute."""

    def __init__(
        self,
        profile: Mapping[str, Any],
        feature_names: Iterable[str],
        prediction: str | None = None,
        retention_minutes: int = RETENTION_MINUTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_minutes < 1:
            raise ValueError(f"the retention must be at least one minute, got {retention_minutes}")
        features = profile.get("features", {})
        columns = list(feature_names)
        slots = _Slots()
        slots.take(1)  # SAMPLES
        numeric = [(n, c) for c, n in enumerate(columns) if features.get(n, {}).get("type") == "numeric"]
        self.numeric = _numeric([n for n, _ in numeric], [c for _, c in numeric], [features[n] for n, _ in numeric],
                                slots)  # fmt: skip
        self.categorical = [
            _categorical(n, c, features[n], slots)
            for c, n in enumerate(columns)
            if features.get(n, {}).get("type") == "categorical"
        ]
        self.prediction_name = prediction or profile.get("prediction")
        reference = features.get(self.prediction_name or "", {})
        self.prediction = (
            _numeric([self.prediction_name or ""], [0], [reference], slots) if reference.get("type") == "numeric"
            else None
        )  # fmt: skip
        self.prediction_categories = (
            _categorical(self.prediction_name or "", 0, reference, slots) if reference.get("type") == "categorical"
            else None
        )  # fmt: skip
        self.size = slots.size
        """Slots of a counts vector: the memory of a minute with traffic is 8 bytes each."""
        self._total: Counts = np.zeros(self.size, np.int64)
        """The cumulative counts (the Prometheus counters)."""
        self.retention_minutes = retention_minutes
        self._clock = clock
        self.started_at = clock()
        """When the sketch started counting (unix seconds): windows that begin earlier are incomplete."""
        self._minutes: dict[int, Counts] = {}
        """The counts of each minute with traffic in the retention, by minute (unix time // 60)."""
        self._pruned = int(self.started_at // 60)
        self._rows: list[npt.NDArray[Any]] = []
        self._predictions: list[npt.NDArray[Any]] = []
        self._runs: list[tuple[int, int, int]] = []
        """The staged chunks by arrival minute: (minute, its first index in _rows, its first in _predictions)."""
        self._pending = 0

    @property
    def samples(self) -> int:
        """Rows counted so far (staged rows are not, until ``flush``)."""
        return int(self._total[SAMPLES])

    def count(self, rows: npt.NDArray[Any], predictions: npt.NDArray[Any] | None = None) -> None:
        """Counts a batch: ``rows`` is [batch, features] in the order of the feature names.

        Requests are small and numpy calls have a fixed cost, so rows are kept and counted together once
        FLUSH_ROWS have gathered (``due``; the server flushes after it has answered, so that no request pays for
        counting others' rows), and whenever the counts are read: a few microseconds a request instead of tens.
        The minute the rows arrived in is kept with them: they count in that minute, however late the flush.
        """
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        minute = int(self._clock() // 60)
        runs = self._runs
        if not runs or runs[-1][0] != minute:
            runs.append((minute, len(self._rows), len(self._predictions)))
        self._rows.append(rows)
        if predictions is not None:
            # The first column of the prediction: the label or value the profile's prediction describes.
            self._predictions.append(np.asarray(predictions).reshape(rows.shape[0], -1)[:, 0])
        self._pending += rows.shape[0]

    @property
    def due(self) -> bool:
        """Whether enough rows have gathered to be counted (``flush``)."""
        return self._pending >= FLUSH_ROWS

    def flush(self) -> None:
        """Counts the rows gathered so far, each into the minute it arrived in; drops minutes past the retention."""
        self._flush(int(self._clock() // 60))

    def _flush(self, now: int) -> None:
        oldest = now - self.retention_minutes + 1
        if now != self._pruned:  # once a minute: a scan of at most retention_minutes keys
            self._minutes = {m: c for m, c in self._minutes.items() if m >= oldest}
            self._pruned = now
        if not self._rows:
            return
        rows_list, predictions_list, runs = self._rows, self._predictions, self._runs
        self._rows, self._predictions, self._runs, self._pending = [], [], [], 0
        ends = [(r, p) for _, r, p in runs[1:]] + [(len(rows_list), len(predictions_list))]
        for (minute, first_row, first_prediction), (end_row, end_prediction) in zip(runs, ends, strict=True):
            rows = _joined(rows_list[first_row:end_row])
            staged = predictions_list[first_prediction:end_prediction]
            predictions = _joined(staged).reshape(-1, 1) if staged else None
            counts: Counts = np.zeros(self.size, np.int64)
            self._count(rows, predictions, counts)
            self._total += counts
            if minute < oldest:  # staged longer than the retention (no traffic, no read since): in no window
                continue
            bucket = self._minutes.get(minute)
            if bucket is None:
                self._minutes[minute] = counts
            else:
                bucket += counts

    def _count(self, rows: npt.NDArray[Any], predictions: npt.NDArray[Any] | None, into: Counts) -> None:
        into[SAMPLES] += rows.shape[0]
        if self.numeric.names:
            _count_numeric(self.numeric, rows[:, self.numeric.columns].astype(np.float64, copy=False), into)
        for feature in self.categorical:
            _count_categories(rows[:, feature.column], feature.index, into[feature.slots])
        if predictions is not None:
            values = predictions
            if self.prediction is not None and values.dtype.kind in "iufb":
                _count_numeric(self.prediction, values.astype(np.float64), into)
            elif self.prediction_categories is not None:
                _count_categories(
                    values[:, 0], self.prediction_categories.index, into[self.prediction_categories.slots]
                )

    def snapshot(self, window: float | None = None) -> dict[str, Any]:
        """Every counter, for the JSON endpoint and the metrics collector: the cumulative counts, or with
        ``window`` (seconds) the sum of the last ``ceil(window / 60)`` minutes, the current one included, with
        ``window`` (the seconds covered), ``windowStart``, ``windowEnd`` (unix seconds: the first minute's start,
        the current minute's end), ``startedAt`` and ``complete`` (whether the sketch counted for the whole
        window). Raises WindowError (a ValueError) for a window not positive or longer than the retention."""
        minutes = None if window is None else self.window_minutes(window)
        now = int(self._clock() // 60)
        self._flush(now)
        if minutes is None:
            return self._render(self._total)
        first = now - minutes + 1
        counts: Counts = np.zeros(self.size, np.int64)
        for minute, bucket in self._minutes.items():
            if first <= minute <= now:
                counts += bucket
        out = self._render(counts)
        out.update(window=minutes * 60, windowStart=first * 60, windowEnd=(now + 1) * 60, startedAt=self.started_at,
                   complete=self.started_at <= first * 60)  # fmt: skip
        return out

    def window_minutes(self, window: float) -> int:
        """The minutes a window of ``window`` seconds covers (rounded up); WindowError when it cannot be answered."""
        if not window > 0:  # NaN too
            raise WindowError(f"the window must be positive, got {window:g} seconds")
        if window > self.retention_minutes * 60:
            raise WindowError(f"the window of {window:g} seconds is longer than the sketch's retention of "
                              f"{self.retention_minutes} minutes ({self.retention_minutes * 60} seconds)")  # fmt: skip
        return math.ceil(window / 60)

    def _render(self, counts: Counts) -> dict[str, Any]:
        """A counts vector in the JSON form of the endpoint."""
        out: dict[str, Any] = {"samples": int(counts[SAMPLES]), "features": {}}
        for numeric in (self.numeric, self.prediction):
            if numeric is None:
                continue
            bins = counts[numeric.counts].reshape(len(numeric.names), numeric.width)
            nulls, below, above = counts[numeric.nulls], counts[numeric.below], counts[numeric.above]
            for i, name in enumerate(numeric.names):
                out["features"][name] = {
                    "type": "numeric",
                    "counts": bins[i, : numeric.bins[i]].tolist(),
                    "nulls": int(nulls[i]),
                    "below": int(below[i]),
                    "above": int(above[i]),
                }
        categorical = [*self.categorical, *([self.prediction_categories] if self.prediction_categories else [])]
        for feature in categorical:
            values, n = counts[feature.slots], len(feature.index)
            out["features"][feature.name] = {
                "type": "categorical",
                "categories": list(feature.index),
                "counts": values[:n].tolist(),
                "otherCount": int(values[n]),
                "nulls": int(values[n + 1]),
            }
        return out


def _joined(chunks: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _count_numeric(sketch: _Numeric, values: npt.NDArray[np.float64], into: Counts) -> None:
    missing = np.isnan(values)
    # Outside the reference's range (NaN compares false): the out-of-range signal of a DriftMonitor.
    into[sketch.below] += (values < sketch.low[None, :]).sum(axis=0)
    into[sketch.above] += (values > sketch.high[None, :]).sum(axis=0)
    # The bin of a value is the number of inner edges at or below it: one comparison per edge, no Python loop.
    bins = (values[:, :, None] >= sketch.inner[None, :, :]).sum(axis=2)
    if missing.any():
        into[sketch.nulls] += missing.sum(axis=0)
        bins = np.where(missing, -1, bins)
    size = len(sketch.names) * sketch.width
    flat = (np.arange(len(sketch.names))[None, :] * sketch.width + bins)[bins >= 0]
    into[sketch.counts] += np.bincount(flat, minlength=size)


def _count_categories(values: npt.NDArray[Any], index: Mapping[str, int], counts: Counts) -> None:
    """Counts into ``counts`` (a view: the categories' slots, then other, then null)."""
    other, null = len(index), len(index) + 1
    try:
        # One dictionary lookup per distinct value, not per row.
        distinct, times = np.unique(values, return_counts=True)
        pairs: Iterable[tuple[Any, int]] = zip(distinct.tolist(), times.tolist(), strict=True)
    except TypeError:  # mixed types (None among strings) do not sort
        pairs = ((value, 1) for value in values.tolist())
    for value, n in pairs:
        if value is None:
            counts[null] += n
        else:
            counts[index.get(category(value), other)] += n


_DURATION = re.compile(r"(?:([0-9]+(?:\.[0-9]+)?)h)?(?:([0-9]+(?:\.[0-9]+)?)m)?(?:([0-9]+(?:\.[0-9]+)?)s)?")
_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def duration_seconds(text: str, plain: str = "seconds") -> float:
    """The seconds of ``30s``, ``15m``, ``1h``, ``1h30m`` (units h, m, s in that order), or of a plain number of
    ``plain`` ("seconds" or "minutes"). ValueError when ``text`` is none of these."""
    if _PLAIN.fullmatch(text):
        return float(text) * (60.0 if plain == "minutes" else 1.0)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration (such as 30s, 15m, 1h or 1h30m) nor a number of {plain}")
    hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds
