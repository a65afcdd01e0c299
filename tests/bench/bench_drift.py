"""Drift: a 1 M row dataset compared with a 100 k row reference, ours against Evidently's DataDriftPreset; and the
live evaluation of servers' sketch counts.

1. Batch. 1,000,000 current rows and 100,000 reference rows of 100 features, as Parquet files: 50 numeric of ten
   shapes (normal, lognormal, exponential, uniform, Student's t, bimodal, Poisson counts, gamma, beta, a 1..5
   rating; scales from 0.01 to 100), 50 categorical with 5 to 50 categories (Zipf-like shares). In the current data
   10 numeric features shift (location by 0.02 to 2 standard deviations, scale, a rating's shares), 5 categorical
   ones change their shares (one gains a new category), 3 gain 10% missing values; 3 others have 2% missing on both
   sides; the rest are drawn from the reference distribution. Generation is not timed. Ours:
   ``compare_datasets(current, reference=reference)`` with its defaults; the peer: Evidently's DataDriftPreset with
   its defaults, pandas reading the same files (``evidently_peer.py``, run by BENCH_EVIDENTLY_PYTHON, a Python with
   the evidently package: ``make bench`` provides it). Each runs in a fresh process: wall seconds of reading and
   comparing (imports apart; CPU seconds too, and the load average, since a shared machine skews wall time), and
   peak RSS, the process's own high-water mark (VmHWM: Linux carries ru_maxrss over exec from the parent). Then
   the per-feature verdicts side by side: how many each flags, which differ, each one's method and statistics, and
   why where it is clear. Goal: ours at most 5 s and 1 GiB.
2. Live evaluation. ``drift_monitor.evaluate`` of a 100-feature profile (from the reference) against counts from
   three servers' sketches (``server.sketch.Sketch``, 2,000 current rows each, merged with ``drift_monitor.merge``):
   median and p99 over 200 runs. Goal: under 5 ms. Beside it, the same distances written by hand with scipy on the
   same counts, and Evidently on the window's raw rows (what judging that window costs it); and, for information, a
   window of 3 x 100 rows, where the methods are tests (ks, chiSquare) with scipy's distributions.

BENCH_DRIFT_ROWS: the peer's current rows (default 1,000,000; ours always gets the full size, and for the verdict
comparison also the peer's size when it is smaller). BENCH_DRIFT_REPEAT: runs of ours (default 3, the median).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_operator.logic import drift_monitor
from mlops_operator.logic.profile import FORMAT
from mlops_operator.profiling import profile_column
from mlops_operator.server.sketch import Sketch

HERE = Path(__file__).resolve().parent
ROWS, REFERENCE_ROWS, NUMERIC, CATEGORICAL = 1_000_000, 100_000, 50, 50
PEER_ROWS = int(os.environ.get("BENCH_DRIFT_ROWS", str(ROWS)))
REPEAT = int(os.environ.get("BENCH_DRIFT_REPEAT", "3"))
GOAL_SECONDS, GOAL_MIB = 5.0, 1024.0
SERVERS, WINDOW_ROWS, SMALL_WINDOW_ROWS, EVALUATIONS, GOAL_EVALUATE_MS = 3, 2000, 100, 200, 5.0

SHAPES = ("normal", "lognormal", "exponential", "uniform", "student-t", "bimodal", "poisson", "gamma", "beta",
          "rating")  # fmt: skip
# Numeric changes (feature index -> change): a location shift in the shape's standard deviations, a scale change
# about its mean, or the rating's shares tilted toward high ratings (p_i * exp(t i), normalized).
NUMERIC_CHANGES: dict[int, tuple[str, float]] = {
    0: ("shift", 0.02), 11: ("shift", 0.05), 22: ("shift", 0.08), 33: ("shift", 0.12), 44: ("scale", 1.1),
    5: ("shift", 0.5), 16: ("shift", 1.0), 27: ("shift", 2.0), 38: ("scale", 2.0), 49: ("tilt", 0.15),
}  # fmt: skip
# Categorical changes: a share moved from the top category to the second or the last, spread over the others, all
# shares reversed, a new category.
CATEGORICAL_CHANGES: dict[int, tuple[str, float]] = {
    0: ("to-second", 0.02), 10: ("to-last", 0.05), 20: ("spread", 0.05), 30: ("reverse", 0.0), 40: ("new", 0.03),
}  # fmt: skip
MISSING_ADDED = {"num": (2, 13), "cat": (7,)}  # 10% missing in the current data only
MISSING_BOTH = {"num": (8, 18), "cat": (3,)}  # 2% missing on both sides: no drift
ADDED_SHARE, BOTH_SHARE = 0.10, 0.02

OURS = """
import json, sys, time
started = time.monotonic()
from mlops_operator.drift_batch import compare_datasets, feature_json
imported, cpu = time.monotonic(), time.process_time()
result = compare_datasets(sys.argv[1], reference=sys.argv[2])
done, cpu = time.monotonic(), time.process_time() - cpu
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
out = {"seconds": done - imported, "cpuSeconds": cpu, "importSeconds": imported - started, "peakRssMiB": hwm / 1024,
       "verdict": result.verdict, "features": {r.name: feature_json(r) for r in result.features}}
