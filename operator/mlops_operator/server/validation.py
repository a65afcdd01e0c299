"""Open Inference Protocol V2 tensors: the signature, and requests checked against it.

Every problem is a ``RequestError`` whose message names the input and the reason; the server answers it with 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip
UNSUPPORTED = {"BF16": "BF16 has no numpy type; send FP32"}
# numpy kinds a JSON array may parse into, per V2 datatype: booleans are not numbers, floats are not integers.
ACCEPTED_KINDS = {"BOOL": "b", "BYTES": "U"}
INTEGER_KINDS, FLOAT_KINDS = "iu", "iuf"


class RequestError(ValueError):
    """A request that does not fit the signature (HTTP 400)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    features: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    by_name: Mapping[str, TensorSpec] = field(default_factory=dict)

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> Signature:
        """A signature from ModelVersion spec.signature (camelCase or snake_case keys)."""

        def tensors(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
            out = []
            for t in items:
                if t["datatype"] not in DTYPES:
                    raise ValueError(f"signature tensor {t['name']}: datatype {t['datatype']} is not supported")
                out.append(TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"]),
                                      tuple(t.get("features") or ())))  # fmt: skip
            return tuple(out)

        inputs = tensors(raw.get("inputs") or [])
        if not inputs:
            raise ValueError("the signature has no inputs")
        return Signature(inputs, tensors(raw.get("outputs") or []), {t.name: t for t in inputs})


def _shape_matches(shape: Sequence[int], expected: Sequence[int]) -> bool:
    return len(shape) == len(expected) and all(e == -1 or s == e for s, e in zip(shape, expected, strict=True))


def _fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def parse_inputs(body: Any, signature: Signature) -> dict[str, npt.NDArray[Any]]:
    """The request's inputs as arrays of the signature's types and shapes; raises RequestError."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for position, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise RequestError(f"inputs[{position}] must be an object with name, shape, datatype and data")
        name = item.get("name")
        if not isinstance(name, str):
            raise RequestError(f"inputs[{position}].name must be a string")
        spec = signature.by_name.get(name)
        if spec is None:
            known = ", ".join(repr(t.name) for t in signature.inputs)
            raise RequestError(f"input {name!r} is not in the signature (inputs: {known})")
        if name in arrays:
            raise RequestError(f"input {name!r} is given twice")
        arrays[name] = _tensor(item, spec)
    missing = [t.name for t in signature.inputs if t.name not in arrays]
    if missing:
        raise RequestError(f"missing input(s): {', '.join(repr(m) for m in missing)}")
    return arrays


def _tensor(item: dict[str, Any], spec: TensorSpec) -> npt.NDArray[Any]:
    where = f"input {spec.name!r}"
    datatype = item.get("datatype")
    if datatype in UNSUPPORTED:
        raise RequestError(f"{where}: {UNSUPPORTED[datatype]}")
    if datatype != spec.datatype:
        raise RequestError(f"{where}: datatype {datatype!r} does not match the signature's {spec.datatype}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):  # fmt: skip
        raise RequestError(f"{where}: shape must be a list of non-negative integers")
    if not _shape_matches(shape, spec.shape):
        raise RequestError(f"{where}: shape {_fmt_shape(shape)} does not match the signature's "
                           f"{_fmt_shape(spec.shape)} (-1 is any size)")  # fmt: skip
    data = item.get("data")
    if not isinstance(data, list):
        raise RequestError(f"{where}: data must be a list, flat or nested")
    count = math.prod(shape)
    try:
        array = np.array(data)
    except ValueError as exc:
        raise RequestError(f"{where}: data is not a regular array (nested lists of different lengths)") from exc
    if array.size != count and not (count == 0 and array.size == 0):
        raise RequestError(f"{where}: data has {array.size} elements, shape {_fmt_shape(shape)} needs {count}")
    if array.ndim > 1 and list(array.shape) != shape:
        raise RequestError(f"{where}: nested data has shape {_fmt_shape(array.shape)}, not {_fmt_shape(shape)}")
    kind = array.dtype.kind
    if array.size and datatype in ACCEPTED_KINDS:
        if kind != ACCEPTED_KINDS[datatype]:
            raise RequestError(
                f"{where}: {datatype} data must be all {'booleans' if datatype == 'BOOL' else 'strings'}"
            )
    elif array.size:
        allowed = INTEGER_KINDS if datatype.startswith(("INT", "UINT")) else FLOAT_KINDS
        if kind not in allowed:
            what = "integers" if allowed == INTEGER_KINDS else "numbers"
            raise RequestError(f"{where}: {datatype} data must be all {what}")
        if allowed == INTEGER_KINDS:
            info = np.iinfo(DTYPES[datatype])
            if array.min() < info.min or array.max() > info.max:
                raise RequestError(f"{where}: a value is outside the range of {datatype}")
        elif datatype != "FP64" and kind == "f":
            limit = np.finfo(DTYPES[datatype]).max
            if np.abs(array).max() > limit:
                raise RequestError(f"{where}: a value is outside the range of {datatype}")
    return array.astype(DTYPES[datatype], copy=False).reshape(shape)


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The V2 datatype of an output array."""
    kind = array.dtype.kind
    if kind in "OUS":
        return "BYTES"
    for name, dtype in DTYPES.items():
        if dtype is not np.object_ and array.dtype == np.dtype(dtype):
            return name
    return "FP64"


def output_tensor(name: str, array: npt.NDArray[Any]) -> dict[str, Any]:
    """An output tensor in V2 form, data flattened row-major."""
    datatype = datatype_of(array)
    values = array.astype(str) if datatype == "BYTES" else array
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": values.ravel().tolist()}
