"""Drift calibration at 1,000,000-row windows: on data drawn from the reference distribution itself, the share of
features the default methods flag at their default thresholds, which must stay at the nominal 5 % or below (plus
sampling error). The unit tests measure 500 and 200,000-row windows (tests/unit/test_drift.py); a million rows per
window is too slow for the test suite, so it is measured here.

Per window: a fresh 20,000-row reference profiled, a fresh 1,000,000-row window of the same distribution; numeric
features (normal, lognormal, five values) judged on raw values (exact) and on binned counts with the out-of-range
counts (as a live window); a categorical feature (8 categories) on its counts. Prints the flagged share per feature
type, and the sampling error of the nominal rate for that many windows.

    .venv/bin/python tests/bench/bench_drift_calibration.py [--windows 100]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from mlops_operator.logic import drift
from mlops_operator.logic.profile import categorical_feature, numeric_feature

KINDS = ("normal", "lognormal", "five values", "categorical")


def draw(rng: np.random.Generator, kind: str, n: int) -> Any:
    if kind == "normal":
        return rng.normal(0, 1, n)
    if kind == "lognormal":
        return rng.lognormal(0, 1, n)
    if kind == "five values":
        return rng.integers(1, 6, n).astype(float)
    shares = np.arange(8, 0, -1) / 36
    return rng.choice(np.array([f"c{i}" for i in range(8)]), n, p=shares)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    raw = dict.fromkeys(KINDS, 0)
    binned = dict.fromkeys(KINDS, 0)
    started = time.time()
    for _ in range(args.windows):
        for kind in KINDS:
            reference, current = draw(rng, kind, 20_000), draw(rng, kind, 1_000_000)
            if kind == "categorical":
                values, counts = np.unique(reference, return_counts=True)
                profile = categorical_feature(values.tolist(), counts.tolist(), 0)
                cur, missing = drift.bin_categorical(current.tolist(), profile["categories"])
                live = drift.Current(drift.Binned("categorical", cur, missing))
                drifted = drift.compare(kind, drift.from_profile(profile), live).verdict == "Drifted"
                raw[kind] += drifted
                binned[kind] += drifted
                continue
            profile = numeric_feature(reference, 0)
            ordered = np.sort(current)
            cur, missing = drift.bin_numeric(current, profile["edges"])
            outside = (int(np.searchsorted(ordered, profile["min"], "left")),
                       int(ordered.size - np.searchsorted(ordered, profile["max"], "right")))  # fmt: skip
            ref = drift.from_profile(profile)
            exact = drift.Current(drift.Binned("numeric", cur, missing), ordered, outside)
            raw[kind] += drift.compare(kind, ref, exact, reference_raw=np.sort(reference)).verdict == "Drifted"
            live = drift.Current(drift.Binned("numeric", cur, missing), None, outside)
            binned[kind] += drift.compare(kind, ref, live).verdict == "Drifted"
    error = 3 * math.sqrt(0.05 * 0.95 / args.windows)
    print(f"drift calibration: {args.windows} windows of 1,000,000 rows from the reference distribution, each against "
          f"a fresh 20,000-row reference ({time.time() - started:.0f} s); default methods (wasserstein, "
          "jensenShannon) and quality signals")  # fmt: skip
    for kind in KINDS:
        line = f"  {kind:12} flagged {raw[kind] / args.windows:.1%} on raw values"
        if kind != "categorical":
            line += f", {binned[kind] / args.windows:.1%} on binned counts (a live window)"
        print(line)
    print(f"  nominal 5 % (the bound with 3 standard errors of {args.windows} windows: {0.05 + error:.1%})")


if __name__ == "__main__":
    main()
