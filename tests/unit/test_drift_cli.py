"""``mlops-operator drift``: two datasets (CSV, Parquet) or a profile and a dataset, compared exactly, each feature's
statistic, p-value, threshold and verdict printed, and an exit code a CI pipeline can gate on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pytest
from scipy import stats

from mlops_operator.cli import main
from mlops_operator.drift_batch import Options, compare_datasets
from mlops_operator.logic.drift import FeatureSettings
from mlops_operator.profiling import profile_column

N = 4000


def frames(seed: int = 0, shift: float = 0.0, missing: float = 0.0, new_category: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    countries = ["de", "fr", "it", "es"]
    weights = np.array([0.5, 0.3, 0.2, 0.0]) * (1 - new_category) + np.array([0, 0, 0, 1.0]) * new_category
    frame = pd.DataFrame({
        "amount": rng.lognormal(3 + shift, 1, N),
        "age": rng.normal(40, 10, N),
        "country": rng.choice(countries, N, p=weights),
        "label": rng.integers(0, 2, N),
    })  # fmt: skip
    if missing:
        frame.loc[rng.random(N) < missing, "age"] = np.nan
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("drift")
    out = {"reference": tmp / "reference.parquet", "same": tmp / "same.csv", "shifted": tmp / "shifted.csv",
           "missing": tmp / "missing.parquet", "category": tmp / "category.csv"}  # fmt: skip
    frames(0).to_parquet(out["reference"])
    frames(1).to_csv(out["same"], index=False)
    frames(2, shift=0.5).to_csv(out["shifted"], index=False)
    frames(3, missing=0.1).to_parquet(out["missing"])
    frames(4, new_category=0.1).to_csv(out["category"], index=False)
    reference = frames(0)
    features = {c: profile_column(pa.chunked_array([pa.array(reference[c])])) for c in reference}
    profile = {"format": "mlops.io/profile/v1", "rows": N, "prediction": "label", "features": features}
    out["profile"] = tmp / "profile.json"
    out["profile"].write_text(json.dumps(profile))
    out["configmap"] = tmp / "profile-configmap.yaml"
    out["configmap"].write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"},
                                            "data": {"profile.json": json.dumps(profile)}}))  # fmt: skip
    return out


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["drift", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def verdicts(payload: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["verdict"] for f in payload["features"]}


def test_the_same_distribution_exits_0(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(files["reference"]), str(files["same"]), "--json")
    payload = json.loads(out)
    assert code == 0 and payload["verdict"] == "NotDrifted"
    assert set(verdicts(payload).values()) == {"NotDrifted"}


def test_a_shifted_feature_is_flagged_and_exits_1(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(files["reference"]), str(files["shifted"]), "--json", "--drift-share", "0.25")
    payload = json.loads(out)
    assert code == 1 and payload["verdict"] == "Drifted"
    assert verdicts(payload) == {"amount": "Drifted", "age": "NotDrifted", "country": "NotDrifted",
                                 "label": "NotDrifted"}  # fmt: skip


def test_a_feature_going_missing_is_flagged_alone(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(files["reference"]), str(files["missing"]), "--json")
    payload = json.loads(out)
    age = next(f for f in payload["features"] if f["name"] == "age")
    assert age["verdict"] == "Drifted" and "missing" in age["reason"]
    assert age["missingShare"] == pytest.approx(0.1, abs=0.02)
    assert [n for n, v in verdicts(payload).items() if v == "Drifted"] == ["age"]
    assert code == 0  # one feature of four: below the default share of 0.5


def test_a_new_category_is_flagged(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, str(files["reference"]), str(files["category"]), "--json")
    country = next(f for f in json.loads(out)["features"] if f["name"] == "country")
    assert country["verdict"] == "Drifted" and "unseen" in country["reason"]


def test_methods_are_scipys_on_raw_values(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, str(files["reference"]), str(files["shifted"]), "--json", "--method", "amount=ks",
                       "--method", "age=wasserstein", "--method", "categorical=chiSquare")  # fmt: skip
    features = {f["name"]: f for f in json.loads(out)["features"]}
    reference, current = frames(0), frames(2, shift=0.5)
    ks = stats.ks_2samp(reference["amount"], current["amount"])
    assert features["amount"]["statistic"] == pytest.approx(ks.statistic, rel=1e-9)
    assert features["amount"]["pValue"] == pytest.approx(ks.pvalue, rel=1e-6, abs=1e-300)
    w1 = stats.wasserstein_distance(reference["age"], current["age"]) / reference["age"].std(ddof=0)
    assert features["age"]["statistic"] == pytest.approx(w1, rel=1e-9)
    table = pd.crosstab(pd.concat([reference["country"], current["country"]]),
                        np.repeat([0, 1], N)).to_numpy().T  # fmt: skip
    chi2, _, _, _ = stats.chi2_contingency(table, correction=False)
    assert features["country"]["method"] == "chiSquare"
    assert features["country"]["statistic"] == pytest.approx(chi2, rel=1e-9)


def test_a_profile_or_its_configmap_as_the_reference(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for reference in ("profile", "configmap"):
        _, out, _ = run(capsys, str(files["shifted"]), "--reference-profile", str(files[reference]), "--json")
        payload = json.loads(out)
        assert payload["features"][0]["name"] == "amount" and payload["features"][0]["verdict"] == "Drifted"
        # The profile names its prediction: reported apart, counted toward the share.
        assert payload["prediction"]["name"] == "label" and payload["judgedFeatures"] == 4


def test_the_text_table(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(files["reference"]), str(files["shifted"]), "--prediction", "label",
                       "--drift-share", "0.25")  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split()[:8] == ["feature", "method", "statistic", "p-value", "threshold", "verdict", "samples",
                                    "missing"]  # fmt: skip
    assert any(line.startswith("amount") and "Drifted" in line for line in lines)
    assert any(line.startswith("label (prediction)") for line in lines)
    assert lines[-1].startswith("dataset: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["only-one.csv"], "give the reference dataset and the current dataset"),
        (["a.csv", "b.csv", "--method", "amount=magic"], "--method 'amount=magic': use FEATURE=METHOD"),
        (["a.csv", "b.csv", "--threshold", "amount=high"], "--threshold 'amount=high': use FEATURE=NUMBER"),
        (["a.csv", "/nowhere/b.csv"], "not found: file:///nowhere/b.csv"),
    ],
    ids=["one-dataset", "bad-method", "bad-threshold", "missing-file"],
)
def test_bad_invocations_exit_2_with_the_reason(args: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err, err


def test_a_method_that_does_not_fit_is_an_error_verdict(files: dict[str, Path]) -> None:
    options = Options(overrides={"country": FeatureSettings("ks")})
    result = compare_datasets(f"file://{files['same']}", reference=f"file://{files['reference']}", options=options)
    country = next(f for f in result.features if f.name == "country")
    assert country.verdict == "Error" and "ks needs a numeric feature" in country.reason


def test_excluded_and_chosen_features(files: dict[str, Path]) -> None:
    result = compare_datasets(f"file://{files['same']}", reference=f"file://{files['reference']}",
                              options=Options(exclude=["label", "age"]))  # fmt: skip
    assert [f.name for f in result.features] == ["amount", "country"]
    result = compare_datasets(f"file://{files['same']}", reference=f"file://{files['reference']}",
                              options=Options(features=["age", "nope"]))  # fmt: skip
    assert [(f.name, f.verdict) for f in result.features] == [("age", "NotDrifted"), ("nope", "Error")]


def test_performance_on_labelled_rows(tmp_path: Path, files: dict[str, Path]) -> None:
    frame = frames(5)
    rng = np.random.default_rng(5)
    frame["predicted"] = rng.integers(0, 2, N)
    frame["truth"] = np.where(rng.random(N) < 0.2, 1 - frame["predicted"], frame["predicted"])
    frame.loc[:99, "truth"] = np.nan  # labels not in yet: left out
    path = tmp_path / "scored.parquet"
    frame.to_parquet(path)
    options = Options(exclude=["truth", "predicted"], performance=("accuracy", "truth", "predicted", 0.9, 0.05, 100))
    result = compare_datasets(f"file://{path}", reference=f"file://{files['reference']}", options=options)
    assert result.performance is not None and result.performance.samples == N - 100
    assert result.performance.value == pytest.approx(0.8, abs=0.02)
    assert result.performance.degraded is True and "below the registered 0.9" in result.performance.reason
    missing = Options(performance=("accuracy", "nope", "predicted", 0.9, 0.05, 100))
    result = compare_datasets(f"file://{path}", reference=f"file://{files['reference']}", options=missing)
    assert result.performance.degraded is None and result.performance.reason == "column(s) not in the dataset: nope"