json.dump(out, open(sys.argv[3], "w"))
"""


# --- the data --------------------------------------------------------------------------------------------------------


def numeric_name(i: int) -> str:
    return f"num_{i:02d}_{SHAPES[i % len(SHAPES)]}"


def categories_of(j: int) -> int:
    return 5 + round(45 * j / (CATEGORICAL - 1))


def categorical_name(j: int) -> str:
    return f"cat_{j:02d}_k{categories_of(j)}"


def draw(shape: str, rng: np.random.Generator, n: int, tilt: float = 0.0) -> np.ndarray:
    if shape == "normal":
        return rng.normal(0.0, 1.0, n)
    if shape == "lognormal":
        return rng.lognormal(0.0, 0.75, n)
    if shape == "exponential":
        return rng.exponential(1.0, n)
    if shape == "uniform":
        return rng.uniform(0.0, 1.0, n)
    if shape == "student-t":
        return rng.standard_t(3, n)
    if shape == "bimodal":
        return np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(1.0, 1.0, n))
    if shape == "poisson":
        return rng.poisson(4.0, n).astype(np.float64)
    if shape == "gamma":
        return rng.gamma(2.0, 1.0, n)
    if shape == "beta":
        return rng.beta(2.0, 5.0, n)
    p = np.array([0.1, 0.15, 0.3, 0.3, 0.15]) * np.exp(tilt * np.arange(5))
    return rng.choice(np.arange(1.0, 6.0), n, p=p / p.sum())


def numeric_column(i: int, rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    shape = SHAPES[i % len(SHAPES)]
    kind, amount = NUMERIC_CHANGES.get(i, ("", 0.0)) if current else ("", 0.0)
    x = draw(shape, rng, n, amount if kind == "tilt" else 0.0)
    if kind in ("shift", "scale"):
        # The shape's own mean and standard deviation (from a large draw of its reference form).
        base = draw(shape, np.random.default_rng(i), 200_000)
        mean, sd = float(base.mean()), float(base.std())
        x = mean + (x - mean) * amount if kind == "scale" else x + amount * sd
    scale = 10.0 ** (i // 10 - 2)  # 0.01 .. 100
    return 3.0 * i + scale * x


def shares_of(j: int, current: bool) -> tuple[list[str], np.ndarray]:
    k = categories_of(j)
    exponent = 0.5 + 0.25 * (j % 5)
    p = 1.0 / np.arange(1, k + 1) ** exponent
    p /= p.sum()
    names = [f"c{j}_{v}" for v in range(k)]
    kind, amount = CATEGORICAL_CHANGES.get(j, ("", 0.0)) if current else ("", 0.0)
    if kind == "to-second":
        p[0], p[1] = p[0] - amount, p[1] + amount
    elif kind == "to-last":
        p[0], p[-1] = p[0] - amount, p[-1] + amount
    elif kind == "spread":
        p[0] -= amount
        p[1:] += amount / (k - 1)
    elif kind == "reverse":
        p = p[::-1].copy()
    elif kind == "new":
        p = np.append(p * (1 - amount), amount)
        names.append(f"c{j}_new")
    return names, p


def with_missing(values: pa.Array, rng: np.random.Generator, share: float) -> pa.Array:
    mask = rng.random(len(values)) < share
    return pc.if_else(pa.array(mask), pa.nulls(len(values), values.type), values)


def table(rng: np.random.Generator, n: int, current: bool) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for i in range(NUMERIC):
        values = pa.array(numeric_column(i, rng, n, current))
        share = (ADDED_SHARE if current and i in MISSING_ADDED["num"] else 0.0) + (
            BOTH_SHARE if i in MISSING_BOTH["num"] else 0.0
        )
        columns[numeric_name(i)] = with_missing(values, rng, share) if share else values
    for j in range(CATEGORICAL):
        names, p = shares_of(j, current)
        index = pa.array(rng.choice(len(names), n, p=p).astype(np.int32))
        values = pa.DictionaryArray.from_arrays(index, pa.array(names)).cast(pa.string())
        share = (ADDED_SHARE if current and j in MISSING_ADDED["cat"] else 0.0) + (
            BOTH_SHARE if j in MISSING_BOTH["cat"] else 0.0
        )
        columns[categorical_name(j)] = with_missing(values, rng, share) if share else values
    return pa.table(columns)


def truth() -> dict[str, str]:
    """What changed in each feature by construction ("" when nothing did)."""
    out = {numeric_name(i): "" for i in range(NUMERIC)} | {categorical_name(j): "" for j in range(CATEGORICAL)}
    for i, (kind, amount) in NUMERIC_CHANGES.items():
        out[numeric_name(i)] = {"shift": f"+{amount:g} sd", "scale": f"scale x{amount:g}",
                                "tilt": f"shares tilted ({amount:g})"}[kind]  # fmt: skip
    for j, (kind, amount) in CATEGORICAL_CHANGES.items():
        out[categorical_name(j)] = {"to-second": f"{amount:.0%} top->2nd", "to-last": f"{amount:.0%} top->last",
                                    "spread": f"{amount:.0%} top->rest", "reverse": "shares reversed",
                                    "new": f"new category {amount:.0%}"}[kind]  # fmt: skip
    for i in MISSING_ADDED["num"]:
        out[numeric_name(i)] = "+10% missing"
    for j in MISSING_ADDED["cat"]:
        out[categorical_name(j)] = "+10% missing"
    return out


def make(directory: Path) -> dict[str, Path]:
    paths = {"current": directory / "current.parquet", "reference": directory / "reference.parquet"}
    pq.write_table(table(np.random.default_rng(1), REFERENCE_ROWS, current=False), paths["reference"])
    current = table(np.random.default_rng(2), ROWS, current=True)
    pq.write_table(current, paths["current"])
    if PEER_ROWS < ROWS:
        paths["peer"] = directory / "current-peer.parquet"
        pq.write_table(current.slice(0, PEER_ROWS), paths["peer"])
    # The live window: the first rows of the current data, as the servers would have counted them.
    paths["window"] = directory / "window.parquet"
    pq.write_table(current.slice(0, SERVERS * WINDOW_ROWS), paths["window"])
    return paths


# --- running each side -----------------------------------------------------------------------------------------------


def run(command: list[str], out: Path) -> dict[str, Any]:
    """The JSON a child wrote, with the wall seconds of its whole process."""
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[1]).name if command[1] != '-c' else 'ours'} exited "
                           f"{done.returncode}: {done.stderr.strip()[-2000:]}")  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    result["processSeconds"] = time.monotonic() - started
    return result


def ours(current: Path, reference: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / "ours.json"
    return run([sys.executable, "-c", OURS, str(current), str(reference), str(out)], out)


def evidently(python: str, current: Path, reference: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / "evidently.json"
    return run([python, str(HERE / "evidently_peer.py"), str(current), str(reference), str(out)], out)


# --- the comparison of verdicts --------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def signals_of(feature: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in feature.get("signals") or []}


def why(name: str, mine: dict[str, Any], theirs: dict[str, Any], changed: str) -> str:
    """A one-line reason for a verdict that differs, where it is clear."""
    signals = signals_of(mine)
    fired = [s for s in signals.values() if s["drifted"]]
    distribution = signals.get("distribution")
    note = " (the feature is unchanged by construction: chance, at the nominal 5% rate)" if not changed else ""
    if mine["verdict"] == "Drifted" and not theirs["drifted"]:
        if fired and all(s["name"] == "missing" for s in fired):
            return (f"missing share changed by {signals['missing']['statistic'] * 100:.1f} points (now "
                    f"{mine['missingShare']:.1%}): Evidently drops missing values before its test, so a change in "
                    "missingness alone is not seen")  # fmt: skip
        if fired and all(s["name"] == "outOfRange" for s in fired):
            s = signals["outOfRange"]
            return (f"{s['statistic']:.3%} of values outside the reference's range (exact p={s['pValue']:.2g}): "
                    f"Evidently has no range check{note}")  # fmt: skip
        if fired and all(s["name"] == "unseen" for s in fired):
            return (f"{signals['unseen']['statistic']:.1%} of values in categories the reference never had, tested "
                    f"on their own; Evidently's {theirs['method']} counts them among all categories: "
                    f"{theirs['statistic']:.3g} < {theirs['threshold']:g}")  # fmt: skip
        if distribution and distribution["drifted"]:
            if mine["method"] == "jensenShannon" and theirs["method"] == "jensenshannon":
                return (f"the same shares, but ours is base 2 and Evidently's natural log (scipy's default): "
                        f"ours reads 1/sqrt(ln 2) = 1.20x, {mine['statistic']:.3g} >= 0.1 > "
                        f"{theirs['statistic']:.3g}")  # fmt: skip
            if mine["method"] == "wasserstein" and theirs["method"] == "jensenshannon":
                return (f"Evidently takes jensenshannon for a numeric feature with at most 5 distinct values (a shift "
                        f"of shares reads {theirs['statistic']:.3g} < 0.1); ours the normed W1 for every numeric one, "
                        f"which sees how far the mass moved: {mine['statistic']:.3g} >= 0.1")  # fmt: skip
    if theirs["drifted"] and mine["verdict"] != "Drifted" and distribution and not distribution["drifted"]:
        return (f"Evidently's {theirs['method']} {theirs['statistic']:.3g} against {theirs['threshold']:g}, ours "
                f"{mine['method']} {mine['statistic']:.3g}")  # fmt: skip
    return ""


def compare_verdicts(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    changed = truth()
    names = list(changed)
    ours_flags = {n for n in names if mine["features"].get(n, {}).get("verdict") == "Drifted"}
    peer_flags = {n for n in names if theirs["features"].get(n, {}).get("drifted")}
    shifted = {n for n, c in changed.items() if c}
    print(f"verdicts: ours flags {len(ours_flags)} of {len(names)} features, Evidently {len(peer_flags)}; "
          f"{len(shifted)} changed by construction (10 numeric, 5 categorical, 3 with 10% missing added)")  # fmt: skip
    for label, flags in (("ours", ours_flags), ("Evidently", peer_flags)):
        missed = sorted(shifted - flags)
        extra = sorted(flags - shifted)
        print(f"  {label:9}: flags {len(flags & shifted)} of the {len(shifted)} changed; misses "
              f"{', '.join(f'{n} ({changed[n]})' for n in missed) or 'none'}; flags unchanged: "
              f"{', '.join(extra) or 'none'}")  # fmt: skip
    same = {"wasserstein": [], "jensenshannon": []}
    for n in names:
        m, t = mine["features"].get(n), theirs["features"].get(n)
        if m and t and m["statistic"] and t["statistic"] and m["method"].lower() == t["method"]:
            same[t["method"]].append((m["statistic"], t["statistic"]))
    if same["wasserstein"]:
        gap = max(abs(a - b) / max(abs(b), 1e-300) for a, b in same["wasserstein"])
        print(f"  the same method on the same rows: normed W1 on {len(same['wasserstein'])} features, statistics "
              f"equal within a relative {gap:.1e}", end="")  # fmt: skip
    if same["jensenshannon"]:
        ratios = [a / b for a, b in same["jensenshannon"]]
        print(f"; Jensen-Shannon on {len(ratios)} features, ours/Evidently {min(ratios):.4f} .. {max(ratios):.4f} "
              f"(base 2 vs natural log: 1/sqrt(ln 2) = {1 / math.sqrt(math.log(2)):.4f}; categories the reference "
              "lacks count together in ours)", end="")  # fmt: skip
    print()
    differ = [n for n in names if (n in ours_flags) != (n in peer_flags)]
    print(f"  {len(differ)} verdicts differ:")
    width = max([len(n) for n in differ] + [7])
    print(f"  {'feature':{width}}  {'changed':22}  {'ours':10}  {'method':13}  {'statistic':>9}  {'signals':24}  "
          f"{'Evidently':10}  {'method':13}  {'statistic':>9}  why")  # fmt: skip
    rows = []
    for n in differ:
        m, t = mine["features"][n], theirs["features"][n]
        fired = ",".join(s["name"] for s in m.get("signals") or [] if s["drifted"]) or "-"
        reason = why(n, m, t, changed[n])
        print(f"  {n:{width}}  {changed[n] or '-':22}  {m['verdict']:10}  {m['method']:13}  {_fmt(m['statistic']):>9}  "
              f"{fired:24}  {'Drifted' if t['drifted'] else 'NotDrifted':10}  {t['method']:13}  "
              f"{_fmt(t['statistic']):>9}  {reason}")  # fmt: skip
        rows.append({"feature": n, "changed": changed[n], "ours": m["verdict"], "oursMethod": m["method"],
                     "oursStatistic": m["statistic"], "oursSignals": fired, "evidently": t["drifted"],
                     "evidentlyMethod": t["method"], "evidentlyStatistic": t["statistic"], "why": reason})  # fmt: skip
    return {"oursFlags": len(ours_flags), "evidentlyFlags": len(peer_flags), "differ": rows}


# --- 2. the live evaluation ------------------------------------------------------------------------------------------


def live_inputs(paths: dict[str, Path], rows_per_server: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference's profile, and three servers' sketch snapshots of the window's rows, merged."""
    reference = pq.read_table(paths["reference"])
    profile = {"format": FORMAT, "rows": reference.num_rows,
               "features": {n: profile_column(reference.column(n)) for n in reference.column_names}}  # fmt: skip
    window = pq.read_table(paths["window"])
    names = window.column_names
    rows = np.empty((window.num_rows, len(names)), dtype=object)
    for k, n in enumerate(names):
        column = window.column(n)
        if pa.types.is_floating(column.type):
            rows[:, k] = column.to_numpy()  # nulls as NaN
        else:
            rows[:, k] = column.to_pylist()  # nulls as None
    now = time.time()
    snapshots = []
    for server in range(SERVERS):
        sketch = Sketch(profile, names, clock=lambda: now)
        sketch.count(rows[server * rows_per_server : (server + 1) * rows_per_server])
        snapshots.append(sketch.snapshot(window=3600))
    return profile, drift_monitor.merge(snapshots)


