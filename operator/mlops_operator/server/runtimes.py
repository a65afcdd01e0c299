"""Model runtimes behind one interface: each format is one class (scikit-learn, ONNX, XGBoost, LightGBM).

Trust boundary: the sklearn runtime unpickles the artifact (joblib), which runs code from it. Serve pickles only
from sources you trust; prefer ONNX for artifacts of unknown origin (ONNX Runtime only interprets a graph).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from mlops_operator.server.validation import Signature, TensorSpec, datatype_of


class Runtime(Protocol):
    """A loaded model."""

    platform: str

    def default_signature(self) -> Signature:
        """The signature to serve when the ModelVersion gives none."""
        ...

    def output_names(self) -> tuple[str, ...]:
        """The outputs the model can produce."""
        ...

    def output_specs(self) -> tuple[TensorSpec, ...]:
        """Each output's datatype and shape (-1 for the batch), as the model's answers have them."""
        ...

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: tuple[str, ...]) -> dict[str, Any]:
        """Runs the model; returns the requested outputs by name."""
        ...


class SklearnRuntime:
    """scikit-learn estimators and pipelines saved with joblib. Outputs: predict, and predict_proba for
    classifiers; a single input tensor of shape [batch, features]."""

    platform = "sklearn"

    def __init__(self, path: str) -> None:
        import joblib
        import sklearn

        # Input checks cost most of a small prediction; the server has checked shape and type already, and JSON
        # cannot carry NaN or infinities.
        sklearn.set_config(assume_finite=True)
        self.model = joblib.load(path)
        self._outputs = ("predict", "predict_proba") if hasattr(self.model, "predict_proba") else ("predict",)

    def default_signature(self) -> Signature:
        n = int(getattr(self.model, "n_features_in_", -1))
        names = tuple(str(f) for f in getattr(self.model, "feature_names_in_", ()))
        spec = TensorSpec("input-0", "FP64", (-1, n), names)
        return Signature((spec,), (), {spec.name: spec})

    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    @functools.cached_property
    def _specs(self) -> tuple[TensorSpec, ...]:
        """From one prediction on a row of zeros: what the model answers (a classifier's labels, a multi-output
        model's columns, predict_proba's classes), not a guess from its type. Where that row cannot be predicted
        (a pipeline that needs named columns), each output is declared FP64 of any shape after the batch."""
        return _probed_specs(self, int(getattr(self.model, "n_features_in_", 0)))

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._specs

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: tuple[str, ...]) -> dict[str, Any]:
        (x,) = inputs.values()
        return {name: getattr(self.model, name)(x) for name in outputs}


class OnnxRuntime:
    """ONNX graphs run by ONNX Runtime on the CPU; inputs and outputs as the graph names them."""

    platform = "onnxruntime_onnx"
    TYPES: ClassVar[dict[str, str]] = {
        "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16", "tensor(int64)": "INT64",
        "tensor(int32)": "INT32", "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
        "tensor(string)": "BYTES",
    }  # fmt: skip

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One request at a time per process: parallelism inside a tiny graph only adds thread hand-offs.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self._outputs = tuple(o.name for o in self.session.get_outputs())

    def default_signature(self) -> Signature:
        def spec(node: Any) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
            return TensorSpec(node.name, self.TYPES.get(node.type, "FP32"), shape)

        inputs = tuple(spec(i) for i in self.session.get_inputs())
        return Signature(inputs, tuple(spec(o) for o in self.session.get_outputs()), {t.name: t for t in inputs})

    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.default_signature().outputs

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: tuple[str, ...]) -> dict[str, Any]:
        results = self.session.run(list(outputs), dict(inputs))
        return {name: _plain_output(value) for name, value in zip(outputs, results, strict=True)}


def _probed_specs(runtime: Any, width: int) -> tuple[TensorSpec, ...]:
    """Each output's datatype and shape from one prediction on a row of zeros (FP64 of any shape when the model
    refuses it)."""
    try:
        if width <= 0:
            raise ValueError("the model does not say how many features it takes")
        answers = runtime.predict({"input-0": np.zeros((1, width))}, runtime.output_names())
        return tuple(
            TensorSpec(name, datatype_of(np.asarray(a)), (-1, *np.asarray(a).shape[1:])) for name, a in answers.items()
        )
    except Exception:  # any model may refuse a made-up row; the metadata then says less
        return tuple(TensorSpec(name, "FP64", (-1,)) for name in runtime.output_names())


class _BoosterRuntime:
    """A gradient-boosted trees model in its library's own file; one input [batch, features] and one output,
    ``predict``: what the booster's own predict gives (probabilities for a classification objective, one column
    per class for multi-class, values for regression)."""

    platform = ""
    width = 0
    names: tuple[str, ...] = ()

    def default_signature(self) -> Signature:
        spec = TensorSpec("input-0", "FP64", (-1, self.width if self.width > 0 else -1), self.names)
        return Signature((spec,), (), {spec.name: spec})

    def output_names(self) -> tuple[str, ...]:
        return ("predict",)

    @functools.cached_property
    def _specs(self) -> tuple[TensorSpec, ...]:
        return _probed_specs(self, self.width)

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._specs


class XGBoostRuntime(_BoosterRuntime):
    """XGBoost models saved with ``Booster.save_model`` (JSON or UBJSON)."""

    platform = "xgboost"

    def __init__(self, path: str) -> None:
        import xgboost

        self.booster = xgboost.Booster(model_file=path)
        self.width = int(self.booster.num_features())
        self.names = tuple(self.booster.feature_names or ())

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: tuple[str, ...]) -> dict[str, Any]:
        (x,) = inputs.values()
        # Column names are checked by the server against the signature; the booster takes the columns in order.
        return {"predict": self.booster.inplace_predict(x, validate_features=False)}


class LightGBMRuntime(_BoosterRuntime):
    """LightGBM models saved with ``Booster.save_model`` (text)."""

    platform = "lightgbm"

    def __init__(self, path: str) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_file=path)
        self.width = int(self.booster.num_feature())
        self.names = tuple(self.booster.feature_name())

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: tuple[str, ...]) -> dict[str, Any]:
        (x,) = inputs.values()
        return {"predict": self.booster.predict(x, num_threads=1)}


def _plain_output(value: Any) -> Any:
    # skl2onnx classifiers return probabilities as a list of {label: probability} maps (ZipMap).
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = list(value[0])
        return np.array([[row[k] for k in keys] for row in value])
    return np.asarray(value)


RUNTIMES: dict[str, Callable[[str], Runtime]] = {
    "sklearn": SklearnRuntime,
    "onnx": OnnxRuntime,
    "xgboost": XGBoostRuntime,
    "lightgbm": LightGBMRuntime,
}


def load(format_: str, path: str) -> Runtime:
    """Loads the artifact at the local ``path`` with the runtime of ``format_``."""
    try:
        runtime = RUNTIMES[format_]
    except KeyError:
        raise ValueError(f"format {format_!r} has no runtime here (available: {', '.join(RUNTIMES)})") from None
    return runtime(path)
