"""The XGBoost and LightGBM runtimes: models in their libraries' own files predict as the libraries do, through the
server, and the metadata declares what the answers hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from asgi import call

from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.runtimes import load

X = np.random.default_rng(0).normal(size=(400, 5))
TARGETS = {
    "binary": (X[:, 0] + X[:, 1] > 0).astype(int),
    "multiclass": np.digitize(X[:, 2], [-0.5, 0.5]),
    "regression": X @ [1.0, -2.0, 0.5, 0.0, 3.0],
}
XGB_OBJECTIVES: dict[str, dict[str, Any]] = {
    "binary": {"objective": "binary:logistic"},
    "multiclass": {"objective": "multi:softprob", "num_class": 3},
    "regression": {"objective": "reg:squarederror"},
}
LGB_OBJECTIVES: dict[str, dict[str, Any]] = {
    "binary": {"objective": "binary"},
    "multiclass": {"objective": "multiclass", "num_class": 3},
    "regression": {"objective": "regression"},
}


def xgboost_file(task: str, path: Path) -> tuple[Path, Any]:
    booster = xgboost.train(XGB_OBJECTIVES[task], xgboost.DMatrix(X, label=TARGETS[task]), num_boost_round=10)
    booster.save_model(path / f"{task}.json")
    return path / f"{task}.json", lambda rows: booster.predict(xgboost.DMatrix(rows))


def lightgbm_file(task: str, path: Path) -> tuple[Path, Any]:
    params = {**LGB_OBJECTIVES[task], "verbose": -1, "num_threads": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(X, label=TARGETS[task]), num_boost_round=10)
    booster.save_model(path / f"{task}.txt")
    return path / f"{task}.txt", booster.predict


@pytest.mark.parametrize("task", TARGETS)
@pytest.mark.parametrize(("format_", "make"), [("xgboost", xgboost_file), ("lightgbm", lightgbm_file)])
def test_predictions_equal_the_librarys_own(format_: str, make: Any, task: str, tmp_path: Path) -> None:
    path, library_predict = make(task, tmp_path)
    runtime = load(format_, str(path))
    assert runtime.platform == format_
    signature = runtime.default_signature()
    assert signature.inputs[0].shape == (-1, 5)
    app = InferenceServer(ModelState("m", "1", runtime, signature), ServerMetrics("m", "1"))
    rows = X[:7]
    request = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [7, 5], "data": rows.ravel().tolist()}]}
    status, _, body = call(app, json.dumps(request).encode())
    assert status == 200, body
    (answer,) = json.loads(body)["outputs"]
    expected = np.asarray(library_predict(rows))
    assert answer["shape"] == list(expected.shape)
    np.testing.assert_allclose(np.array(answer["data"]).reshape(expected.shape), expected, rtol=1e-6)
    # The metadata declares what the answer holds: a column per class for multi-class, one value a row otherwise.
    status, _, meta = call(app, b"", path="/v2/models/m", method="GET")
    (declared,) = json.loads(meta)["outputs"]
    assert declared["datatype"] == answer["datatype"] and declared["shape"] == [-1, *answer["shape"][1:]]


def test_a_file_that_is_no_model_fails_to_load_with_the_librarys_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(Exception):  # noqa: B017 - whatever the library raises, loading stops there
        load("xgboost", str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="format 'catboost' has no runtime here"):
        load("catboost", str(tmp_path / "bad.json"))