def timed(call: Callable[[], Any], runs: int = EVALUATIONS) -> tuple[float, float, Any]:
    """Median and p99 milliseconds of ``call``, and its last result."""
    for _ in range(5):
        result = call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 99)), result


def scipy_by_hand(profile: dict[str, Any], counted: dict[str, Any]) -> int:
    """The distances written by hand with scipy on the same counts: W1 over bin centers divided by the reference's
    standard deviation (numeric) and the Jensen-Shannon distance (categorical); no quality signals. Features
    flagged."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    flagged = 0
    for name, ref in profile["features"].items():
        live = counted["features"][name]
        if ref["type"] == "numeric":
            edges = np.asarray(ref["edges"])
            centers = (edges[:-1] + edges[1:]) / 2
            d = wasserstein_distance(centers, centers, ref["counts"], live["counts"]) / (ref["std"] or 1.0)
        else:
            position = {c: i for i, c in enumerate(ref["categories"])}
            current = np.zeros(len(position) + 1)
            for c, v in zip(live["categories"], live["counts"], strict=True):
                current[position.get(c, len(position))] += v
            current[-1] += live["otherCount"]
            d = jensenshannon([*ref["counts"], ref["otherCount"]], current, base=2)
        flagged += int(d >= 0.1)
    return flagged


def live(paths: dict[str, Path], tmp: Path, peer_python: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    settings = drift_monitor.Settings()
    for label, per_server in (("window", WINDOW_ROWS), ("small window", SMALL_WINDOW_ROWS)):
        profile, counted = live_inputs(paths, per_server)
        median, p99, result = timed(lambda p=profile, c=counted: drift_monitor.evaluate(p, c, settings))
        methods = sorted({r.method for r in result.features})
        if per_server == WINDOW_ROWS:
            goal = (f"goal < {GOAL_EVALUATE_MS:g} ms: median {'met' if median < GOAL_EVALUATE_MS else 'MISSED'}, "
                    f"p99 {'met' if p99 < GOAL_EVALUATE_MS else 'missed'}")  # fmt: skip
        else:
            goal = "for information: below 1,000 samples the methods are tests, with scipy's distributions"
        print(f"live evaluate, {label} ({SERVERS} servers x {per_server:,} rows = {counted['samples']:,} samples, "
              f"{len(result.features)} features, methods {', '.join(methods)}): median {median:.2f} ms, p99 "
              f"{p99:.2f} ms over {EVALUATIONS} runs; {result.drifted} drifted; {goal}")  # fmt: skip
        entry = {"samples": counted["samples"], "medianMs": median, "p99Ms": p99, "drifted": result.drifted}
        if per_server == WINDOW_ROWS:
            s_median, s_p99, flagged = timed(lambda p=profile, c=counted: scipy_by_hand(p, c))
            print(f"  peer: the two distances by hand with scipy on the same counts (no quality signals): median "
                  f"{s_median:.2f} ms, p99 {s_p99:.2f} ms; {flagged} drifted")  # fmt: skip
            entry |= {"scipyMedianMs": s_median, "scipyP99Ms": s_p99}
        out[label] = entry
    if peer_python:
        try:
            peer = evidently(peer_python, paths["window"], paths["reference"], tmp)
            flagged = sum(1 for f in peer["features"].values() if f["drifted"])
            print(f"  peer: Evidently {peer['version']} DataDriftPreset on the window's raw rows ({peer['rows']:,} vs "
                  f"the {peer['referenceRows']:,}-row reference; the live path never has raw rows): "
                  f"{peer['seconds']:.2f} s, peak RSS {peer['peakRssMiB']:.0f} MiB; {flagged} drifted")  # fmt: skip
            out["evidentlyWindowSeconds"] = peer["seconds"]
        except RuntimeError as exc:
            print(f"  peer Evidently on the window: failed: {exc}")
    return out


# --- main ------------------------------------------------------------------------------------------------------------


def main() -> None:
    peer_python = os.environ.get("BENCH_EVIDENTLY_PYTHON", "")
    if peer_python and not shutil.which(peer_python):
        print(f"peer Evidently: BENCH_EVIDENTLY_PYTHON={peer_python} is not an executable; skipped")
        peer_python = ""
    summary: dict[str, Any] = {"rows": ROWS, "referenceRows": REFERENCE_ROWS, "peerRows": PEER_ROWS}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp_name:
        tmp = Path(tmp_name)
        started = time.monotonic()
        paths = make(tmp)
        size = {k: p.stat().st_size / 2**20 for k, p in paths.items()}
        print(f"drift batch: current {ROWS:,} rows x {NUMERIC + CATEGORICAL} features ({NUMERIC} numeric, "
              f"{CATEGORICAL} categorical) against a {REFERENCE_ROWS:,}-row reference, Parquet (current "
              f"{size['current']:.0f} MiB, reference {size['reference']:.0f} MiB), made in "
              f"{time.monotonic() - started:.1f}s (not counted); load average {os.getloadavg()[0]:.2f} on "
              f"{os.cpu_count()} CPUs")  # fmt: skip

        runs = [ours(paths["current"], paths["reference"], tmp) for _ in range(max(REPEAT, 1))]
        mine = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        seconds, peak = mine["seconds"], max(r["peakRssMiB"] for r in runs)
        met = "met" if seconds <= GOAL_SECONDS and peak <= GOAL_MIB else "MISSED"
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(f"ours compare_datasets (defaults): {seconds:.2f} s (median of {len(runs)}: {each}; CPU "
              f"{mine['cpuSeconds']:.2f} s; the process with interpreter and imports "
              f"{mine['processSeconds']:.2f} s), peak RSS {peak:.0f} MiB; goal <= {GOAL_SECONDS:g} s and "
              f"<= {GOAL_MIB / 1024:g} GiB: {met}")  # fmt: skip
        summary["ours"] = {"seconds": seconds, "cpuSeconds": mine["cpuSeconds"],
                           "processSeconds": mine["processSeconds"], "peakRssMiB": peak}  # fmt: skip

        if not peer_python:
            print("peer Evidently: skipped (set BENCH_EVIDENTLY_PYTHON to a Python with evidently; `make bench` "
                  "does)")  # fmt: skip
        else:
            peer_path = paths.get("peer", paths["current"])
            try:
                peer = evidently(peer_python, peer_path, paths["reference"], tmp)
            except RuntimeError as exc:
                peer = None
                print(f"peer Evidently: failed: {exc}")
            if peer is not None:
                sized = "" if PEER_ROWS >= ROWS else f" (on the first {PEER_ROWS:,} current rows: BENCH_DRIFT_ROWS)"
                print(f"peer Evidently {peer['version']} DataDriftPreset (defaults; pandas reads both files: "
                      f"{peer['readSeconds']:.1f} s of it){sized}: {peer['seconds']:.1f} s (CPU "
                      f"{peer['cpuSeconds']:.1f} s; the process {peer['processSeconds']:.1f} s), peak RSS "
                      f"{peer['peakRssMiB']:.0f} MiB")  # fmt: skip
                scale = ROWS / peer["rows"]
                print(f"ours/Evidently: time {seconds / peer['seconds']:.4f} ({peer['seconds'] / seconds:.0f}x "
                      f"faster{f', the peer on 1/{scale:g} of the rows' if scale > 1 else ''}), peak RSS "
                      f"{peak / peer['peakRssMiB']:.3f} ({peer['peakRssMiB'] / peak:.1f}x less)")  # fmt: skip
                summary["evidently"] = {k: peer[k] for k in ("version", "rows", "seconds", "cpuSeconds", "readSeconds",
                                                             "processSeconds", "peakRssMiB")}  # fmt: skip
                same = mine
                if PEER_ROWS < ROWS:
                    same = ours(paths["peer"], paths["reference"], tmp)
                    print(f"verdicts compared on the peer's {PEER_ROWS:,} rows (ours run again on them)")
                summary["verdicts"] = compare_verdicts(same, peer)

        summary["live"] = live(paths, tmp, peer_python)
    print(json.dumps(summary, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))


if __name__ == "__main__":
    main()
