"""Without a signature, the model metadata declares each output as the model's answers have it: a classifier's label
type, predict_proba's classes, a multi-output model's columns. Checked against real answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from asgi import call
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_operator.server.app import InferenceServer, ModelState
from mlops_operator.server.metrics import ServerMetrics
from mlops_operator.server.runtimes import load

X = np.random.default_rng(0).normal(size=(120, 3))
MODELS: dict[str, Any] = {
    "binary classifier": LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)),
    "three classes, string labels": make_pipeline(StandardScaler(), LogisticRegression()).fit(
        X, np.array(["low", "mid", "high"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    ),
    "regressor": LinearRegression().fit(X, X @ [1.0, 2.0, 3.0]),
    "two-output regressor": RandomForestRegressor(n_estimators=3, random_state=0).fit(X, np.c_[X[:, 0], X[:, 1]]),
}


@pytest.mark.parametrize("kind", MODELS)
def test_declared_outputs_match_the_answers(kind: str, tmp_path: Path) -> None:
    joblib.dump(MODELS[kind], tmp_path / "m.joblib")
    runtime = load("sklearn", str(tmp_path / "m.joblib"))
    app = InferenceServer(ModelState("m", "1", runtime, runtime.default_signature()), ServerMetrics("m", "1"))
    status, _, body = call(app, b"", path="/v2/models/m", method="GET")
    assert status == 200
    declared = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert set(declared) == set(runtime.output_names())
    rows = X[:5]
    request = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [5, 3], "data": rows.ravel().tolist()}],
               "outputs": [{"name": n} for n in declared]}  # fmt: skip
    status, _, body = call(app, json.dumps(request).encode())
    assert status == 200, body
    for answer in json.loads(body)["outputs"]:
        spec = declared[answer["name"]]
        assert answer["datatype"] == spec["datatype"], (kind, answer["name"])
        assert spec["shape"][0] == -1 and answer["shape"][1:] == spec["shape"][1:], (kind, answer["shape"], spec)


def test_the_declared_shapes_say_what_they_should(tmp_path: Path) -> None:
    # A spot check of the table above: what a client reads from the metadata.
    shapes = {}
    for i, kind in enumerate(("binary classifier", "three classes, string labels", "two-output regressor")):
        path = tmp_path / f"{i}.joblib"
        joblib.dump(MODELS[kind], path)
        shapes[kind] = {s.name: (s.datatype, s.shape) for s in load("sklearn", str(path)).output_specs()}
    assert shapes["binary classifier"] == {"predict": ("INT64", (-1,)), "predict_proba": ("FP64", (-1, 2))}
    assert shapes["three classes, string labels"] == {"predict": ("BYTES", (-1,)), "predict_proba": ("FP64", (-1, 3))}
    assert shapes["two-output regressor"] == {"predict": ("FP64", (-1, 2))}
