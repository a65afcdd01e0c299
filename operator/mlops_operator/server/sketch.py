"""Drift sketches: every input feature and the prediction counted into the reference profile's bins.

Counts only grow (like Prometheus counters), so the counts of many replicas over a time window are summed from
their increases: ``sum by (feature, bin) (increase(mlops_server_feature_bin_total[1h]))``. The same counts are
served as JSON at ``/v2/models/{name}/sketch`` for the direct provider. Numeric bins are the profile's: bin i holds
edges[i] <= x < edges[i+1]; values below the first edge count in the first bin, above the last edge in the last.
Categorical features count their profile's categories, "__other__" for the rest; missing values count as
"__null__".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_operator.logic.profile import category

OTHER, NULL = "__other__", "__null__"
FLUSH_ROWS = 256


@dataclass
class _Numeric:
    names: list[str]
    columns: npt.NDArray[np.intp]  # column of each feature in the input tensor
    inner: npt.NDArray[np.float64]  # (features, max_bins - 1) inner edges, padded with +inf
    bins: npt.NDArray[np.intp]  # bins per feature
    counts: npt.NDArray[np.int64]  # (features, max_bins)
    nulls: npt.NDArray[np.int64]


def _numeric(names: list[str], columns: list[int], profiles: list[Mapping[str, Any]]) -> _Numeric:
    width = max((max(len(p["edges"]) - 1, 1) for p in profiles), default=1)
    inner = np.full((len(names), max(width - 1, 0)), np.inf)
    for i, p in enumerate(profiles):
        edges = p["edges"][1:-1]
        inner[i, : len(edges)] = edges
    bins = np.array([max(len(p["edges"]) - 1, 1) for p in profiles], dtype=np.intp)
    return _Numeric(names, np.array(columns, dtype=np.intp), inner, bins,
                    np.zeros((len(names), width), np.int64), np.zeros(len(names), np.int64))  # fmt: skip


class Sketch:
    """The live counts of one model version against its reference profile."""

    def __init__(self, profile: Mapping[str, Any], feature_names: Iterable[str], prediction: str | None = None):
        features = profile.get("features", {})
        columns = list(feature_names)
        numeric = [(n, c) for c, n in enumerate(columns) if features.get(n, {}).get("type") == "numeric"]
        self.numeric = _numeric([n for n, _ in numeric], [c for _, c in numeric], [features[n] for n, _ in numeric])
        self.categorical = {
            n: (c, {cat: i for i, cat in enumerate(features[n]["categories"])}, np.zeros(
                len(features[n]["categories"]) + 2, np.int64))
            for c, n in enumerate(columns) if features.get(n, {}).get("type") == "categorical"
        }  # fmt: skip
        self.prediction_name = prediction or profile.get("prediction")
        reference = features.get(self.prediction_name or "", {})
        self.prediction = (
            _numeric([self.prediction_name or ""], [0], [reference]) if reference.get("type") == "numeric" else None
        )
        self.prediction_categories = (
            ({c: i for i, c in enumerate(reference["categories"])}, np.zeros(len(reference["categories"]) + 2,
                                                                             np.int64))
            if reference.get("type") == "categorical" else None
        )  # fmt: skip
        self.samples = 0
        self._rows: list[npt.NDArray[Any]] = []
        self._predictions: list[npt.NDArray[Any]] = []
        self._pending = 0

    def count(self, rows: npt.NDArray[Any], predictions: npt.NDArray[Any] | None = None) -> None:
        """Counts a batch: ``rows`` is [batch, features] in the order of the feature names.

        Requests are small and numpy calls have a fixed cost, so rows are kept and counted together once
        FLUSH_ROWS have gathered (``due``; the server flushes after it has answered, so that no request pays for
        counting others' rows), and whenever the counts are read: a few microseconds a request instead of tens.
        """
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
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
        """Counts the rows gathered so far."""
        if not self._rows:
            return
        rows_list, predictions_list = self._rows, self._predictions
        self._rows, self._predictions, self._pending = [], [], 0
        rows = rows_list[0] if len(rows_list) == 1 else np.concatenate(rows_list)
        predictions = np.concatenate(predictions_list).reshape(-1, 1) if predictions_list else None
        self._count(rows, predictions)

    def _count(self, rows: npt.NDArray[Any], predictions: npt.NDArray[Any] | None) -> None:
        self.samples += rows.shape[0]
        if self.numeric.names:
            _count_numeric(self.numeric, rows[:, self.numeric.columns].astype(np.float64, copy=False))
        for column, index, counts in self.categorical.values():
            _count_categories(rows[:, column], index, counts)
        if predictions is not None:
            values = predictions
            if self.prediction is not None and values.dtype.kind in "iufb":
                _count_numeric(self.prediction, values.astype(np.float64))
            elif self.prediction_categories is not None:
                _count_categories(values[:, 0], *self.prediction_categories)

    def snapshot(self) -> dict[str, Any]:
        """Every counter, for the JSON endpoint and the metrics collector."""
        self.flush()
        out: dict[str, Any] = {"samples": self.samples, "features": {}}
        for sketch in (self.numeric, self.prediction):
            if sketch is None:
                continue
            for i, name in enumerate(sketch.names):
                out["features"][name] = {
                    "type": "numeric",
                    "counts": sketch.counts[i, : sketch.bins[i]].tolist(),
                    "nulls": int(sketch.nulls[i]),
                }
        categorical = {n: (idx, counts) for n, (_, idx, counts) in self.categorical.items()}
        if self.prediction_categories is not None:
            categorical[self.prediction_name or ""] = self.prediction_categories
        for name, (index, counts) in categorical.items():
            out["features"][name] = {
                "type": "categorical",
                "categories": list(index),
                "counts": counts[: len(index)].tolist(),
                "otherCount": int(counts[len(index)]),
                "nulls": int(counts[len(index) + 1]),
            }
        return out


def _count_numeric(sketch: _Numeric, values: npt.NDArray[np.float64]) -> None:
    missing = np.isnan(values)
    # The bin of a value is the number of inner edges at or below it: one comparison per edge, no Python loop.
    bins = (values[:, :, None] >= sketch.inner[None, :, :]).sum(axis=2)
    if missing.any():
        sketch.nulls += missing.sum(axis=0)
        bins = np.where(missing, -1, bins)
    width = sketch.counts.shape[1]
    flat = (np.arange(len(sketch.names))[None, :] * width + bins)[bins >= 0]
    sketch.counts += np.bincount(flat, minlength=sketch.counts.size).reshape(sketch.counts.shape)


def _count_categories(values: npt.NDArray[Any], index: Mapping[str, int], counts: npt.NDArray[np.int64]) -> None:
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
