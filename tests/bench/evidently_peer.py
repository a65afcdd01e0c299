"""The peer of the drift benchmark: Evidently's DataDriftPreset, with its defaults, on two Parquet files that pandas
reads whole (what Evidently takes: two DataFrames).

Run with a Python that has the evidently package: python evidently_peer.py CURRENT REFERENCE OUT_JSON

Writes OUT_JSON: the seconds (wall and CPU) of reading both files and running the report (imports apart, given on
their own), the process's peak RSS (VmHWM), Evidently's version, the rows compared, and per column the method
Evidently chose, its statistic (its drift score: a p-value or a distance), the threshold and the verdict. Column
types are declared from the pandas dtypes (numbers numeric, the rest categorical), so that Evidently does not guess
them.
"""

import json
import sys
import time

started = time.monotonic()

import evidently  # noqa: E402
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.legacy.calculations.stattests.registry import _registered_stat_tests  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

# Evidently's distances (drift when the score reaches the threshold; energy distance when it passes it); every
# other method is a test with a p-value (drift below the threshold; ks and Cramer-von Mises at or below it).
DISTANCES = {"wasserstein", "jensenshannon", "psi", "kl_div", "hellinger"}
STRICT_DISTANCES = {"ed"}
P_AT_OR_BELOW = {"ks", "cramer_von_mises"}


def drifted(method: str, score: float, threshold: float) -> bool:
    """The verdict Evidently's stattest returns for this score (its report keeps the score, not the verdict)."""
    if method in DISTANCES:
        return score >= threshold
    if method in STRICT_DISTANCES:
        return score > threshold
    if method in P_AT_OR_BELOW:
        return score <= threshold
    return score < threshold


def main() -> None:
    current_path, reference_path, out_path = sys.argv[1:4]
    imported, cpu = time.monotonic(), time.process_time()
    current = pd.read_parquet(current_path)
    reference = pd.read_parquet(reference_path)
    read = time.monotonic()
    numeric = [c for c in reference.columns if pd.api.types.is_numeric_dtype(reference[c])]
    categorical = [c for c in reference.columns if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    done, cpu = time.monotonic(), time.process_time() - cpu
    by_display = {next(iter(tests.values())).display_name: name for name, tests in _registered_stat_tests.items()}
    features = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        method = by_display.get(config["method"], config["method"])
        score, threshold = float(metric["value"]), float(config["threshold"])
        features[config["column"]] = {
            "method": method,
            "statistic": score,
            "threshold": threshold,
            "drifted": drifted(method, score, threshold),
        }
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    out = {
        "version": evidently.__version__,
        "rows": len(current),
        "referenceRows": len(reference),
        "seconds": done - imported,
        "cpuSeconds": cpu,
        "readSeconds": read - imported,
        "importSeconds": imported - started,
        "peakRssMiB": hwm / 1024,
        "features": features,
    }
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
