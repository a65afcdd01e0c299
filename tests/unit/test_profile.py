"""Reference profiles equal numpy's quantiles and histogram counts, from CSV and Parquet alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlops_operator.logic.profile import FORMAT
from mlops_operator.outbound import UNRESTRICTED
from mlops_operator.profiling import ProfileError, profile_dataset


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 20_000
    amount = rng.lognormal(3, 1, n)
    age = rng.integers(0, 100, n).astype(float)
    age[rng.choice(n, 500, replace=False)] = np.nan  # nulls
    country = rng.choice(["de", "fr", "it", "es"] + [f"c{i}" for i in range(40)], n,
                         p=[0.4, 0.2, 0.1, 0.1] + [0.2 / 40] * 40)  # fmt: skip
    score = rng.random(n)
    label = (rng.random(n) < 0.1).astype(np.int64)
    return pa.table({
        "label": label,
        "amount": amount,
        "age": pa.array(age, from_pandas=True),
        "country": country,
        "constant": np.full(n, 3.0),
        "score": score,
    })  # fmt: skip


@pytest.fixture(params=["csv", "parquet"])
def dataset(request: pytest.FixtureRequest, table: pa.Table, tmp_path: Path) -> str:
    path = tmp_path / f"ref.{request.param}"
    if request.param == "csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=4096)
    return f"file://{path}"


def test_profile_matches_numpy(dataset: str, table: pa.Table) -> None:
    profile = profile_dataset(dataset, UNRESTRICTED, prediction="score")
    assert profile["format"] == FORMAT and profile["rows"] == table.num_rows and profile["prediction"] == "score"
    assert set(profile["features"]) == {"label", "amount", "age", "country", "constant", "score"}

    for name in ("amount", "age", "score"):
        raw = table.column(name).to_numpy(zero_copy_only=False).astype(float)
        values = raw[~np.isnan(raw)]
        feature = profile["features"][name]
        edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
        counts, _ = np.histogram(values, bins=edges)
        assert feature["type"] == "numeric"
        np.testing.assert_allclose(feature["edges"], edges, rtol=1e-12)
        assert feature["counts"] == counts.tolist()
        assert sum(feature["counts"]) == feature["count"] == values.size
        np.testing.assert_allclose(feature["shares"], counts / values.size)
        assert feature["nulls"] == raw.size - values.size
        assert feature["nullRate"] == pytest.approx((raw.size - values.size) / raw.size)
        assert feature["mean"] == pytest.approx(values.mean()) and feature["std"] == pytest.approx(values.std())
        assert feature["min"] == values.min() and feature["max"] == values.max()
    assert profile["features"]["age"]["nulls"] == 500

    # A 0/1 column: a bin per value (its deciles, 0 and 1, would make one bin of both).
    label = profile["features"]["label"]
    ones = int(table.column("label").to_numpy().sum())
    assert label["edges"] == [0.0, 1.0, 2.0] and label["counts"] == [table.num_rows - ones, ones]

    constant = profile["features"]["constant"]
    assert constant["edges"] == [3.0] and constant["counts"] == [table.num_rows]

    country = profile["features"]["country"]
    values, counts = np.unique(table.column("country").to_numpy(zero_copy_only=False), return_counts=True)
    expected = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda p: (-p[1], p[0]))[:20]
    assert country["categories"] == [c for c, _ in expected] and country["counts"] == [n for _, n in expected]
    assert country["categories"][0] == "de"
    assert country["otherCount"] == table.num_rows - sum(n for _, n in expected)
    assert sum(country["shares"]) + country["other"] == pytest.approx(1.0)
    json.dumps(profile, allow_nan=False)  # storable as JSON


def test_selected_features_and_missing_columns(dataset: str) -> None:
    profile = profile_dataset(dataset, UNRESTRICTED, features=["amount"])
    assert list(profile["features"]) == ["amount"]
    with pytest.raises(ProfileError, match="columns not in the dataset: nope"):
        profile_dataset(dataset, UNRESTRICTED, features=["nope"])


def test_unknown_format_is_explained(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(ProfileError, match=r"spec.reference.format"):
        profile_dataset(f"file://{tmp_path}/data.bin", UNRESTRICTED)
