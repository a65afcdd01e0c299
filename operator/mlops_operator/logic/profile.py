"""Reference profiles: per-feature summaries that live data is compared with for drift.

The format (``profile.json`` in the ConfigMap named in a ModelVersion's status.profile.configMap)::

    {
      "format": "mlops.io/profile/v1",
      "rows": 1000000,                       # rows in the reference dataset
      "prediction": "score",                 # the prediction column, if any
      "features": {
        "amount": {                          # a numeric feature
          "type": "numeric",
          "count": 999000, "nulls": 1000, "nullRate": 0.001,
          "mean": 52.1, "std": 30.2, "min": 0.0, "max": 999.0,   # over non-null values; std is the population std
          "edges": [0.0, 4.9, ..., 999.0],   # decile edges (numpy.quantile, linear), duplicates removed; with at
                                             # most 10 distinct values, the values and one step past the last
                                             # (a bin per value)
          "counts": [99900, ...],            # reference rows per bin
          "shares": [0.1, ...]               # counts / count
        },
        "country": {                         # a categorical feature (strings, booleans)
          "type": "categorical",
          "count": 1000000, "nulls": 0, "nullRate": 0.0,
          "categories": ["de", "fr", ...],   # the most frequent, most frequent first (ties: by value)
          "counts": [400000, ...], "shares": [0.4, ...],
          "otherCount": 1000, "other": 0.001 # every other category together
        }
      }
    }

Bins follow numpy.histogram: bin i holds edges[i] <= x < edges[i+1], the last bin also holds x == edges[-1].
Counting live values, a value below edges[0] goes into the first bin and one above edges[-1] into the last, so
that live shares sum to 1 like the reference's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "mlops.io/profile/v1"
DECILES = np.linspace(0.0, 1.0, 11)
TOP_CATEGORIES = 20
DISCRETE_MAX = 10
"""A numeric feature with at most this many distinct values gets a bin per value."""


def numeric_feature(values: npt.NDArray[np.float64], nulls: int) -> dict[str, Any]:
    """The profile of one numeric feature; ``values`` holds its non-null values."""
    count = int(values.size)
    total = count + nulls
    out: dict[str, Any] = {
        "type": "numeric",
        "count": count,
        "nulls": nulls,
        "nullRate": nulls / total if total else 0.0,
    }
    if count == 0:
        out.update(edges=[], counts=[], shares=[])
        return out
    distinct = np.unique(values)
    if 1 < distinct.size <= DISCRETE_MAX:
        # Few distinct values (class labels, counts, flags): a bin per value. Deciles would merge them (a 0/1
        # column has the deciles 0 and 1 only: one bin holding both), and a shift between them would go unseen.
        edges = np.append(distinct, distinct[-1] + (distinct[-1] - distinct[-2]))
    else:
        edges = np.unique(np.quantile(values, DECILES))
    if edges.size == 1:
        # A constant feature: one bin holding every value.
        counts = np.array([count])
    else:
        counts, _ = np.histogram(values, bins=edges)
    out.update(
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        shares=[float(c) / count for c in counts],
    )
    return out


def categorical_feature(categories: list[Any], counts: list[int], nulls: int) -> dict[str, Any]:
    """The profile of one categorical feature from its value counts (nulls excluded)."""
    pairs = sorted(zip(categories, counts, strict=True), key=lambda p: (-p[1], str(p[0])))
    count = int(sum(counts))
    total = count + nulls
    top = pairs[:TOP_CATEGORIES]
    other = count - sum(c for _, c in top)
    return {
        "type": "categorical",
        "count": count,
        "nulls": nulls,
        "nullRate": nulls / total if total else 0.0,
        "categories": [category(v) for v, _ in top],
        "counts": [int(c) for _, c in top],
        "shares": [c / count if count else 0.0 for _, c in top],
        "otherCount": int(other),
        "other": other / count if count else 0.0,
    }


def category(value: Any) -> str:
    """A categorical value as profiles and sketches count it (booleans as true and false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
