"""Reference profiling of a 1 M row dataset: time and peak memory, against loading it whole with pandas.

The dataset: 1,000,000 rows, 20 numeric and 2 categorical columns, as CSV and as Parquet. Ours profiles column by
column (``mlops_operator.profiling``); the peer is what one writes by hand: pandas reads the whole table, then
quantiles, a histogram per column and value counts. Each runs in a fresh process; peak RSS is that process's
high-water mark (VmHWM).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROWS, NUMERIC, CATEGORICAL = 1_000_000, 20, 2

OURS = """
import sys
from mlops_operator.outbound import UNRESTRICTED
from mlops_operator.profiling import profile_dataset
profile = profile_dataset(sys.argv[1], UNRESTRICTED)
assert profile["rows"] == int(sys.argv[2]), profile["rows"]
"""

PANDAS = """
import sys
import numpy as np
import pandas as pd
path = sys.argv[1]
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
out = {}
for name in df.columns:
    col = df[name]
    if col.dtype.kind in "if":
        values = col.dropna().to_numpy()
        edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
        out[name] = np.histogram(values, bins=edges)[0].tolist()
    else:
        out[name] = col.value_counts().head(20).to_dict()
assert len(df) == int(sys.argv[2])
"""


def make(directory: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    columns = {f"x{i}": rng.normal(i, 1 + i / 10, ROWS) for i in range(NUMERIC)}
    for i in range(CATEGORICAL):
        columns[f"c{i}"] = rng.choice([f"v{j}" for j in range(30)], ROWS)
    table = pa.table(columns)
    csv, parquet = directory / "ref.csv", directory / "ref.parquet"
    pacsv.write_csv(table, csv)
    pq.write_table(table, parquet)
    return csv, parquet


def measure(code: str, path: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``code`` run on ``path`` in a fresh process."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent, VmHWM is this process's own.
    script = f"""
import time
started = time.monotonic()
{code}
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(time.monotonic() - started, hwm)
"""
    out = subprocess.run([sys.executable, "-c", script, str(path), str(ROWS)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    seconds, kib = out.stdout.split()
    return float(seconds), int(kib) / 1024


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        started = time.monotonic()
        csv, parquet = make(Path(tmp))
        sizes = {p.suffix: p.stat().st_size / 2**20 for p in (csv, parquet)}
        print(
            f"profile: dataset {ROWS:,} rows x {NUMERIC + CATEGORICAL} columns made in "
            f"{time.monotonic() - started:.1f}s (CSV {sizes['.csv']:.0f} MB, Parquet {sizes['.parquet']:.0f} MB)"
        )
        results = {}
        for path in (csv, parquet):
            ours = measure(OURS, path)
            peer = measure(PANDAS, path)
            results[path.suffix] = {"ours": ours, "pandas": peer}
            print(f"profile {path.suffix[1:]:>7}: ours {ours[0]:.1f}s, peak RSS {ours[1]:.0f} MB; "
                  f"peer pandas whole-table {peer[0]:.1f}s, peak RSS {peer[1]:.0f} MB; "
                  f"memory ours/peer = {ours[1] / peer[1]:.2f}")  # fmt: skip
        print(json.dumps({"rows": ROWS, "results": results}))


if __name__ == "__main__":
    main()
